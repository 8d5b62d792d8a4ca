"""Low-rank factorisation of the ranker: its largest embedding tables and its cross layers.

* An embedding table ``E`` [n, d] becomes ``A`` [n, r] · ``B`` [r, d] (truncated SVD), which shrinks
  the user and item tables (most of the model's bytes) by about d / r.
* A cross layer's weight ``W`` [w, w] becomes ``U`` [w, r] · ``V`` [r, w]: two thin matrix products
  instead of one square one.

Initialised from the SVD of the trained weights, then fine-tuned on the training rows.
"""

from __future__ import annotations


def _svd(weight, rank: int):
    import torch

    u, s, vh = torch.linalg.svd(weight.detach(), full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def factorize(model, embedding_rank: int = 8, cross_rank: int = 32, min_rows: int = 1000):
    """A copy of ``model`` with tables of at least ``min_rows`` rows and every cross layer factorised."""
    import copy

    import torch
    from torch import nn

    class LowRankEmbedding(nn.Module):
        def __init__(self, table: torch.Tensor, rank: int):
            super().__init__()
            a, b = _svd(table, rank)
            self.rows = nn.Embedding(table.shape[0], rank)
            self.project = nn.Linear(rank, table.shape[1], bias=False)
            with torch.no_grad():
                self.rows.weight.copy_(a)
                self.project.weight.copy_(b.T)

        def forward(self, ids):
            return self.project(self.rows(ids))

    def low_rank_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
        u, v = _svd(layer.weight, rank)  # W [out, in] = u [out, r] @ v [r, in]
        first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features)
        with torch.no_grad():
            first.weight.copy_(v)
            second.weight.copy_(u)
            second.bias.copy_(layer.bias)
        return nn.Sequential(first, second)

    model = copy.deepcopy(model)
    for i, emb in enumerate(model.embeddings):
        if emb.num_embeddings >= min_rows and embedding_rank < emb.embedding_dim:
            model.embeddings[i] = LowRankEmbedding(emb.weight, embedding_rank)
    for i, layer in enumerate(model.cross):
        if cross_rank < min(layer.in_features, layer.out_features) // 2:
            model.cross[i] = low_rank_linear(layer, cross_rank)
    return model

"""The DCN-v2 ranker's network, needing only PyTorch and numpy: built from its sizes, or from saved weights.

``builders/learning/dcn.py`` trains and exports it; ``benchmarks/gpu_truth.py`` rebuilds it from
``ranker.pt`` on a machine that has nothing else of the build (``from_state_dict``).
"""

from __future__ import annotations

import re

import numpy as np

from runtime.contract import N_DENSE


def build_model(
    cards: list[int],
    dense_mean: np.ndarray,
    dense_std: np.ndarray,
    emb_dim: int = 16,
    cross_layers: int = 2,
    hidden: tuple[int, ...] = (128, 64),
):
    import torch
    from torch import nn

    class DCNv2Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.ModuleList([nn.Embedding(c, emb_dim) for c in cards])
            self.register_buffer("dense_mean", torch.as_tensor(dense_mean, dtype=torch.float32))
            self.register_buffer("dense_std", torch.as_tensor(dense_std, dtype=torch.float32))
            width = emb_dim * len(cards) + N_DENSE
            self.cross = nn.ModuleList([nn.Linear(width, width) for _ in range(cross_layers)])
            layers, prev = [], width
            for h in hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            self.deep = nn.Sequential(*layers)
            self.head = nn.Linear(width + prev, 2)

        def forward(self, cat_features, dense_features):
            embs = [emb(cat_features[:, i]) for i, emb in enumerate(self.embeddings)]
            dense = (dense_features - self.dense_mean) / self.dense_std
            x0 = torch.cat(embs + [dense], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x  # DCN-v2 cross layer
            out = self.head(torch.cat([x, self.deep(x0)], dim=1))
            return out[:, :1], out[:, 1:]

    return DCNv2Ranker()


def from_state_dict(state: dict):
    """The network of saved weights (``torch.save(model.state_dict())``), its sizes read from their shapes."""
    tables = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"embeddings\.(\d+)\.weight", k)))
    cross = sum(1 for k in state if re.fullmatch(r"cross\.\d+\.weight", k))
    deep = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"deep\.(\d+)\.weight", k)))
    model = build_model(
        [int(state[f"embeddings.{i}.weight"].shape[0]) for i in tables],
        state["dense_mean"].numpy(),
        state["dense_std"].numpy(),
        emb_dim=int(state["embeddings.0.weight"].shape[1]),
        cross_layers=cross,
        hidden=tuple(int(state[f"deep.{i}.weight"].shape[0]) for i in deep),
    )
    model.load_state_dict(state)
    return model.eval()

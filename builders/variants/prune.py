"""Structured pruning of the ranker's deep tower: whole neurons removed, then fine-tuned.

A neuron's importance is the L2 norm of its incoming weights times that of its outgoing weights
(a cheap first-order proxy). The ``keep`` fraction of neurons with the highest importance survive
in every hidden layer of the deep tower; the layers are rebuilt smaller (real dense layers, not
masks), so the exported ONNX graph does less work. The cross layers are left whole: their output
multiplies the input elementwise, so their width is the feature width. A short fine-tune on the
training rows recovers the quality the cut lost.
"""

from __future__ import annotations

import numpy as np


def prune_deep(model, keep: float = 0.5):
    """A copy of ``model`` with the deep tower's hidden layers cut to ``keep`` of their neurons."""
    import copy

    import torch
    from torch import nn

    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    model = copy.deepcopy(model)
    linears = [m for m in model.deep if isinstance(m, nn.Linear)]
    width = model.head.in_features - linears[-1].out_features  # the cross part of the head's input
    prev_keep: torch.Tensor | None = None
    new_layers = []
    for i, layer in enumerate(linears):
        w = layer.weight.detach()
        if prev_keep is not None:
            w = w[:, prev_keep]
        outgoing = linears[i + 1].weight.detach() if i + 1 < len(linears) else model.head.weight.detach()[:, width:]
        importance = w.norm(dim=1) * outgoing.norm(dim=0)
        n_keep = max(1, int(round(layer.out_features * keep)))
        kept = torch.sort(torch.topk(importance, n_keep).indices).values
        new = nn.Linear(w.shape[1], n_keep)
        with torch.no_grad():
            new.weight.copy_(w[kept])
            new.bias.copy_(layer.bias.detach()[kept])
        new_layers += [new, nn.ReLU()]
        prev_keep = kept
    model.deep = nn.Sequential(*new_layers)
    assert prev_keep is not None  # the model has at least one deep layer
    head = nn.Linear(width + len(prev_keep), model.head.out_features)
    with torch.no_grad():
        head.weight.copy_(torch.cat([model.head.weight[:, :width], model.head.weight[:, width:][:, prev_keep]], dim=1))
        head.bias.copy_(model.head.bias)
    model.head = head
    return model


def parameter_count(model) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))

"""Ranking-quality metrics: ROC AUC and per-session NDCG@k (numpy only)."""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with average ranks for ties (the Mann-Whitney U statistic)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    uniq, inverse, counts = np.unique(np.asarray(scores, np.float64), return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct score.
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ndcg_at_k(gains: np.ndarray, scores: np.ndarray, offsets: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over sessions (``offsets`` delimit them); sessions with zero ideal DCG are skipped.

    Ties in ``scores`` are broken by the original order, pessimistically for no one.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for s in range(len(offsets) - 1):
        g = gains[offsets[s] : offsets[s + 1]]
        if g.size == 0:
            continue
        ideal = np.sort(g)[::-1][:k]
        idcg = float((ideal * discounts[: ideal.size]).sum())
        if idcg <= 0:
            continue
        order = np.argsort(-scores[offsets[s] : offsets[s + 1]], kind="stable")[:k]
        values.append(float((g[order] * discounts[: order.size]).sum()) / idcg)
    if not values:
        raise ValueError("no session has a positive gain")
    return float(np.mean(values))

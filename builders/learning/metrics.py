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


def ndcg_per_list(gains: np.ndarray, scores: np.ndarray, offsets: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each list (``offsets`` delimit them); NaN where a list has no positive gain.

    Ties in ``scores`` are broken by the original order, pessimistically for no one.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = np.full(len(offsets) - 1, np.nan)
    for s in range(len(offsets) - 1):
        g = gains[offsets[s] : offsets[s + 1]]
        if g.size == 0:
            continue
        ideal = np.sort(g)[::-1][:k]
        idcg = float((ideal * discounts[: ideal.size]).sum())
        if idcg <= 0:
            continue
        order = np.argsort(-scores[offsets[s] : offsets[s + 1]], kind="stable")[:k]
        values[s] = float((g[order] * discounts[: order.size]).sum()) / idcg
    return values


def ndcg_at_k(gains: np.ndarray, scores: np.ndarray, offsets: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over lists (``offsets`` delimit them); lists with zero ideal DCG are skipped."""
    values = ndcg_per_list(gains, scores, offsets, k)
    if np.isnan(values).all():
        raise ValueError("no session has a positive gain")
    return float(np.nanmean(values))


def paired_interval(deltas: np.ndarray, resamples: int = 2000, seed: int = 0) -> list[float]:
    """The mean per-list difference and its 95% bootstrap interval (the same lists, resampled)."""
    rng = np.random.default_rng(seed)
    means = deltas[rng.integers(0, len(deltas), (resamples, len(deltas)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [round(float(deltas.mean()), 4), round(float(low), 4), round(float(high), 4)]

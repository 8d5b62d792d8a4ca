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
    return ListNDCG(gains, offsets, k).per_list(scores)


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


class ListNDCG:
    """NDCG@k of fixed lists and gains for many score vectors (the lists padded once into a matrix): the mean
    over lists (``ndcg_at_k``, vectorised for a metric evaluated every boosting round), or ``pooled``.

    ``pooled=True``: the summed DCG over the summed ideal DCG. With inverse-propensity weighted gains this is
    the debiased metric: the mean of per-list ratios normalises each list by its own weighted gains, so a
    list with one click scores the same whether that click came from the top or from position 20, and the
    weights cancel (on a cascade shop the per-list mean then prefers the logged order to the true one).
    """

    def __init__(self, gains: np.ndarray, offsets: np.ndarray, k: int = 10, pooled: bool = False):
        self.pooled = pooled
        lengths = np.diff(offsets)
        width = int(lengths.max()) if len(lengths) else 1
        self.mask = np.arange(width)[None, :] < lengths[:, None]
        self.index = np.where(self.mask, offsets[:-1, None] + np.arange(width)[None, :], 0)
        self.gains = np.where(self.mask, np.asarray(gains, np.float64)[self.index], 0.0)
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))[: min(k, width)]
        ideal = -np.sort(-self.gains, axis=1)[:, : len(self.discounts)]
        self.idcg = (ideal * self.discounts).sum(axis=1)
        self.valid = self.idcg > 0

    def dcg(self, scores: np.ndarray) -> np.ndarray:
        """DCG@k of each list under ``scores``."""
        padded = np.where(self.mask, np.asarray(scores, np.float64)[self.index], -np.inf)
        order = np.argsort(-padded, axis=1, kind="stable")[:, : len(self.discounts)]
        return (np.take_along_axis(self.gains, order, axis=1) * self.discounts).sum(axis=1)

    def per_list(self, scores: np.ndarray) -> np.ndarray:
        """NDCG@k of each list; NaN where a list has no positive gain."""
        out = np.full(len(self.idcg), np.nan)
        out[self.valid] = self.dcg(scores)[self.valid] / self.idcg[self.valid]
        return out

    def __call__(self, scores: np.ndarray) -> float:
        if not self.valid.any():
            raise ValueError("no session has a positive gain")
        dcg = self.dcg(scores)
        if self.pooled:
            return float(dcg.sum() / self.idcg.sum())
        return float((dcg[self.valid] / self.idcg[self.valid]).mean())


def pooled_interval(
    dcg: np.ndarray, idcg: np.ndarray, minus: np.ndarray | None = None, resamples: int = 1000, seed: int = 0
) -> list[float]:
    """``sum(dcg) / sum(idcg)`` (less ``sum(minus) / sum(idcg)``: a paired difference) with its 95% bootstrap
    interval, the lists resampled."""
    num = dcg - (minus if minus is not None else 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (resamples, len(num)))
    ratios = num[idx].sum(axis=1) / idcg[idx].sum(axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return [round(float(num.sum() / idcg.sum()), 4), round(float(low), 4), round(float(high), 4)]

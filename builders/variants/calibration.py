"""Calibration data from the generated shop: what static INT8 (ONNX Runtime) and TensorRT INT8 see.

Encoder batches are real titles and queries, tokenized and padded to the served length buckets
(multiples of 4 tokens), so activation ranges cover short queries and long titles. Ranker batches
are feature rows of training sessions, computed by the serving code.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from runtime.contract import ATTENTION_MASK, CAT_FEATURES, DENSE_FEATURES, INPUT_IDS, QUERY_PAD_MULTIPLE


def encoder_batches(
    tokenizer, texts: list[str], batch: int = 16, max_batches: int = 32, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Feeds of ``batch`` texts each, grouped by served length bucket, for at most ``max_batches`` batches."""
    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in rng.permutation(len(texts))[: batch * max_batches]]
    ids, mask = tokenizer.encode(picked)
    lengths = mask.sum(1)
    buckets = -(-lengths // QUERY_PAD_MULTIPLE) * QUERY_PAD_MULTIPLE
    feeds = []
    for width in np.unique(buckets):
        rows = np.flatnonzero(buckets == width)
        for s in range(0, len(rows), batch):
            r = rows[s : s + batch]
            feeds.append({INPUT_IDS: ids[r, :width], ATTENTION_MASK: mask[r, :width]})
    return feeds[:max_batches]


def ranker_batches(
    cat: np.ndarray, dense: np.ndarray, batch: int = 512, max_batches: int = 32, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Feeds of ``batch`` random feature rows each."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(cat))[: batch * max_batches]
    return [
        {CAT_FEATURES: cat[idx[s : s + batch]], DENSE_FEATURES: dense[idx[s : s + batch]]}
        for s in range(0, len(idx), batch)
    ]


class FeedReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of feeds (re-iterable via ``rewind``)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        if not feeds:
            raise ValueError("calibration needs at least one batch")
        self.feeds = feeds
        self._it: Iterator = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)

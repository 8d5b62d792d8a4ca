"""What shoppers did after typing a query: the query behaviour statistics and the ranker features from them.

The build (``builders/learning/query_stats.py``) counts, over the statistics window, for every
normalised query with enough ranked lists: its lists, impressions and clicks, and its clicks and
impressions per category, per brand and per item (the top ones, bounded). This module holds those
tables (``QueryStats``, one memory-mapped ``.npy`` each, beside the other feature tables) and turns
them into ranker features for a candidate, by the same function for training rows and for served
requests (``runtime.candidates.candidate_features`` calls ``query_features``).

Counts are *weighted clicks*: a click (or add-to-cart) counts 1 and a purchase 1 more. Rates are
smoothed toward a prior, so a query seen in 3 lists does not claim certainty:

* category share of the query's clicks: ``(clicks(q, c) + A * prior(c)) / (clicks(q) + A)``, the prior
  being the category's share of all search clicks in the window (a Dirichlet prior of A pseudo-clicks);
* the query's CTR, toward the window's search CTR; the query's CTR in a category, toward the
  query's CTR; the query-item CTR, toward the query's CTR in the item's category (Beta priors of M
  pseudo-impressions each): an item never shown for the query gets the rate of its category.

A query that is not in the tables (tail, unseen) borrows the statistics of its nearest head queries by
the encoder's similarity (``match``): the up to ``neighbours`` most frequent queries whose embedding has
a cosine of at least ``min_similarity`` with the query's, their features averaged with the cosines as
weights; ``query_known`` is then the best cosine (1 for the query itself). A query with no such
neighbour, and every homepage row, reads the default row: no clicks, the window's CTR, the catalogue's
priors, ``query_known = 0``; the lexicon and encoder features still apply.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.contract import QUERY_DENSE_COLUMNS
from runtime.pages import load_tables, save_tables

SHARE_PRIOR = 5.0  # A: pseudo-clicks spread over the categories (brands) by their window-wide share
CTR_PRIOR = 20.0  # M: pseudo-impressions at the prior's rate
QUERY_COLUMNS = QUERY_DENSE_COLUMNS  # the features ``QueryStats.features`` computes, in the ranker's order
_NOT_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """The form queries are counted and looked up by: Unicode NFKC, case-folded, punctuation and runs of
    whitespace as one space ("Hygge!!", " hygge ", "HYGGE" -> "hygge"; "t-shirt" -> "t shirt")."""
    return " ".join(_NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def query_key(normalized: str) -> int:
    """A stable signed 64-bit key of a normalised query (BLAKE2b), the tables' sort key."""
    return int.from_bytes(hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _pairs(keys: Array, wanted: Array) -> tuple[Array, Array]:
    """``(found, index)`` of ``wanted`` in the sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(len(wanted), bool), np.zeros(len(wanted), np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return keys[pos] == wanted, pos


class QueryStats:
    """The query tables. Per-query arrays have one extra last row: the default read by unknown queries."""

    keys_sorted: Array  # [Q] int64 query_key of each kept query, sorted
    rows_sorted: Array  # [Q] int64 its row
    log_lists: Array  # [Q+1] float32 log(1 + ranked lists of the query in the window)
    clicks: Array  # [Q+1] float32 weighted clicks
    ctr: Array  # [Q+1] float32 smoothed CTR (last row: the window's search CTR)
    cat_keys: Array  # [Pc] int64 sorted: row * (C + 1) + category + 1
    cat_clicks: Array  # [Pc] float32
    cat_imps: Array  # [Pc] float32
    cat_prior: Array  # [C+1] float32 share of the window's search clicks by category + 1 (0 = none)
    brand_keys: Array  # [Pb] int64 sorted: row * (B + 1) + brand + 1
    brand_clicks: Array  # [Pb] float32
    brand_prior: Array  # [B+1] float32
    item_keys: Array  # [Pi] int64 sorted: row * (I + 1) + item + 1
    item_clicks: Array  # [Pi] float32
    item_imps: Array  # [Pi] float32
    item_slots: Array  # [1] int64: I + 1
    head_embeddings: Array  # [H, D] float32 L2-normalised embedding of rows 0..H-1 (the most frequent queries)
    borrow: Array  # [2] float32: min_similarity, neighbours (0: a query not in the tables borrows nothing)

    def __init__(self, arrays: dict[str, Array]):
        missing = sorted(set(self.__annotations__) - set(arrays))
        if missing:
            raise ValueError(f"query statistics: missing {', '.join(missing)}")
        self.arrays = arrays
        for key, value in arrays.items():
            setattr(self, key, value)
        self.n_queries = len(arrays["keys_sorted"])
        self._n_cat = len(arrays["cat_prior"])
        self._n_brand = len(arrays["brand_prior"])
        self._n_item = int(arrays["item_slots"][0])
        self.min_similarity = float(arrays["borrow"][0])
        self.neighbours = int(arrays["borrow"][1])
        self.width = max(1, self.neighbours)  # the rows a query is matched to (``match``)

    @classmethod
    def empty(cls, n_categories: int, n_brands: int, n_items: int, ctr: float = 0.1, dim: int = 384) -> QueryStats:
        """No query known: every row reads the priors (uniform here). For shops without search logs and tests."""
        f32, i64 = np.zeros(0, np.float32), np.zeros(0, np.int64)
        return cls(
            {
                "keys_sorted": i64,
                "rows_sorted": i64,
                "log_lists": np.zeros(1, np.float32),
                "clicks": np.zeros(1, np.float32),
                "ctr": np.full(1, ctr, np.float32),
                "cat_keys": i64,
                "cat_clicks": f32,
                "cat_imps": f32,
                "cat_prior": np.full(n_categories + 1, 1.0 / (n_categories + 1), np.float32),
                "brand_keys": i64,
                "brand_clicks": f32,
                "brand_prior": np.full(n_brands + 1, 1.0 / (n_brands + 1), np.float32),
                "item_keys": i64,
                "item_clicks": f32,
                "item_imps": f32,
                "item_slots": np.array([n_items + 1], np.int64),
                "head_embeddings": np.zeros((0, dim), np.float32),
                "borrow": np.array([1.0, 0.0], np.float32),
            }
        )

    @classmethod
    def files(cls) -> list[str]:
        """The table files, relative to the feature tables' folder: ``query_<table>.npy``."""
        return [f"query_{name}.npy" for name in sorted(cls.__annotations__)]

    def save(self, folder: Path) -> None:
        save_tables({name: self.arrays[name] for name in self.__annotations__}, folder, "query_")

    @classmethod
    def load(cls, folder: Path) -> QueryStats:
        """Read-only views of the mapped tables, shared through the page cache like the feature tables."""
        return cls(load_tables(list(cls.__annotations__), folder, "query_", "query statistics"))

    def rows(self, texts: list[str]) -> Array:
        """The row of each (raw) query text, -1 where the tables do not have it."""
        keys = np.array([query_key(normalize(t)) for t in texts], np.int64)
        found, pos = _pairs(self.keys_sorted, keys)
        if not found.any():
            return np.full(len(keys), -1, np.int64)
        return np.where(found, self.rows_sorted[pos], -1)

    def row(self, text: str) -> int:
        return int(self.rows([text])[0])

    def nearest(self, vectors: Array) -> tuple[Array, Array]:
        """``(rows, cosines)`` ``[N, width]`` of the head queries nearest each of ``vectors`` ``[N, D]`` with a
        cosine of at least ``min_similarity`` (-1 and 0 elsewhere)."""
        n, m = len(vectors), self.width
        rows, weights = np.full((n, m), -1, np.int64), np.zeros((n, m), np.float32)
        head = self.head_embeddings
        if self.neighbours == 0 or len(head) == 0 or n == 0:
            return rows, weights
        sims = np.asarray(vectors, np.float32) @ np.asarray(head).T
        k = min(m, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (n, 1))
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        top, top_sims = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)
        close = top_sims >= self.min_similarity
        rows[:, :k] = np.where(close, top, -1)
        weights[:, :k] = np.where(close, top_sims, 0.0)
        return rows, weights

    def match(self, texts: list[str], vectors: Array | None) -> tuple[Array, Array]:
        """``(rows, weights)`` ``[N, width]``: a query in the tables is its own row with weight 1; another
        borrows its nearest head queries (``nearest``) when its embedding is given (``vectors`` ``[N, D]``)."""
        own = self.rows(texts)
        rows, weights = np.full((len(own), self.width), -1, np.int64), np.zeros((len(own), self.width), np.float32)
        rows[:, 0], weights[:, 0] = own, (own >= 0)
        other = np.flatnonzero(own < 0)
        if vectors is not None and other.size:
            rows[other], weights[other] = self.nearest(np.asarray(vectors)[other])
        return rows, weights

    def clicked_items(self, rows: Array, weights: Array, limit: int) -> Array:
        """Up to ``limit`` item rows clicked after the matched queries ``rows`` / ``weights`` ``[width]``
        (``match``), by weighted clicks (each query's clicks times its weight), most first."""
        found_items, found_clicks = [], []
        for q, w in zip(np.asarray(rows).tolist(), np.asarray(weights).tolist(), strict=True):
            if q < 0 or w <= 0:
                continue
            a, b = np.searchsorted(self.item_keys, [q * self._n_item, (q + 1) * self._n_item])
            clicks = np.asarray(self.item_clicks[a:b], np.float64)
            hit = clicks > 0
            found_items.append(np.asarray(self.item_keys[a:b])[hit] % self._n_item - 1)
            found_clicks.append(w * clicks[hit])
        if not found_items or limit <= 0:
            return np.zeros(0, np.int64)
        items, inverse = np.unique(np.concatenate(found_items), return_inverse=True)
        total = np.bincount(inverse, weights=np.concatenate(found_clicks))
        out: Array = items[np.argsort(-total, kind="stable")[:limit]].astype(np.int64)
        return out

    def category_shares(self, rows: Array, weights: Array) -> Array:
        """``[C+1]`` the matched queries' smoothed click share of each category (by index + 1; 0 = none), the
        weighted mean as in ``features``; the catalogue's prior where nothing matched."""
        shares = np.zeros(self._n_cat)
        total = 0.0
        for q, w in zip(np.asarray(rows).tolist(), np.asarray(weights).tolist(), strict=True):
            if q < 0 or w <= 0:
                continue
            a, b = np.searchsorted(self.cat_keys, [q * self._n_cat, (q + 1) * self._n_cat])
            clicks = np.zeros(self._n_cat)
            clicks[np.asarray(self.cat_keys[a:b]) % self._n_cat] = self.cat_clicks[a:b]
            shares += w * (clicks + SHARE_PRIOR * self.cat_prior) / (float(self.clicks[q]) + SHARE_PRIOR)
            total += w
        out: Array = shares / total if total > 0 else np.asarray(self.cat_prior, np.float64)
        return out

    def match_one(self, text: str, vector_of: Callable[[], Array] | None) -> tuple[Array, Array]:
        """``match`` for one served query, ``[1, width]``: its embedding is asked of ``vector_of`` only when
        the tables do not know the query and it may borrow (the encoder call, through BLS when served)."""
        own = self.row(text)
        if own >= 0 or vector_of is None or self.neighbours == 0 or len(self.head_embeddings) == 0:
            rows, weights = np.full((1, self.width), -1, np.int64), np.zeros((1, self.width), np.float32)
            rows[0, 0], weights[0, 0] = own, float(own >= 0)
            return rows, weights
        return self.nearest(np.asarray(vector_of(), np.float32).reshape(1, -1))

    def features(self, q_rows: Array, q_weights: Array, item_rows: Array, category: Array, brand: Array) -> Array:
        """``[N, len(QUERY_COLUMNS)]`` float32 for candidates (``item_rows``, their ``category``/``brand``
        indices, -1 unknown) of matched queries ``q_rows`` / ``q_weights`` ``[N, width]`` (``match``; a row -1
        has weight 0): the weighted mean of each matched query's features, the defaults where none matched;
        ``query_known`` is the largest weight."""
        q_rows, q_weights = np.atleast_2d(q_rows), np.atleast_2d(q_weights).astype(np.float64)
        total = q_weights.sum(axis=1)
        if q_rows.shape[1] == 1 or not (q_weights[:, 1:] > 0).any():
            out = self._features(q_rows[:, 0], item_rows, category, brand)
        else:
            parts = [self._features(q_rows[:, j], item_rows, category, brand) for j in range(q_rows.shape[1])]
            mixed = (
                sum(w[:, None] * f for w, f in zip(q_weights.T, parts, strict=True)) / np.maximum(total, 1e-12)[:, None]
            )
            none = self._features(np.full(len(item_rows), -1), item_rows, category, brand)
            out = np.where((total > 0)[:, None], mixed, none).astype(np.float32)
        out[:, 0] = q_weights.max(axis=1)
        return out

    def _features(self, q_rows: Array, item_rows: Array, category: Array, brand: Array) -> Array:
        """The features of one matched query per candidate (-1: the defaults)."""
        known = q_rows >= 0
        q = np.where(known, q_rows, len(self.log_lists) - 1)  # the default row
        clicks_q, ctr_q = self.clicks[q].astype(np.float64), self.ctr[q].astype(np.float64)

        def counts(keys: Array, slots: int, index: Array, *values: Array) -> list[Array]:
            found, pos = _pairs(keys, q_rows * slots + index + 1)
            found &= known
            return [np.where(found, v[pos], 0.0) if len(v) else np.zeros(len(q)) for v in values]

        c_clicks, c_imps = counts(self.cat_keys, self._n_cat, category, self.cat_clicks, self.cat_imps)
        (b_clicks,) = counts(self.brand_keys, self._n_brand, brand, self.brand_clicks)
        i_clicks, i_imps = counts(self.item_keys, self._n_item, item_rows, self.item_clicks, self.item_imps)
        cat_ctr = (c_clicks + CTR_PRIOR * ctr_q) / (c_imps + CTR_PRIOR)
        out = np.empty((len(q), len(QUERY_COLUMNS)), np.float32)
        out[:, 0] = known
        out[:, 1] = self.log_lists[q]
        out[:, 2] = (c_clicks + SHARE_PRIOR * self.cat_prior[category + 1]) / (clicks_q + SHARE_PRIOR)
        out[:, 3] = cat_ctr
        out[:, 4] = (b_clicks + SHARE_PRIOR * self.brand_prior[brand + 1]) / (clicks_q + SHARE_PRIOR)
        out[:, 5] = (i_clicks + CTR_PRIOR * cat_ctr) / (i_imps + CTR_PRIOR)
        return out

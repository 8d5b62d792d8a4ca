"""Co-visitation: the items shoppers interacted with in the same visits, and the features from them.

The build (``builders/learning/covisit.py``) counts, over the statistics window's sessions, for every
pair of items one session interacted with (a click or add-to-cart, a purchase, or the item whose page
the session viewed), a weight by the kind of the later interaction and the time between the two;
it normalises each pair by the two items' own interaction weights, so a popular item does not follow
everything by its popularity alone, and keeps the ``top`` of each item. This module holds the
tables (``CoVisits``, memory-mapped ``.npy`` files beside the other feature tables) and turns them
into what ``recommend_catalog`` retrieves and into the ranker's features, by the same functions for
training rows and for served requests (``runtime.candidates.candidate_features`` calls ``features``).

A request's *context* is what the shopper is looking at and did last: the ``CONTEXT_ITEM_IDS`` (the
product page's item) and the newest ``RECENT_CONTEXT`` items of the user's (or anonymous session's)
recent interactions in the online store, newest first; in training, the list's product-page item and
the newest ``RECENT_CONTEXT`` items the user (or session) interacted with before the list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.contract import COVISIT_DENSE_COLUMNS
from runtime.half import to_float32
from runtime.pages import load_tables, save_tables

RECENT_CONTEXT = 5  # the newest recent interactions that act as context (beside the viewed items)
RECENT_READ = 20  # the recent interactions a request reads (SHOPRANK_ONLINE_RECENT's default; in the affinities)
CONTEXT_WIDTH = 8  # context items a row's features look at: the viewed ones first, then the recent ones
SIMILARITY_CHUNK = 65_536  # rows whose embeddings are gathered at once (training rows: bounded memory)


class CoVisits:
    """The co-visitation tables: per item row ``a``, its ``top`` co-visited rows ``b`` with a weight."""

    keys: Array  # [P] int64 sorted: a * slots + b
    weights: Array  # [P] float32 normalised weight of b after/with a
    offsets: Array  # [I+2] int64: the pairs of row a are keys[offsets[a]:offsets[a+1]] (row I: none)
    slots: Array  # [1] int64: I + 1
    categories: Array  # [C+1, C+1] float32 the same normalised weights between categories + 1 (0 = none)

    def __init__(self, arrays: dict[str, Array]):
        missing = sorted(set(self.__annotations__) - set(arrays))
        if missing:
            raise ValueError(f"co-visitation tables: missing {', '.join(missing)}")
        self.arrays = arrays
        for key, value in arrays.items():
            setattr(self, key, value)
        self.n_slots = int(arrays["slots"][0])

    @classmethod
    def empty(cls, n_items: int, n_categories: int = 0) -> CoVisits:
        """No pair known (a shop without sessions, and tests)."""
        return cls.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), n_items, n_categories)

    @classmethod
    def from_pairs(
        cls, src: Array, dst: Array, weight: Array, n_items: int, n_categories: int = 0, categories: Array | None = None
    ) -> CoVisits:
        """Tables from (source row, neighbour row, weight) triples, each pair once, and the category table
        ``[C+1, C+1]`` (zeros by default)."""
        keys = np.asarray(src, np.int64) * (n_items + 1) + np.asarray(dst, np.int64)
        return cls.from_keys(keys, weight, n_items, n_categories, categories)

    @classmethod
    def from_keys(
        cls, keys: Array, weight: Array, n_items: int, n_categories: int = 0, categories: Array | None = None
    ) -> CoVisits:
        """Tables from pair keys ``src * (I + 1) + dst`` (each once; already sorted is cheapest) and weights."""
        slots = n_items + 1
        keys, weights = np.asarray(keys, np.int64), np.asarray(weight, np.float32)
        if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
            order = np.argsort(keys, kind="stable")
            keys, weights = keys[order], weights[order]
        offsets = np.searchsorted(keys, np.arange(n_items + 2, dtype=np.int64) * slots).astype(np.int64)
        cat = np.zeros((n_categories + 1, n_categories + 1), np.float32) if categories is None else categories
        arrays = {"keys": keys, "weights": weights, "offsets": offsets, "slots": np.array([slots], np.int64)}
        return cls({**arrays, "categories": np.asarray(cat, np.float32)})

    @classmethod
    def files(cls) -> list[str]:
        """The table files, relative to the feature tables' folder: ``covisit_<table>.npy``."""
        return [f"covisit_{name}.npy" for name in sorted(cls.__annotations__)]

    def save(self, folder: Path) -> None:
        save_tables({name: self.arrays[name] for name in self.__annotations__}, folder, "covisit_")

    @classmethod
    def load(cls, folder: Path) -> CoVisits:
        return cls(load_tables(list(cls.__annotations__), folder, "covisit_", "co-visitation tables"))

    @property
    def n_pairs(self) -> int:
        return len(self.keys)

    def neighbours(self, rows: Array, weights: Array | None = None) -> tuple[Array, Array]:
        """The rows co-visited with any of ``rows`` (-1 entries ignored) and their summed weights (each
        context row's pairs times its entry of ``weights``, 1 by default), best first."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        w = np.ones(len(rows), np.float32) if weights is None else np.asarray(weights, np.float32).reshape(-1)
        keep = (rows >= 0) & (rows < self.n_slots - 1)
        rows, w = rows[keep], w[keep]
        if rows.size == 0 or self.n_pairs == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        parts = [(self.offsets[r], self.offsets[r + 1]) for r in rows.tolist()]
        found = np.concatenate([np.asarray(self.keys[a:b]) % self.n_slots for a, b in parts])
        scores = np.concatenate([np.asarray(self.weights[a:b]) * x for (a, b), x in zip(parts, w, strict=True)])
        if found.size == 0:
            return found, scores
        uniq, inverse = np.unique(found, return_inverse=True)
        total = np.bincount(inverse, weights=scores, minlength=len(uniq))
        order = np.argsort(-total, kind="stable")
        return uniq[order].astype(np.int64), total[order].astype(np.float32)

    def pair_weights(self, context: Array, items: Array) -> Array:
        """``[N, K]`` weight of each row's item ``items [N]`` with each of its context rows ``context [N, K]``
        (0 where the pair is not in the tables or the context entry is -1)."""
        context = np.asarray(context, np.int64)
        items = np.asarray(items, np.int64)
        out = np.zeros(context.shape, np.float32)
        if self.n_pairs == 0 or context.size == 0:
            return out
        valid = (context >= 0) & (items[:, None] >= 0)
        want = context * self.n_slots + items[:, None]
        pos = np.minimum(np.searchsorted(self.keys, want[valid]), self.n_pairs - 1)
        hit = np.asarray(self.keys[pos]) == want[valid]
        out[valid] = np.where(hit, np.asarray(self.weights[pos]), 0.0)
        return out

    def features(
        self, context: Array, items: Array, embeddings: Array | None, item_category: Array, viewing: Array | None = None
    ) -> Array:
        """``[N, len(COVISIT_DENSE_COLUMNS)]``: the co-visitation weight of each candidate with its context
        (log of 1 + the sum and the max over the context items), the best cosine of its title embedding with
        theirs, whether an item is being viewed, and, for the viewed items and for the recent ones apart, the
        share of them in the candidate's category and the best co-visitation of its category with theirs.
        ``context [N, K]`` item rows (-1 padding), the first ``viewing [N]`` of each row the viewed items
        (``context_rows`` puts them first; None: none), ``items [N]`` the candidates' rows (-1 unknown),
        ``embeddings [I+1, D]`` the title embeddings by row (last row zeros; None: no similarity, 0),
        ``item_category [I+1]`` (-1 none).

        Measured: without the product-page flag, training on product pages cost the demo's homepage lists
        0.016 NDCG@10 (true relevance), the two kinds of list indistinguishable to the ranker; with one
        category share for both kinds of context, the small demo's ranker learned the product pages' "a
        complement rather than more of the same" for the homepage too, and a session's clicks on one
        category lowered that category in its next homepage recommendation. A viewed item and a recent
        click say different things (what goes with it; what the shopper likes), so they are apart."""
        context = np.asarray(context, np.int64)
        items = np.asarray(items, np.int64)
        n = len(items)
        out = np.zeros((n, len(COVISIT_DENSE_COLUMNS)), np.float32)
        has = context >= 0
        any_context = has.any(axis=1) if context.size else np.zeros(n, bool)
        if n == 0 or not any_context.any():
            return out
        w = self.pair_weights(context, items)
        out[:, 0] = np.log1p(w.sum(axis=1))
        out[:, 1] = np.log1p(w.max(axis=1, initial=0.0))
        n_viewed = np.zeros(n, np.int64) if viewing is None else np.asarray(viewing, np.int64).reshape(-1)
        out[:, 3] = n_viewed > 0
        cand_cat = item_category[items]
        ctx_cat = np.where(has, item_category[context], -2)  # -2: padding, never a category
        is_viewed = np.arange(context.shape[1])[None, :] < n_viewed[:, None]
        same = (ctx_cat == cand_cat[:, None]) & (cand_cat[:, None] >= 0)
        cat_w = (
            np.asarray(self.categories)[np.maximum(ctx_cat, -1) + 1, (cand_cat + 1)[:, None]]
            if self.categories.shape[0] > 1
            else np.zeros(context.shape, np.float32)
        )
        for col, part in ((4, has & is_viewed), (6, has & ~is_viewed)):
            count = part.sum(axis=1)
            out[:, col] = (same & part).sum(axis=1) / np.maximum(count, 1)
            out[:, col + 1] = np.where(part, cat_w, 0.0).max(axis=1, initial=0.0)
        if embeddings is not None:
            # one matrix product per distinct context (a request has one; training rows one per list)
            rows = np.flatnonzero(any_context)
            if (context[rows] == context[rows[0]]).all():  # a served request: one context for every row
                distinct, group = context[rows[:1]], np.zeros(len(rows), np.int64)
            else:
                distinct, group = np.unique(context[rows], axis=0, return_inverse=True)
            group = group.reshape(-1)
            order = np.argsort(group, kind="stable")
            bounds = np.searchsorted(group[order], np.arange(len(distinct) + 1))
            for g in range(len(distinct)):
                part = rows[order[bounds[g] : bounds[g + 1]]]
                ctx = distinct[g][distinct[g] >= 0]
                for a in range(0, len(part), SIMILARITY_CHUNK):
                    chunk = part[a : a + SIMILARITY_CHUNK]
                    cos = _half(embeddings[items[chunk]]) @ _half(embeddings[ctx]).T
                    out[chunk, 2] = cos.max(axis=1)
        return out


def _half(vectors: Array) -> Array:
    """Embeddings as float16 values in float32: the served table may be float16 (``retrieval.embedding_dtype``)
    and training reads the float32 one, so both compute the similarity from the same values."""
    vectors = np.asarray(vectors)
    return to_float32(vectors if vectors.dtype == np.float16 else vectors.astype(np.float16))


def context_vector(profile: Array, context: Array, embeddings: Array, viewed: bool = False) -> Array:
    """A recommendation's vector ``[D]``, normalised (zeros when there is nothing to say): beside ``viewed``
    items (a product page) the normalised mean title embedding of the ``context`` item rows (-1 ignored)
    alone, more like what is being viewed whoever views it (the ranker still personalises); otherwise the
    user's ``profile``, or where the user has none (a visitor the build never saw) the context's mean.
    Measured on the demo's homepage lists: the profile plus the recent items' mean lost 0.017 NDCG@10
    (true relevance) against the profile alone; the recent items reach the ranker through the context
    features instead. Retrieval searches with it and topk scores the candidates' similarity to it, in
    training and serving alike."""
    vector = np.asarray(profile, np.float32).copy()
    rows = np.asarray(context, np.int64)
    rows = rows[rows >= 0]
    if rows.size and (viewed or not vector.any()):
        mean = _half(embeddings[rows]).mean(axis=0)
        vector = mean / max(float(np.linalg.norm(mean)), 1e-9)
    norm = float(np.linalg.norm(vector))
    unit: Array = (vector / norm if norm > 0 else vector).astype(np.float32)
    return unit


def context_rows(viewed: Array, recent: Array, width: int = CONTEXT_WIDTH) -> Array:
    """A request's context as item rows ``[width]`` (-1 padding): the viewed items first, then the newest
    ``RECENT_CONTEXT`` recent ones not among them, unknown items (-1) left out."""
    seen = [int(r) for r in np.asarray(viewed, np.int64).reshape(-1) if r >= 0]
    recent_rows = [int(r) for r in np.asarray(recent, np.int64).reshape(-1) if r >= 0 and int(r) not in seen]
    rows = (seen + list(dict.fromkeys(recent_rows))[:RECENT_CONTEXT])[:width]
    out = np.full(width, -1, np.int64)
    out[: len(rows)] = rows
    return out

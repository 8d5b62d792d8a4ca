"""Final scoring and top-k: ``score = logit + sim_weight * z(cos(context, item title))``.

The ranker (ONNX) sees only per-candidate features, so its batch axis is the candidate axis and
Triton batches candidates of many requests together. The query embedding enters here, at the end,
as a late interaction: the ranker learns per candidate how much the semantic match should count
(``sim_weight``). Item title embeddings are precomputed at build time and stored with one extra zero
row, which unknown items (row -1) read.

``z`` standardises the cosines over the request's candidates (``standardize``). Raw cosines have a
query-dependent offset and spread (a German query scores low against every English title, a
precise one high against many), so one learned weight cannot fit them all; as z-scores within the
request, the weight means the same for every query. Measured on the demo shop's held-out days
(docs/quality.md): NDCG@10 of the vocabulary-mismatch searches 0.9385 -> 0.9428 (raw -> z), and
the similarity term's contribution on them 0.007 -> 0.009. Training rows use the same function.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime import contract as c
from runtime.arrays import Array
from runtime.catalog import CATALOG_FILE, Catalog
from runtime.contract import TOP_ITEM_IDS, TOP_ITEM_KEYS, TOP_SCORES
from runtime.errors import InvalidInput
from runtime.features import ITEM_EMBEDDINGS_FILE as ITEM_EMBEDDINGS_FILE  # re-exported: where topk's readers look
from runtime.half import rows_float32
from runtime.listing import arrange, read_notes
from runtime.options import ItemView, parse_filter, parse_options
from runtime.pages import map_npy
from runtime.requests import check_top_k
from runtime.tables import STORE_DIR
from runtime.understand import BOOST

ITEM_KEYS_FILE = "item_keys.npy"  # [I+1] fixed-width UTF-8 string SKUs by item row (string-id shops only)
SIM_EPS = 1e-2  # variance floor: a request whose candidates all match equally keeps z near 0


def standardize(cosines: Array) -> Array:
    """The cosines of one request's candidates as z-scores over those candidates (float32)."""
    x = np.asarray(cosines, np.float64)
    z: Array = ((x - x.mean()) / np.sqrt(x.var() + SIM_EPS)).astype(np.float32)
    return z


def standardize_lists(cosines: Array, offsets: Array) -> Array:
    """``standardize`` applied to each list ``offsets[i]:offsets[i+1]`` (training rows)."""
    out = np.empty(len(cosines), np.float32)
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        if b > a:
            out[a:b] = standardize(cosines[a:b])
    return out


def candidate_vectors(item_rows: Array, item_embeddings: Array, new_embeddings: Array | None = None) -> Array:
    """The title embedding of each candidate ``[N, D]``: table rows, zeros for unknown items (-1), and
    ``new_embeddings[-row - 1]`` for rows below -1 (new items embedded on write; row 0 there is zeros)."""
    rows = np.asarray(item_rows, np.int64).reshape(-1)
    # float32 whatever the table stores (the build may serve a float16 table)
    vectors: Array = rows_float32(item_embeddings, np.maximum(rows, -1))
    new_rows = rows < -1
    if new_rows.any():
        index = -rows[new_rows] - 1
        if new_embeddings is None or index.max() >= len(new_embeddings):
            have = 0 if new_embeddings is None else len(new_embeddings)
            raise InvalidInput(
                c.ITEM_ROWS, f"row {int(rows.min())} needs {int(index.max()) + 1} new embeddings, got {have}"
            )
        if new_embeddings.shape[1] != item_embeddings.shape[1]:
            raise InvalidInput(
                c.NEW_EMBEDDINGS, f"expected {item_embeddings.shape[1]} values per row, got {new_embeddings.shape[1]}"
            )
        vectors[new_rows] = new_embeddings[index]
    return vectors


def similarity(context: Array, item_rows: Array, item_embeddings: Array, new_embeddings: Array | None = None) -> Array:
    """[N] the standardised cosine (``standardize``) of ``context`` [D] with each candidate's title embedding."""
    # einsum (without optimize) never calls BLAS: a BLAS gemv wakes OpenBLAS's thread pool, whose
    # spinning threads then steal the second core from the encoder (measured: topk p50 1.4 ms -> 0.05 ms).
    vectors = candidate_vectors(item_rows, item_embeddings, new_embeddings)
    sim: Array = standardize(np.einsum("ij,j->i", vectors, np.asarray(context, np.float32).reshape(-1)))
    return sim


def final_scores(
    context: Array,
    logit: Array,
    sim_weight: Array,
    item_rows: Array,
    item_embeddings: Array,
    new_embeddings: Array | None = None,
) -> Array:
    """[N] float32 scores. ``context`` is [1, D] (or [D]); ``logit`` and ``sim_weight`` are [N, 1] or [N].
    The similarity is the standardised cosine (``standardize``) over these N candidates."""
    ctx = np.asarray(context, np.float32).reshape(-1)
    if ctx.shape[0] != item_embeddings.shape[1]:
        raise InvalidInput(
            "CONTEXT_EMBEDDING",
            f"expected {item_embeddings.shape[1]} values (the encoder's dimension), got {ctx.shape[0]}",
        )
    sim = similarity(ctx, item_rows, item_embeddings, new_embeddings)
    return (np.asarray(logit, np.float32).reshape(-1) + np.asarray(sim_weight, np.float32).reshape(-1) * sim).astype(
        np.float32
    )


def best(scores: Array, k: int) -> Array:
    """Positions of the ``k`` best scores, best first; ties keep the request's order. ``k`` is clipped to N."""
    # A full stable sort: N is at most MAX_CANDIDATES (1,000), where it costs tens of microseconds.
    order: Array = np.argsort(-scores, kind="stable")[: min(int(k), scores.shape[0])]
    return order


def top_k(scores: Array, item_ids: Array, k: int) -> tuple[Array, Array]:
    """The ``k`` best ``(ids, scores)``, best first; ties keep the request's order. ``k`` is clipped to N."""
    n = scores.shape[0]
    if len(item_ids) != n:
        raise InvalidInput("ITEM_IDS", f"{len(item_ids)} ids but {n} scores")
    order = best(scores, k)
    return np.asarray(item_ids, np.int64)[order], scores[order]


def item_keys(ids: Array, rows: Array, keys: Array | None) -> Array:
    """The shop's own id of each item as UTF-8 bytes (BYTES): its string SKU from ``keys`` (by table row) where
    the shop has them and the build knows the item, else its INT64 id in decimal."""
    out = np.array([str(i).encode() for i in np.asarray(ids).tolist()], object)
    if keys is not None:
        known = np.flatnonzero(np.asarray(rows) >= 0)
        out[known] = [bytes(k) for k in keys[np.asarray(rows)[known]]]
    return out


def load_item_embeddings(folder: str | Path) -> Array:
    """The item title embeddings ``[I+1, D]`` of a version folder, memory-mapped read-only: the instances
    of topk and of the retrieval models read one copy in the page cache (a request gathers its rows)."""
    # a plain ndarray over the map (runtime.pages): no np.memmap subclass hooks on each per-request gather
    return map_npy(Path(folder) / ITEM_EMBEDDINGS_FILE)


class TopK:
    """The top-k step: item embeddings, a string-id shop's SKUs and the catalogue tables loaded once, one
    ``rank`` call per request."""

    def __init__(
        self,
        item_embeddings: Array,
        keys: Array | None = None,
        catalog: Catalog | None = None,
        release: int | None = None,
    ):
        self.item_embeddings = item_embeddings  # [I+1, D], last row zeros (unknown items)
        self.keys = keys  # [I+1] fixed-width bytes, the shop's string SKUs by row; None: integer ids
        self.catalog = catalog  # groups, dates and facet values (runtime/catalog.py); None: an older build
        self.release = release  # the release (version number) whose files these are: RESULT_INFO's "release"

    @classmethod
    def load(cls, folder: str | Path) -> TopK:
        folder = Path(folder)
        keys = folder / ITEM_KEYS_FILE
        catalog = Catalog.load(folder, STORE_DIR) if (folder / CATALOG_FILE).exists() else None
        release = int(folder.name) if folder.name.isdigit() else None  # a repository's <model>/<version> folder
        return cls(load_item_embeddings(folder), map_npy(keys) if keys.exists() else None, catalog, release)

    def rank(
        self,
        context: Array,
        logit: Array,
        sim_weight: Array,
        item_rows: Array,
        item_ids: Array,
        k: Array,
        available: Array | None = None,
        new_embeddings: Array | None = None,
        prices: Array | None = None,
        notes: Array | None = None,
        boosts: Array | None = None,
        pins: Array | None = None,
        options: str | None = None,
    ) -> dict[str, Array]:
        """The page of ``k`` results (``runtime/listing.py``: sort, variant groups, offset, facets);
        candidates whose ``available`` is False (sold out, filtered) are left out, so a request may get
        fewer than ``k``. The similarity is standardised over all the candidates. New items (rows below -1)
        take their embedding from ``new_embeddings`` (``candidate_vectors``). ``options``: the request's
        ``shoprank_options`` (``runtime/options.py``; only its page, sort, group and facet fields apply here:
        the filter was applied before the ranker). ``notes``: what the query was understood to ask
        (``runtime/understand.py``) and the merchandising rules that applied, echoed in RESULT_INFO; in the
        understanding's ``boost`` mode the candidates that match it score ``BOOST`` higher. ``boosts`` and
        ``pins``: the rules' score offsets and pinned positions (``runtime/rules.py``)."""
        listing_options = parse_options(options, self.catalog, filters=False)
        top = check_top_k(k)
        scores = final_scores(context, logit, sim_weight, item_rows, self.item_embeddings, new_embeddings)
        rows = np.asarray(item_rows, np.int64).reshape(-1)
        item_ids = np.asarray(item_ids, np.int64)
        if len(item_ids) != scores.shape[0]:
            raise InvalidInput("ITEM_IDS", f"{len(item_ids)} ids but {scores.shape[0]} scores")
        price = np.full(len(rows), np.nan, np.float32) if prices is None else np.asarray(prices, np.float32)
        if len(price) != len(rows):
            raise InvalidInput(c.PRICES, f"{len(price)} prices but {len(rows)} candidates")
        n = len(rows)
        offsets = np.zeros(n, np.float32) if boosts is None else np.asarray(boosts, np.float32).reshape(-1)
        pinned = np.full(n, -1, np.int32) if pins is None else np.asarray(pins, np.int32).reshape(-1)
        if len(offsets) != n or len(pinned) != n:
            raise InvalidInput(c.BOOSTS, f"{len(offsets)} boosts and {len(pinned)} pins but {n} candidates")
        scores = (scores + offsets).astype(np.float32)
        if available is not None and not np.all(available):
            keep = np.asarray(available, bool).reshape(-1)
            scores, item_ids, rows, price, pinned = scores[keep], item_ids[keep], rows[keep], price[keep], pinned[keep]
        asked, applied = read_notes(notes)
        if asked.mode == "boost" and asked.tree and not asked.relaxed and self.catalog is not None:
            matches = parse_filter(asked.tree, self.catalog, "understood")(
                self.catalog, ItemView(np.maximum(rows, -1), price, np.ones(len(rows)), item_ids)
            )
            scores = (scores + BOOST * matches).astype(np.float32)
        listing = arrange(self.catalog, listing_options, scores, rows, item_ids, price, top, pinned)
        if asked.chips:
            listing.info["understood"] = {"chips": list(asked.chips), "mode": asked.mode, "relaxed": asked.relaxed}
        if applied:
            listing.info["rules"] = applied
        if self.release is not None:  # which release answered: the arm of an online test (server/experiment.py)
            listing.info["release"] = self.release
        page = listing.page
        ids = item_ids[page]
        keys = item_keys(ids, rows[page], self.keys)
        catalog = self.catalog
        groups = (
            keys
            if catalog is None
            else np.array(
                [catalog.group_key(int(g), k) for g, k in zip(listing.groups.tolist(), keys, strict=True)], object
            )
        )
        return {
            TOP_ITEM_IDS: ids,
            TOP_SCORES: scores[page],
            TOP_ITEM_KEYS: keys,
            c.TOP_GROUP_KEYS: groups.reshape(-1) if len(page) else np.zeros(0, object),
            c.TOP_GROUP_MATCHES: listing.matched.astype(np.int32),
            c.RESULT_INFO: np.array([json.dumps(listing.info).encode()], object),
        }

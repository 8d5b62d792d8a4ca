"""Feature extraction: raw request -> the encoder's and the ranker's input tensors.

The same code builds the training matrix (``candidate_features`` over a million rows) and each
served request (``FeatureStore.search`` / ``FeatureStore.recommend``), so training and serving cannot
disagree. Everything per candidate is a numpy gather; nothing loops over candidates in Python.

Every item and user table has one extra, last row holding cold-start defaults. An unknown id maps to
row ``-1``, which numpy reads as that last row: no special case in the hot path.

Documented behaviour for unusual requests (see docs/serving.md):
* unknown USER_ID: cold start, ranked with the unknown-user row (no affinities) -> a ranking;
* unknown item ids in ITEM_IDS: ranked with the unknown-item row (context features still apply);
* empty ITEM_IDS, more than MAX_CANDIDATES, duplicate ids: INVALID_ARGUMENT naming ITEM_IDS;
* empty / whitespace QUERY, non-UTF-8 bytes, over MAX_QUERY_BYTES: INVALID_ARGUMENT naming QUERY.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.contract import (
    AVAILABLE,
    COVISIT_DENSE_COLUMNS,
    DENSE_COLUMNS,
    EMBED_DIM,
    ITEM_ROWS,
    MAX_CANDIDATES,
    MAX_QUERY_BYTES,
    N_CAT,
    N_DENSE,
    NEW_EMBEDDINGS,
    SENTENCE_EMBEDDING,
)
from runtime.covisit import CoVisits, context_rows, context_vector
from runtime.errors import InvalidInput
from runtime.online import OnlineItems, OnlineRead
from runtime.pages import load_tables, map_npy, save_tables
from runtime.query_stats import QUERY_COLUMNS, QueryStats
from runtime.text import TextTokenizer

STORE_DIR = "feature_store"  # one .npy per table, memory-mapped by every instance of every model
LEXICON_FILE = "lexicon.json"
TOKENIZER_FILE = "tokenizer.json"
USER_PROFILE_FILE = "user_profiles.npy"
ITEM_EMBEDDINGS_FILE = "item_embeddings.npy"  # the title embeddings [I+1, D] (runtime.scoring reads the same file)
MANIFEST_FILE = "manifest.json"  # written by the build next to the tables; names the encoder's dimension
_WORD = re.compile(r"\w[\w\-]*")
CATEGORY_SEPARATOR = ">"  # category paths: "Shoes > Running Shoes"
COVISIT_DENSE = slice(DENSE_COLUMNS.index(COVISIT_DENSE_COLUMNS[0]), DENSE_COLUMNS.index(COVISIT_DENSE_COLUMNS[-1]) + 1)
QUERY_DENSE = slice(DENSE_COLUMNS.index(QUERY_COLUMNS[0]), DENSE_COLUMNS.index(QUERY_COLUMNS[-1]) + 1)


@dataclass(frozen=True)
class QueryIntent:
    """What query understanding found in a query: indices into the lexicon, -1 = none."""

    category: int = -1
    brand: int = -1
    attribute: int = -1


def words(text: str) -> str:
    """Lower-cased words (any script; hyphens kept inside a word) joined by single spaces."""
    return " ".join(_WORD.findall(text.lower()))


def category_phrase(category: str) -> str:
    """The phrase a query names a category by: the last segment of a path ('Shoes > Running' -> 'running')."""
    return words(category.split(CATEGORY_SEPARATOR)[-1])


class Lexicon:
    """The catalogue's own vocabulary (categories, brands, attributes), learned at build time.

    ``parse`` finds whole-word phrases of that vocabulary in a query, longest phrase first. It
    understands only the catalogue's words: a query that says "shoes for jogging" where the
    catalogue says "Running Shoes" finds no category, and the text encoder's similarity is what
    ranks it (docs/quality.md measures both).
    """

    def __init__(self, categories: list[str], brands: list[str], attributes: list[str]):
        self.categories = categories
        self.brands = brands
        self.attributes = attributes
        self._cats = self._phrases(category_phrase(c) for c in categories)
        self._brands = self._phrases(words(b) for b in brands)
        self._attrs = self._phrases(words(a) for a in attributes)

    @staticmethod
    def _phrases(phrases: Iterable[str]) -> list[tuple[str, int]]:
        # Longest first, so "running shoes" wins over a shorter phrase inside it; padded for whole words.
        found = [(f" {p} ", i) for i, p in enumerate(phrases) if p]
        return sorted(found, key=lambda x: -len(x[0]))

    def to_json(self) -> str:
        return json.dumps({"categories": self.categories, "brands": self.brands, "attributes": self.attributes})

    @classmethod
    def from_json(cls, text: str) -> Lexicon:
        return cls(**json.loads(text))

    def parse(self, query: str) -> QueryIntent:
        text = f" {words(query)} "

        def find(phrases: list[tuple[str, int]]) -> int:
            return next((i for p, i in phrases if p in text), -1)

        return QueryIntent(find(self._cats), find(self._brands), find(self._attrs))


def decode_query(raw: object) -> str:
    """The QUERY tensor's single element as text, or InvalidInput naming QUERY."""
    if isinstance(raw, np.ndarray):
        if raw.size != 1:
            raise InvalidInput("QUERY", f"expected exactly 1 element, got {raw.size}")
        raw = raw.reshape(-1)[0]
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidInput("QUERY", f"expected bytes, got {type(raw).__name__}")
    if len(raw) > MAX_QUERY_BYTES:
        raise InvalidInput("QUERY", f"{len(raw)} bytes is longer than the limit of {MAX_QUERY_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput("QUERY", f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    if not text.strip():
        raise InvalidInput("QUERY", "empty; send requests without a query to the 'recommend' model")
    return text


def _one_dimensional(field: str, values: Array) -> Array:
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise InvalidInput(field, f"expected a 1-D list, got shape {list(ids.shape)}")
    return ids


def check_id_list(field: str, values: Array, limit: int = MAX_CANDIDATES) -> Array:
    """An id list that may be empty (EXCLUDE_IDS, CONTEXT_ITEM_IDS) as 1-D int64, or InvalidInput naming it."""
    ids = _one_dimensional(field, values)
    if ids.dtype != np.int64:
        raise InvalidInput(field, f"expected INT64, got {ids.dtype}")
    if ids.size > limit:
        raise InvalidInput(field, f"{ids.size} ids is more than the limit of {limit}")
    return ids


def check_item_ids(item_ids: Array) -> Array:
    """The candidate list as a 1-D int64 array, or InvalidInput naming ITEM_IDS."""
    ids = _one_dimensional("ITEM_IDS", item_ids)
    if ids.size == 0:
        raise InvalidInput("ITEM_IDS", "empty: send at least 1 candidate")
    if ids.size > MAX_CANDIDATES:
        raise InvalidInput("ITEM_IDS", f"{ids.size} candidates is more than the limit of {MAX_CANDIDATES}")
    if ids.dtype != np.int64:
        raise InvalidInput("ITEM_IDS", f"expected INT64, got {ids.dtype}")
    uniq = np.unique(ids)
    if uniq.size != ids.size:
        sorted_ids = np.sort(ids)
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
        raise InvalidInput("ITEM_IDS", f"duplicate id {int(dup)}: each candidate may appear once")
    return ids


def check_embedding(embedding: Array, dim: int, field: str = "CONTEXT_EMBEDDING") -> Array:
    """One query's embedding ``[1, D]`` (or ``[D]``) as ``[D]`` float32, or InvalidInput naming ``field``."""
    arr = np.asarray(embedding, np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise InvalidInput(field, f"expected {dim} values, got {arr.shape[0]}")
    return arr


def check_user_id(user_id: Array) -> int:
    arr = np.asarray(user_id)
    if arr.size != 1:
        raise InvalidInput("USER_ID", f"expected exactly 1 element, got {arr.size}")
    return int(arr.reshape(-1)[0])


def check_top_k(top_k: Array) -> int:
    arr = np.asarray(top_k)
    if arr.size != 1:
        raise InvalidInput("TOP_K", f"expected exactly 1 element, got {arr.size}")
    k = int(arr.reshape(-1)[0])
    if k < 1:
        raise InvalidInput("TOP_K", f"must be at least 1, got {k}")
    return k


def lookup_rows(sorted_ids: Array, rows_of_sorted: Array, ids: Array) -> Array:
    """Rows of ``ids`` in a table whose ids are ``sorted_ids``; -1 where an id is unknown."""
    if len(sorted_ids) == 0:  # a shop without known users: everyone is cold-start
        return np.full(len(ids), -1, np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[pos] == ids
    return np.where(found, rows_of_sorted[pos], -1)


class FeatureTables:
    """The arrays behind the features. Item/user arrays have one extra last row: the unknown default."""

    item_ids_sorted: Array  # the shop's item ids, sorted, and the table row of each
    item_rows_sorted: Array
    user_ids_sorted: Array
    user_rows_sorted: Array
    item_category: Array  # [I+1] index into the lexicon's categories, -1 unknown
    item_brand: Array
    item_attrs: Array  # [I+1, A]
    item_price_bucket: Array
    price_edges: Array  # [N_PRICE_BUCKETS - 1] log-price bucket edges (fresh prices are bucketed with them)
    item_log_price: Array
    item_in_stock: Array
    item_log_clicks: Array
    item_ctr: Array
    user_segment: Array  # [U+1]
    user_cat_aff: Array  # [U+1, C+1]
    user_brand_aff: Array  # [U+1, B+1]
    user_mean_log_price: Array
    user_clicks: Array  # [U+1] clicks the affinities were counted from (fresh clicks are added to them)

    def __init__(self, arrays: dict[str, Array]):
        missing = sorted(set(self.__annotations__) - set(arrays))
        if missing:
            raise ValueError(f"feature tables: missing {', '.join(missing)}")
        self.arrays = arrays
        for key, value in arrays.items():
            setattr(self, key, value)
        self.n_items = len(arrays["item_ids_sorted"])
        self.n_users = len(arrays["user_ids_sorted"])

    @classmethod
    def files(cls) -> list[str]:
        """The table files, relative to a version folder: ``feature_store/<table>.npy``."""
        return [f"{STORE_DIR}/{name}.npy" for name in sorted(cls.__annotations__)]

    def save(self, folder: Path) -> None:
        """One ``.npy`` per table in ``folder``, written under a temporary name and renamed."""
        save_tables({name: self.arrays[name] for name in self.__annotations__}, folder)

    @classmethod
    def load(cls, folder: Path) -> FeatureTables:
        """Read-only arrays over the mapped tables (``runtime.pages``): every process that loads the same
        files shares the page cache's one copy (the build hard-links the files of all models to one inode)."""
        return cls(load_tables(list(cls.__annotations__), folder, what="feature tables"))

    def item_rows(self, ids: Array) -> Array:
        return lookup_rows(self.item_ids_sorted, self.item_rows_sorted, ids)

    def user_rows(self, ids: Array) -> Array:
        return lookup_rows(self.user_ids_sorted, self.user_rows_sorted, ids)


def candidate_features(
    t: FeatureTables,
    user_rows: Array,
    item_rows: Array,
    has_query: Array,
    q_category: Array,
    q_brand: Array,
    q_attr: Array,
    queries: QueryStats,
    q_rows: Array,
    q_weights: Array,
    covisits: CoVisits | None = None,
    context: Array | None = None,
    embeddings: Array | None = None,
    viewing: Array | None = None,
) -> tuple[Array, Array]:
    """Ranker inputs for N (user, query, item) rows: ``cat [N, N_CAT] int64``, ``dense [N, N_DENSE] fp32``.

    Rows of -1 (unknown user or item) read the tables' default last row. ``has_query`` is False for
    recommendation rows; ``q_*`` are -1 where the query names no category/brand/attribute; ``q_rows`` /
    ``q_weights`` ``[N, width]`` are each row's matched queries in the query statistics ``queries``
    (``QueryStats.match``; -1 and 0: none, as for every recommendation row). ``context [N, K]``: each row's
    context item rows (``runtime.covisit.context_rows``; -1 padding; None: none, as for every search row),
    read in the co-visitation tables ``covisits`` and, for the similarity, the title ``embeddings [I+1, D]``;
    ``viewing [N]``: how many of the row's context items, first, are viewed ones (a product page's).
    """
    n = len(item_rows)
    cat = t.item_category[item_rows]
    brand = t.item_brand[item_rows]
    attrs = t.item_attrs[item_rows]
    user_known = user_rows >= 0
    item_known = item_rows >= 0
    cats = np.empty((n, N_CAT), np.int64)
    cats[:, 0] = user_rows + 1  # 0 = unknown user
    cats[:, 1] = item_rows + 1  # 0 = unknown item
    cats[:, 2] = cat + 1  # 0 = unknown
    cats[:, 3] = brand + 1
    cats[:, 4] = t.item_price_bucket[item_rows] + 1
    cats[:, 5] = t.user_segment[user_rows] + 1
    cats[:, 6] = q_category + 1  # 0 = no category in the query
    dense = np.empty((n, N_DENSE), np.float32)
    dense[:, 0] = has_query
    dense[:, 1] = (q_category >= 0) & (cat == q_category)
    dense[:, 2] = (q_brand >= 0) & (brand == q_brand)
    dense[:, 3] = (q_attr >= 0) & (attrs == q_attr[:, None]).any(axis=1)
    dense[:, 4] = t.user_cat_aff[user_rows, cat]
    dense[:, 5] = t.user_brand_aff[user_rows, brand]
    dense[:, 6] = t.item_log_clicks[item_rows]
    dense[:, 7] = t.item_ctr[item_rows]
    dense[:, 8] = t.item_in_stock[item_rows]
    dense[:, 9] = t.item_log_price[item_rows] - t.user_mean_log_price[user_rows]
    dense[:, 10] = user_known
    dense[:, 11] = item_known
    dense[:, QUERY_DENSE] = queries.features(q_rows, q_weights, item_rows, cat, brand)
    if covisits is None or context is None:
        dense[:, COVISIT_DENSE] = 0.0
    else:
        dense[:, COVISIT_DENSE] = covisits.features(context, item_rows, embeddings, t.item_category, viewing)
    return cats, dense


def recent_affinities(t: FeatureTables, user_row: int, recent_rows: Array, cat: Array, dense: Array) -> None:
    """Add the recent interactions (item rows, -1 left out) to the user's category and brand affinities in
    ``dense``, as the build counts them: ``(clicks in the category + 1/n) / (clicks + 1)`` with the recent ones
    among the clicks. Served requests (their online store's recent list) and recommendation training rows
    (the interactions before the list) alike."""
    rows = np.asarray(recent_rows, np.int64)
    rows = rows[rows >= 0]  # items the build does not know have no category to count
    if rows.size == 0:
        return
    before = float(t.user_clicks[user_row]) + 1.0
    after = before + rows.size
    for col, table, item_values in ((4, t.user_cat_aff, t.item_category), (5, t.user_brand_aff, t.item_brand)):
        values = item_values[rows]
        counts = np.bincount(values[values >= 0], minlength=table.shape[1])
        candidate = cat[:, col - 2] - 1  # the candidates' category (col 4) or brand (col 5); -1 unknown
        known = candidate >= 0
        dense[known, col] = (dense[known, col] * before + counts[candidate[known]]) / after


class FeatureStore:
    """Everything a feature-extraction model loads from its version folder, and the per-request API."""

    def __init__(
        self,
        tables: FeatureTables,
        lexicon: Lexicon,
        tokenizer: TextTokenizer | None,
        user_profiles: Array | None = None,
        online: OnlineItems | None = None,
        embed_dim: int = EMBED_DIM,
        queries: QueryStats | None = None,
        embed: Callable[[Array, Array], Array] | None = None,
        covisits: CoVisits | None = None,
        item_embeddings: Array | None = None,
    ):
        self.tables = tables
        # the items co-visited in sessions (runtime/covisit.py); None: no pair known
        self.covisits = covisits or CoVisits.empty(tables.n_items, len(lexicon.categories))
        self.item_embeddings = item_embeddings  # [I+1, D] titles (recommendation: the context similarity)
        # what shoppers did after each query (runtime/query_stats.py); None: no query known
        self.queries = queries or QueryStats.empty(len(lexicon.categories), len(lexicon.brands), tables.n_items)
        # the query's embedding from its tokens (the encoder, through BLS when served), asked only for a query
        # the statistics do not know, which borrows from its nearest head queries by it; None: no borrowing
        self.embed = embed
        self.lexicon = lexicon
        self.tokenizer = tokenizer
        self.user_profiles = user_profiles  # [U+1, D] float32, last row zeros (recommendation only)
        self.online = online  # fresh price and stock from Redis (runtime/online.py); None = build values only
        self.embed_dim = embed_dim
        self._no_new = np.zeros((1, embed_dim), np.float32)  # NEW_EMBEDDINGS when no candidate is new

    @classmethod
    def load(
        cls,
        folder: str | Path,
        with_tokenizer: bool = True,
        with_profiles: bool = False,
        online: OnlineItems | None = None,
        embed: Callable[[Array, Array], Array] | None = None,
    ) -> FeatureStore:
        """``with_profiles``: a recommendation model's store, with the user profiles and, where the folder has
        them (a served model's), the title embeddings (``item_embeddings.npy``) for the context similarity."""
        folder = Path(folder)
        manifest = folder / MANIFEST_FILE
        embed_dim = int(json.loads(manifest.read_text())["embed_dim"]) if manifest.exists() else EMBED_DIM
        return cls(
            FeatureTables.load(folder / STORE_DIR),
            Lexicon.from_json((folder / LEXICON_FILE).read_text()),
            TextTokenizer(folder / TOKENIZER_FILE) if with_tokenizer else None,
            map_npy(folder / USER_PROFILE_FILE) if with_profiles else None,
            online,
            embed_dim,
            QueryStats.load(folder / STORE_DIR),
            embed,
            CoVisits.load(folder / STORE_DIR),
            map_npy(folder / ITEM_EMBEDDINGS_FILE)
            if with_profiles and (folder / ITEM_EMBEDDINGS_FILE).exists()
            else None,
        )

    def profiles(self) -> Array:
        """The user profile embeddings ``[U+1, D]``; an error if the store was loaded without them."""
        if self.user_profiles is None:
            raise RuntimeError("this FeatureStore has no user profiles: load it with with_profiles=True")
        return self.user_profiles

    def _fresh(
        self,
        uid: int,
        ids: Array,
        users: Array,
        items: Array,
        cat: Array,
        dense: Array,
        build_values: bool,
        recent: Array | None = None,
        got: OnlineRead | None = None,
    ) -> dict[str, Array]:
        """The online store's part of a request, in place on ``cat``/``dense``: fresh price and stock, the
        user's recent interactions in the affinities, new items' title embeddings. Returns AVAILABLE (False =
        sold out and filtered, with ``SHOPRANK_SOLD_OUT=filter``), ITEM_ROWS and NEW_EMBEDDINGS for topk.
        ``build_values``: skip the store, rank with the build's values (the golden set's checks). ``recent``:
        the user's recent interactions when the request has read them already: not read again, and not added
        to the affinities here (``recommend_features`` did, as training rows have them); ``got``: the whole
        read, when the request made it already."""
        out = {ITEM_ROWS: items, AVAILABLE: np.ones(len(ids), bool), NEW_EMBEDDINGS: self._no_new}
        if self.online is None or build_values:
            return out
        given = recent is not None  # a recommendation: its features counted the recent list already
        if got is None:
            got = self.online.read(ids, uid if recent is None else None, np.flatnonzero(items < 0))
        price, stock = got.values[:, 0], got.values[:, 1]
        priced = np.isfinite(price) & (price > 0)
        if priced.any():
            log_price = np.log(price[priced])
            cat[priced, 4] = np.searchsorted(self.tables.price_edges, log_price) + 1
            dense[priced, 9] = log_price - self.tables.user_mean_log_price[users[priced]]
        stocked = np.isfinite(stock)
        dense[stocked, 8] = stock[stocked] > 0
        if self.online.settings.sold_out == "filter":
            out[AVAILABLE] = dense[:, 8] > 0
        if not given and got.recent.size:
            recent_affinities(self.tables, int(users[0]), self.tables.item_rows(got.recent), cat, dense)
        vectors = [(p, v) for p, v in sorted(got.embeddings.items()) if v.shape == (self.embed_dim,)]
        if vectors:
            rows = items.copy()
            rows[[p for p, _ in vectors]] = -2 - np.arange(len(vectors))
            out[ITEM_ROWS] = rows
            out[NEW_EMBEDDINGS] = np.vstack([self._no_new] + [v for _, v in vectors])
        return out

    def _context(self, user_id: Array, item_ids: Array) -> tuple[int, Array, Array, Array]:
        uid = check_user_id(user_id)
        ids = check_item_ids(item_ids)
        user_row = int(self.tables.user_rows(np.array([uid], np.int64))[0])
        return uid, ids, np.full(len(ids), user_row, np.int64), self.tables.item_rows(ids)

    def search(self, user_id: Array, query: Array, item_ids: Array, build_values: bool = False) -> dict[str, Array]:
        """Tensors for one search request: tokens for the encoder, features for the ranker. A query the query
        statistics do not know is embedded (``embed``) to borrow from its nearest head queries.
        ``build_values``: the request asked for the build's values (``BUILD_VALUES`` parameter), no store read."""
        text = decode_query(query)
        uid, ids, users, items = self._context(user_id, item_ids)
        input_ids, mask = self.tokens(text)
        embed = self.embed
        vector_of = (
            None
            if embed is None
            else lambda: check_embedding(embed(input_ids, mask), self.embed_dim, SENTENCE_EMBEDDING)
        )
        feats = self.search_features(
            uid, text, ids, users, items, build_values, self.queries.match_one(text, vector_of)
        )
        return {"input_ids": input_ids, "attention_mask": mask, **feats}

    def tokens(self, text: str) -> tuple[Array, Array]:
        """The encoder's ``input_ids`` and ``attention_mask`` ``[1, L]`` for a decoded query."""
        if self.tokenizer is None:
            raise RuntimeError("FeatureStore.search needs the tokenizer: load it with with_tokenizer=True")
        return self.tokenizer.encode_one(text)

    def search_features(
        self,
        uid: int,
        text: str,
        ids: Array,
        users: Array,
        items: Array,
        build_values: bool,
        match: tuple[Array, Array],
    ) -> dict[str, Array]:
        """The ranker's features of checked candidates ``ids`` (table rows ``items``) for a decoded query and
        its match in the query statistics (``QueryStats.match_one``, made once per request), with the online
        store's part (``_fresh``). Shared by re-ranking and retrieval (``runtime/retrieval.py``)."""
        intent = self.lexicon.parse(text)
        n = len(ids)
        q_rows, q_weights = match
        cat, dense = candidate_features(
            self.tables,
            users,
            items,
            np.ones(n, bool),
            np.full(n, intent.category),
            np.full(n, intent.brand),
            np.full(n, intent.attribute),
            self.queries,
            np.broadcast_to(q_rows, (n, q_rows.shape[1])),
            np.broadcast_to(q_weights, (n, q_weights.shape[1])),
        )
        fresh = self._fresh(uid, ids, users, items, cat, dense, build_values)
        return {"cat_features": cat, "dense_features": dense, **fresh}

    def recommend(
        self,
        user_id: Array,
        item_ids: Array,
        build_values: bool = False,
        viewed: Array | None = None,
        recent: Array | None = None,
    ) -> dict[str, Array]:
        """Tensors for one recommendation request. Its context (``runtime.covisit.context_rows``) is the
        ``viewed`` item ids (none in the served ``recommend`` ensemble, which takes no CONTEXT_ITEM_IDS) and
        the user's recent interactions (``recent`` ids, newest first; by default the online store's); the
        context embedding is the user's profile plus their mean title embedding
        (``runtime.covisit.context_vector``), as ``recommend_catalog`` retrieves with."""
        uid, ids, users, items = self._context(user_id, item_ids)
        got = None
        if recent is None and self.online is not None and not build_values:
            # one round trip: the candidates' fresh values and the user's recent list, before the features
            got = self.online.read(ids, uid, np.flatnonzero(items < 0))
            recent = got.recent
        recent = np.zeros(0, np.int64) if recent is None else np.asarray(recent, np.int64)
        context, n_viewed = self.context(np.zeros(0, np.int64) if viewed is None else viewed, recent)
        viewed_known = n_viewed > 0
        feats = self.recommend_features(uid, ids, users, items, build_values, context, n_viewed, recent, got)
        profile = self.profiles()[users[0]] if len(users) else np.zeros(self.embed_dim, np.float32)
        if self.item_embeddings is None:
            vector = np.asarray(profile, np.float32)
        else:
            vector = context_vector(profile, context, self.item_embeddings, viewed_known)
        return {**feats, "CONTEXT_EMBEDDING": vector.reshape(1, -1).astype(np.float32)}

    def context(self, viewed: Array, recent: Array) -> tuple[Array, int]:
        """A recommendation's context item rows (``runtime.covisit.context_rows``) from the ``viewed`` and
        ``recent`` ids, and how many of them, first, are viewed items the build knows."""
        viewed_rows = self.tables.item_rows(np.asarray(viewed, np.int64))
        context = context_rows(viewed_rows, self.tables.item_rows(np.asarray(recent, np.int64)))
        return context, min(int((viewed_rows >= 0).sum()), len(context))

    def recent(self, uid: int, build_values: bool = False) -> Array:
        """The ids the user (or anonymous session) ``uid`` interacted with lately, newest first: the online
        store's ``recent`` list (none without a store, or with ``build_values``)."""
        if self.online is None or build_values:
            return np.zeros(0, np.int64)
        recent: Array = self.online.read(np.zeros(0, np.int64), uid).recent
        return recent

    def recommend_features(
        self,
        uid: int,
        ids: Array,
        users: Array,
        items: Array,
        build_values: bool,
        context: Array | None = None,
        viewing: int = 0,
        recent: Array | None = None,
        got: OnlineRead | None = None,
    ) -> dict[str, Array]:
        """The ranker's features of checked candidates without a query, with the online store's part.
        ``context [K]``: the request's context item rows (``runtime.covisit.context_rows``); None: none;
        ``viewing``: how many of its items, first, are viewed ones (a product page's); ``recent``: the user's
        recent ids when the request has read them (the online store is then not asked again; they are added to
        the affinities here, as training rows have them); ``got``: the request's whole read of the online
        store, when made already."""
        n = len(ids)
        none = np.full(n, -1, np.int64)
        cat, dense = candidate_features(
            self.tables,
            users,
            items,
            np.zeros(n, bool),
            none,
            none,
            none,
            self.queries,
            none[:, None],
            np.zeros((n, 1)),
            self.covisits,
            None if context is None else np.broadcast_to(context, (n, len(context))),
            self.item_embeddings,
            np.full(n, viewing),
        )
        if recent is not None and n:
            recent_affinities(self.tables, int(users[0]), self.tables.item_rows(recent), cat, dense)
        fresh = self._fresh(uid, ids, users, items, cat, dense, build_values, recent, got)
        return {"cat_features": cat, "dense_features": dense, **fresh}


class QueryTokens:
    """``query_tokens``, the first step of ``search`` and ``search_catalog``: QUERY -> the encoder's tokens
    ``[1, L]``."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, folder: str | Path) -> QueryTokens:
        return cls(TextTokenizer(Path(folder) / TOKENIZER_FILE))

    def tokens(self, query: Array) -> dict[str, Array]:
        input_ids, mask = self.tokenizer.encode_one(decode_query(query))
        return {"input_ids": input_ids, "attention_mask": mask}

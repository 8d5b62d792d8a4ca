"""The feature store of the served feature models: raw request -> the encoder's and the ranker's input tensors.

``FeatureStore`` loads a build's tables, lexicon, query statistics, co-visitation and user profiles
once per model instance, reads the online store's fresh price and stock, and answers
``search``/``recommend`` with the tensors of the next ensemble steps (``runtime/candidates.py`` computes
them). Unknown users get the cold-start row, unknown items the unknown-item row (context features
still apply); the request checks are ``runtime/requests.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.candidates import candidate_features, recent_affinities
from runtime.catalog import CATALOG_FILE, Catalog
from runtime.contract import (
    AVAILABLE,
    BOOSTS,
    DENSE_COLUMNS,
    EMBED_DIM,
    ITEM_ROWS,
    NEW_EMBEDDINGS,
    NOTES,
    PINS,
    PRICES,
    QUERY_PAD_MULTIPLE,
    SENTENCE_EMBEDDING,
)
from runtime.covisit import CoVisits, context_rows, context_vector
from runtime.lexicon import LEXICON_FILE, Lexicon
from runtime.listing import notes_tensor
from runtime.online import OnlineItems, OnlineRead
from runtime.options import Filter, ItemView, ListingOptions, parse_filter, parse_options
from runtime.pages import map_npy
from runtime.query_stats import QueryStats
from runtime.requests import check_embedding, check_item_ids, check_user_id, decode_query
from runtime.rules import RuleBook
from runtime.tables import STORE_DIR, FeatureTables
from runtime.text import TOKENIZER_FILE, TextTokenizer
from runtime.understand import MIN_MATCHES, NOTHING, QueryUnderstanding, Understood

USER_PROFILE_FILE = "user_profiles.npy"

ITEM_EMBEDDINGS_FILE = "item_embeddings.npy"  # the title embeddings [I+1, D] (runtime.scoring reads the same file)

IN_STOCK = DENSE_COLUMNS.index("item_in_stock")
MANIFEST_FILE = "manifest.json"  # written by the build next to the tables; names the encoder's dimension


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
        catalog: Catalog | None = None,
    ):
        self.tables = tables
        # what requests filter on (runtime/catalog.py); None: a release built before it (no filters)
        self.catalog = catalog
        self.understanding = QueryUnderstanding(catalog) if catalog is not None else None
        # the merchandising rules in the online store (runtime/rules.py); None without a store or catalogue
        self.rules = RuleBook(online.rules_text, catalog) if online is not None and catalog is not None else None
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
        query_pad_multiple: int = QUERY_PAD_MULTIPLE,
    ) -> FeatureStore:
        """``with_profiles``: a recommendation model's store, with the user profiles and, where the folder has
        them (a served model's), the title embeddings (``item_embeddings.npy``) for the context similarity.
        ``query_pad_multiple``: the query's tokens are padded to a multiple of it (``ONE_QUERY_PAD_MULTIPLE``:
        not padded, for an encoder that runs each query alone; ``runtime/text.py``)."""
        folder = Path(folder)
        manifest = folder / MANIFEST_FILE
        embed_dim = int(json.loads(manifest.read_text())["embed_dim"]) if manifest.exists() else EMBED_DIM
        return cls(
            FeatureTables.load(folder / STORE_DIR),
            Lexicon.from_json((folder / LEXICON_FILE).read_text()),
            TextTokenizer(folder / TOKENIZER_FILE, multiple=query_pad_multiple) if with_tokenizer else None,
            map_npy(folder / USER_PROFILE_FILE) if with_profiles else None,
            online,
            embed_dim,
            QueryStats.load(folder / STORE_DIR),
            embed,
            CoVisits.load(folder / STORE_DIR),
            map_npy(folder / ITEM_EMBEDDINGS_FILE)
            if with_profiles and (folder / ITEM_EMBEDDINGS_FILE).exists()
            else None,
            Catalog.load(folder, STORE_DIR) if (folder / CATALOG_FILE).exists() else None,
        )

    def options(self, raw: str | None) -> ListingOptions:
        """The request's ``shoprank_options`` checked against the catalogue (``runtime/options.py``). A
        release without the catalogue tables takes none: sending them is INVALID_ARGUMENT."""
        return parse_options(raw, self.catalog)

    def understand(self, text: str, options: ListingOptions) -> tuple[Understood, Filter | None]:
        """What the query names (``runtime/understand.py``) and, in the ``filter`` and ``boost`` modes, its
        constraints as a filter (None: nothing understood, or ``off``)."""
        if self.understanding is None or self.catalog is None:
            return NOTHING, None
        understood = self.understanding(text, options.understand, options.understand_fields)
        if not understood.tree:
            return understood, None
        return understood, parse_filter(understood.tree, self.catalog, "understood")

    def keep_matching(
        self, feats: dict[str, Array], ids: Array, items: Array, options: ListingOptions, extra: Filter | None = None
    ) -> None:
        """AVAILABLE, in place, also False for the candidates that fail the request's filter (and ``extra``, the
        understood query's), read with their current price and stock: PRICES and the in-stock feature."""
        filt = options.filter & extra if options.filter is not None else extra
        if filt is None or self.catalog is None:
            return
        view = ItemView(items, feats[PRICES], feats["dense_features"][:, IN_STOCK], ids)
        feats[AVAILABLE] = feats[AVAILABLE] & filt(self.catalog, view)

    def apply_rules(
        self,
        feats: dict[str, Array],
        ids: Array,
        items: Array,
        query: str | None,
        options: ListingOptions,
        *,
        build_values: bool,
    ) -> list[str]:
        """The merchandising rules' effects, in place: hidden candidates not AVAILABLE, BOOSTS and PINS; returns
        the ids of the rules that applied. None with ``build_values``: the rules live in the online store, and a
        request for the build's values is ranked as the build ranked it (the golden set's checks)."""
        if self.rules is None or self.catalog is None or build_values:
            return []
        view = ItemView(items, feats[PRICES], feats["dense_features"][:, IN_STOCK], ids)
        effects = self.rules.effects(view, query, options)
        if effects is None:
            return []
        feats[AVAILABLE] = feats[AVAILABLE] & ~effects.hidden
        feats[BOOSTS], feats[PINS] = effects.boosts, effects.pins
        return effects.applied

    def build_prices(self, items: Array) -> Array:
        """The build's price of each item row (-1: unknown, NaN)."""
        if self.catalog is not None:
            return np.asarray(self.catalog.price[items], np.float32)
        price = np.exp(np.asarray(self.tables.item_log_price[items], np.float32))
        return np.where(np.asarray(items) >= 0, price, np.nan).astype(np.float32)

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
        out = {
            ITEM_ROWS: items,
            AVAILABLE: np.ones(len(ids), bool),
            NEW_EMBEDDINGS: self._no_new,
            PRICES: self.build_prices(items),
            BOOSTS: np.zeros(len(ids), np.float32),
            PINS: np.full(len(ids), -1, np.int32),
        }
        if self.online is None or build_values:
            return out
        given = recent is not None  # a recommendation: its features counted the recent list already
        if got is None:
            got = self.online.read(ids, uid if recent is None else None, np.flatnonzero(items < 0))
        price, stock = got.values[:, 0], got.values[:, 1]
        priced = np.isfinite(price) & (price > 0)
        out[PRICES] = np.where(priced, price, out[PRICES]).astype(np.float32)
        if priced.any():
            log_price = np.log(price[priced])
            cat[priced, 4] = np.searchsorted(self.tables.price_edges, log_price) + 1
            dense[priced, 9] = log_price - self.tables.user_mean_log_price[users[priced]]
        stocked = np.isfinite(stock)
        dense[stocked, IN_STOCK] = stock[stocked] > 0
        if self.online.settings.sold_out == "filter":
            out[AVAILABLE] = dense[:, IN_STOCK] > 0
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

    def search(
        self, user_id: Array, query: Array, item_ids: Array, build_values: bool = False, options: str | None = None
    ) -> dict[str, Array]:
        """Tensors for one search request: tokens for the encoder, features for the ranker. A query the query
        statistics do not know is embedded (``embed``) to borrow from its nearest head queries.
        ``build_values``: the request asked for the build's values (``BUILD_VALUES`` parameter), no store read;
        ``options``: its ``shoprank_options`` (a candidate failing the filter is not AVAILABLE)."""
        text = decode_query(query)
        listing = self.options(options)
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
        understood, constraints = self.understand(text, listing)
        if understood.mode == "filter" and constraints is not None:
            before = feats[AVAILABLE].copy()
            self.keep_matching(feats, ids, items, listing, constraints)
            if int(feats[AVAILABLE].sum()) < MIN_MATCHES:  # too few match the words: the plain query
                understood = Understood(understood.chips, understood.mode, True, understood.tree)
                feats[AVAILABLE] = before
                self.keep_matching(feats, ids, items, listing)
        else:
            self.keep_matching(feats, ids, items, listing)
        applied = self.apply_rules(feats, ids, items, text, listing, build_values=build_values)
        feats[NOTES] = notes_tensor(understood, applied)
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
        options: str | None = None,
    ) -> dict[str, Array]:
        """Tensors for one recommendation request (``options``: its ``shoprank_options``, as ``search``). Its
        context (``runtime.covisit.context_rows``) is the ``viewed`` item ids (none in the served ``recommend``
        ensemble, which takes no CONTEXT_ITEM_IDS) and the user's recent interactions (``recent`` ids, newest
        first; by default the online store's); the context embedding is ``runtime.covisit.context_vector``'s (on
        a product page the context's mean title embedding, otherwise the user's profile), as
        ``recommend_catalog`` retrieves with."""
        uid, ids, users, items = self._context(user_id, item_ids)
        listing = self.options(options)
        got = None
        if recent is None and self.online is not None and not build_values:
            # one round trip: the candidates' fresh values and the user's recent list, before the features
            got = self.online.read(ids, uid, np.flatnonzero(items < 0))
            recent = got.recent
        recent = np.zeros(0, np.int64) if recent is None else np.asarray(recent, np.int64)
        context, n_viewed = self.context(np.zeros(0, np.int64) if viewed is None else viewed, recent)
        viewed_known = n_viewed > 0
        feats = self.recommend_features(uid, ids, users, items, build_values, context, n_viewed, recent, got)
        self.keep_matching(feats, ids, items, listing)
        feats[NOTES] = notes_tensor(
            NOTHING, self.apply_rules(feats, ids, items, None, listing, build_values=build_values)
        )
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

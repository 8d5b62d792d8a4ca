"""Retrieval from the whole catalogue: the first stage of the ``search_catalog`` and ``recommend_catalog``
ensembles, which take no candidate list.

One request: a vector (the query's embedding, or the user's), its nearest items in the build's ANN index
(FAISS, inner product over the L2-normalised title embeddings; or, with ``retrieval.engine: scan`` and on the
gpu target, an exact scan by the ``item_scan`` model: ``runtime/scan.py``), merged with the items added online
since the build (exact search over their embeddings), minus what may not be shown (the caller's EXCLUDE_IDS,
the user's purchases, for recommendations the CONTEXT_ITEM_IDS themselves), then the ranker's features of what
is left (``FeatureStore``, online store included). A request's filter (``shoprank_options``,
``runtime/options.py``) restricts the search to its items (``runtime/catalog_filter.py`` keeps the masks;
``Retriever._search_allowed`` chooses an exact scan or the index's ID selector), its understood query words
and the merchandising rules apply here too (``runtime/understand.py``, ``runtime/rules.py``). Sold-out
candidates (the build's stock, or the online store's when it has one) are dropped, and the first
``candidates`` in the index's order go to the ranker. The ranker and topk are the re-ranking ensembles' own.

Files in a retrieval model's version folder (``builders/learning/retrieval.py`` writes them):

* ``items.faiss``: the index; its ids are rows of the item tables. ``flat`` (exact) or ``ivf`` (IVF with
  8-bit scalar-quantised codes, ``nprobe`` lists searched); read memory-mapped, so every instance and
  both retrieval models share the page cache's one copy.
* ``retrieval.json``: the settings (``RetrievalSettings``) and what the build measured (recall@N).
* ``purchases.npz``: the items each known user bought, before the test split's days (CSR by user row).

Recommendations follow their context (``Retriever.recommend``; docs/retrieval.md measures it): the viewed
items (CONTEXT_ITEM_IDS) and the user's recent interactions in the online store. The items co-visited with
it in the build's sessions (``runtime/covisit.py``) come first, then the items nearest the recommendation
vector (``runtime.covisit.context_vector``: the viewed items' embeddings beside a viewed item, otherwise the
user's profile, or the recent items' for a visitor without one), mixed with the catalogue's most clicked
(``viewed_popular_share`` / ``popular_share``), which also fill what is left. A user with neither profile
nor context gets the most clicked items only.

Over 400 lines on purpose: the settings, the index, the purchases filter, the new-items poll and the
``Retriever`` that joins them (with the request's filter, understood words and rules) are one served model's
job, and each part is small; the model's files and the build's retrieval step both read this one place.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime import contract as c
from runtime.arrays import Array, Floats, Int64s
from runtime.catalog_filter import EMPTY, Allowed, CatalogueFilters
from runtime.covisit import context_vector
from runtime.errors import InvalidInput
from runtime.features import FeatureStore
from runtime.half import rows_float32 as rows_float32  # re-exported: benchmarks/fp16_decode.py swaps the decoder here
from runtime.listing import notes_tensor
from runtime.online import OnlineItems
from runtime.options import Filter, ListingOptions
from runtime.pages import warm
from runtime.requests import check_embedding, check_id_list, check_user_id, decode_query
from runtime.scan import Scan, ScanIndex
from runtime.scoring import load_item_embeddings
from runtime.understand import MIN_MATCHES, NOTHING, Understood

INDEX_FILE = "items.faiss"
SETTINGS_FILE = "retrieval.json"
PURCHASES_FILE = "purchases.npz"
INDEX_KINDS = ("flat", "ivf")
IN_STOCK_COLUMN = c.DENSE_COLUMNS.index("item_in_stock")
RECENT_WEIGHT = 0.5  # a recent interaction's co-visited items count half as much as a viewed item's
NEW_ITEMS_POLL_S = 2.0  # how often a retrieval model asks the online store whether items were added
# a filter that leaves at most this many items is searched by an exact scan of them (their embeddings gathered,
# about 1.1 us an item); a broader one by the FAISS index with the filter as its ID selector. Measured at 1M
# items (IVF, 2,048 lists, nprobe 4) with a 1% filter (9,927 items): the gather 10.9 ms, the selector 4.9 ms
# (probing 400 lists, the same top 100); the two cost the same near 6,000 items
SUBSET_SCAN_ITEMS = 5_000


@dataclass(frozen=True)
class RetrievalSettings:
    """How a repository retrieves; written by the build into ``retrieval.json``."""

    kind: str = "flat"  # flat: exact inner product; ivf: IVF lists of 8-bit codes
    candidates: int = 300  # N: retrieved, filtered and ranked per request (<= MAX_CANDIDATES)
    nprobe: int = 1  # ivf: lists searched per query
    popular_share: float = 0.5  # recommendations: this share of the N from the most clicked items (measured)
    # recommendations with a context: at most this share of the N are the items co-visited with it
    covisit_share: float = 0.0
    viewed_popular_share: float = 0.0  # recommendations beside viewed items: the most clicked items' share (measured)
    # search: at most this share of the N are the items shoppers clicked after the query (or its nearest
    # head queries), ahead of the nearest items; 0 = nearest items only
    behaviour_share: float = 0.0
    # search: the nearest items re-ordered by cosine + category_boost * the query's click share of their
    # category (fetched twice as deep); 0 = by cosine only
    category_boost: float = 0.0
    measured: dict[str, Any] = field(default_factory=dict)  # what the build measured (recall@N vs exact)

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"retrieval kind: expected one of {INDEX_KINDS}, got {self.kind!r}")
        if not 1 <= self.candidates <= c.MAX_CANDIDATES:
            raise ValueError(f"retrieval candidates: expected 1..{c.MAX_CANDIDATES}, got {self.candidates}")
        if not 0 <= self.popular_share <= 1:
            raise ValueError(f"retrieval popular_share: expected 0..1, got {self.popular_share}")
        if self.nprobe < 1:
            raise ValueError(f"retrieval nprobe: must be at least 1, got {self.nprobe}")
        if not 0 <= self.viewed_popular_share <= 1:
            raise ValueError(f"retrieval viewed_popular_share: expected 0..1, got {self.viewed_popular_share}")
        if not 0 <= self.covisit_share <= 1:
            raise ValueError(f"retrieval covisit_share: expected 0..1, got {self.covisit_share}")
        if not 0 <= self.behaviour_share <= 1:
            raise ValueError(f"retrieval behaviour_share: expected 0..1, got {self.behaviour_share}")
        if self.category_boost < 0:
            raise ValueError(f"retrieval category_boost: must be >= 0, got {self.category_boost}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> RetrievalSettings:
        return cls(**json.loads(text))


def faiss_module(threads: int = 1) -> Any:
    """``faiss``, imported when needed (not at import time). Serving is single-threaded (``threads=1``):
    each Triton instance serves one request at a time and the instances share the cores."""
    import faiss

    faiss.omp_set_num_threads(threads)
    return faiss


REFINE = 2  # ivf: candidates fetched per one kept, re-scored with the exact embeddings


class ItemIndex:
    """The build's ANN index over item rows, memory-mapped read-only.

    An IVF search fetches ``REFINE`` times the rows asked for and re-scores them with the exact item
    embeddings (``vectors``, the memory-mapped table topk reads too): the 8-bit codes only choose the
    shortlist, so near-ties the quantisation would misorder keep their exact order."""

    def __init__(self, index: Any, settings: RetrievalSettings, vectors: Array | None = None):
        self.index = index
        self.settings = settings
        self.vectors = vectors if settings.kind == "ivf" else None
        if settings.kind == "ivf":
            faiss = faiss_module()
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = settings.nprobe
            lists = faiss.downcast_InvertedLists(ivf.invlists)
            if hasattr(lists, "prefetch_nthread"):
                # A memory-mapped IVF (OnDiskInvertedLists) starts up to 32 threads on every search to read its
                # probed lists ahead (``prefetch_nthread``, FAISS's default). ``load`` has the file in the page
                # cache already, so they only cost: 16 threads started and joined a search at nprobe 16, about
                # 1.2 ms of kernel time of a 5 ms recommend_catalog in process (docs/benchmarks.md).
                lists.prefetch_nthread = 0

    @classmethod
    def load(cls, folder: str | Path, settings: RetrievalSettings, vectors: Array | None = None) -> ItemIndex:
        faiss = faiss_module()
        mmap = faiss.IO_FLAG_MMAP if settings.kind == "ivf" else faiss.IO_FLAG_MMAP_IFC
        warm(Path(folder) / INDEX_FILE)  # the lists in the page cache before the first request
        index = faiss.read_index(str(Path(folder) / INDEX_FILE), mmap | faiss.IO_FLAG_READ_ONLY)
        return cls(index, settings, vectors)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, vector: Floats, n: int, allowed: Allowed | None = None) -> tuple[Int64s, Floats]:
        """The ``n`` nearest rows to ``vector [D]`` and their inner products, best first. ``allowed``: only the
        filter's rows (FAISS's ID selector over its bitmap); an IVF search then probes at least ``nprobe``
        lists, and as many as hold the rows asked for 1.5 times over at the filter's share (a half-catalogue
        filter probes as many lists as no filter, a 1% filter at 1M items about 400 of 2,048)."""
        n = max(1, min(int(n), self.size))
        query = np.ascontiguousarray(vector, np.float32).reshape(1, -1)
        fetch = min(n * REFINE, self.size) if self.vectors is not None else n
        params = None
        if allowed is not None:
            faiss = faiss_module()
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(allowed.bits))
            if self.settings.kind == "ivf":
                lists = faiss.extract_index_ivf(self.index).nlist
                per_list = max(allowed.share, 1e-6) * self.size / lists  # the filter's items in a list
                probe = min(lists, max(self.settings.nprobe, math.ceil(1.5 * fetch / per_list)))
                params = faiss.SearchParametersIVF(sel=selector, nprobe=probe)
            else:
                params = faiss.SearchParameters(sel=selector)
        scores, rows = self.index.search(query, fetch, params=params)
        keep = rows[0] >= 0  # an IVF search may find fewer than asked in the lists it probes
        found, approx = rows[0][keep].astype(np.int64), scores[0][keep]
        if self.vectors is None:
            return found, approx
        exact = np.einsum("ij,j->i", rows_float32(self.vectors, found), query[0])
        order = np.argsort(-exact, kind="stable")[:n]
        return found[order], exact[order].astype(np.float32)


class Purchases:
    """The item rows each user row bought (CSR; row -1, an unknown user, bought nothing)."""

    def __init__(self, offsets: Int64s, items: Int64s):
        self.offsets = offsets  # [U+1]
        self.items = items

    @classmethod
    def from_pairs(cls, user_rows: Array, item_rows: Array, n_users: int) -> Purchases:
        order = np.lexsort((item_rows, user_rows))
        users, items = np.asarray(user_rows)[order], np.asarray(item_rows, np.int64)[order]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))]).astype(np.int64)
        return cls(offsets, items)

    def save(self, path: Path) -> None:
        np.savez(path, offsets=self.offsets, items=self.items)

    @classmethod
    def load(cls, path: Path) -> Purchases:
        with np.load(path) as data:
            return cls(data["offsets"], data["items"])

    def of(self, user_row: int) -> Int64s:
        if user_row < 0 or user_row + 1 >= len(self.offsets):
            return np.zeros(0, np.int64)
        return self.items[self.offsets[user_row] : self.offsets[user_row + 1]]


class NewItems:
    """Items added through the online store since the build, searched exactly (there are few of them):
    polled every ``NEW_ITEMS_POLL_S`` from ``{prefix}:new_items``; items the build knows are left out."""

    def __init__(self, online: OnlineItems | None, known_ids: Int64s, dim: int, clock: Callable[[], float]):
        self.online = online
        self.known_ids = known_ids  # sorted: the build's items
        self.dim = dim
        self.clock = clock
        self.ids: Int64s = np.zeros(0, np.int64)
        self.vectors: Floats = np.zeros((0, dim), np.float32)
        self.listed = 0
        self.polled = -math.inf

    def refresh(self) -> None:
        if self.online is None or self.clock() - self.polled < NEW_ITEMS_POLL_S:
            return
        self.polled = self.clock()
        got = self.online.new_items(self.listed)
        if got is None:
            return
        ids, raw = got
        keep = [(i, np.frombuffer(v, "<f4")) for i, v in zip(ids.tolist(), raw, strict=True) if v is not None]
        keep = [(i, v) for i, v in keep if v.shape == (self.dim,)]
        pos = np.searchsorted(self.known_ids, [i for i, _ in keep]) if keep else np.zeros(0, np.int64)
        pos = np.minimum(pos, max(len(self.known_ids) - 1, 0))
        unknown = [
            kv for kv, p in zip(keep, pos, strict=True) if len(self.known_ids) == 0 or self.known_ids[p] != kv[0]
        ]
        self.ids = np.array([i for i, _ in unknown], np.int64)
        self.vectors = np.vstack([v for _, v in unknown]).astype(np.float32) if unknown else self.vectors[:0]
        self.listed = len(ids)

    def search(self, vector: Floats, n: int) -> tuple[Int64s, Floats]:
        """Up to ``n`` new items nearest to ``vector``, best first."""
        self.refresh()
        if self.ids.size == 0:
            return self.ids, np.zeros(0, np.float32)
        scores = self.vectors @ np.asarray(vector, np.float32).reshape(-1)
        order = np.argsort(-scores, kind="stable")[:n]
        return self.ids[order], scores[order]


class Retriever:
    """One retrieval model's state: the feature store, the index, purchases, new items, the item vectors."""

    def __init__(
        self,
        store: FeatureStore,
        index: ItemIndex | ScanIndex,
        purchases: Purchases,
        item_embeddings: Floats,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.index = index
        self.settings = index.settings
        self.purchases = purchases
        self.item_embeddings = item_embeddings  # [I+1, D] (topk's table; context items' vectors)
        t = store.tables
        self.id_of_row = np.empty(t.n_items, np.int64)
        self.id_of_row[t.item_rows_sorted] = t.item_ids_sorted
        in_stock = float(np.mean(t.item_in_stock[:-1] > 0)) if t.n_items else 1.0
        # over-fetch so that N remain after sold-out items leave, with a 10% margin: at exactly N / in-stock share
        # half the product-page requests fell short by a few and fetched again, twice as deep (in process on the
        # demo: 4.4 ms a request before the margin, 2.0 after)
        self.fetch_factor = 1.1 / max(in_stock, 0.25)
        self.max_fetch = min(8 * c.MAX_CANDIDATES, max(t.n_items, 1))  # the deepest a request looks
        self.popular = np.argsort(-t.item_log_clicks[:-1], kind="stable")[: self.max_fetch].astype(np.int64)
        self.new_items = NewItems(store.online, t.item_ids_sorted, store.embed_dim, clock)
        self.catalog = store.catalog
        # the request filters over the whole catalogue: masks, the prices they read, variant groups
        self.filters = CatalogueFilters(store, self.id_of_row, clock)

    def allowed(self, filt: Filter | None, build_values: bool = False) -> Allowed | None:
        return self.filters.allowed(filt, build_values)

    def own_groups(self, viewed: Int64s) -> Int64s:
        return self.filters.own_groups(viewed)

    @classmethod
    def load(
        cls, folder: str | Path, recommend: bool, online: OnlineItems | None = None, scan: Scan | None = None
    ) -> Retriever:
        """The retrieval model of a version folder; with ``scan`` (the ``item_scan`` model, the gpu target)
        the index is that exact scan, and the FAISS index is not read."""

        folder = Path(folder)
        settings = RetrievalSettings.from_json((folder / SETTINGS_FILE).read_text())
        store = FeatureStore.load(folder, with_tokenizer=False, with_profiles=recommend, online=online)
        vectors = load_item_embeddings(folder)
        index: ItemIndex | ScanIndex
        if scan is not None:
            index = ScanIndex(scan, len(vectors) - 1, settings)  # the table's last row is the unknown item's
        else:
            index = ItemIndex.load(folder, settings, vectors)
        return cls(store, index, Purchases.load(folder / PURCHASES_FILE), vectors)

    def _banned(self, user_row: int, exclude: Int64s) -> Int64s:
        """The item rows a request may not get: the user's purchases and the excluded ids the build knows."""
        banned: Int64s = np.concatenate([self.purchases.of(user_row), self.store.tables.item_rows(exclude)])
        return banned

    def _retrieve(
        self,
        vector: Floats,
        banned_rows: Int64s,
        exclude: Int64s,
        want: int,
        new_items: bool,
        first: Int64s | None = None,
        boost: Floats | None = None,
        tight: bool = False,
        allowed: Allowed | None = None,
    ) -> Int64s:
        """Up to ``want`` candidate ids nearest to ``vector`` (index and, with ``new_items``, the items added
        online, merged by score), minus ``banned_rows`` and, among the new items, ``exclude``. ``first``: item
        rows put ahead of the nearest ones (the query's clicked items); ``boost`` ``[C+1]``: added to the index's
        scores by each item's category + 1, over a fetch twice as deep (the query's learned categories).
        ``tight``: the index is asked for ``want`` beyond the banned rows, not also ``len(first)`` more, which is
        enough (each of ``first`` the nearest items also hold is one they need not supply); recommendations
        ask so (measured: the deeper fetch cost a product page about 1 ms), search keeps its measured depth.
        ``allowed``: the request's filter (``allowed()``); only its rows are returned."""
        extra = 0 if first is None or tight else len(first)
        depth = want + len(banned_rows) + extra
        fetch = 2 * depth if boost is not None else depth
        if allowed is None:
            rows, scores = self.index.search(vector, fetch)
        else:
            rows, scores = self._search_allowed(vector, fetch, allowed)
            if first is not None:
                first = first[allowed.mask[first]]
        if boost is not None and rows.size:
            scores = scores + boost[self.store.tables.item_category[rows] + 1]
            order = np.argsort(-scores, kind="stable")[:depth]
            rows, scores = rows[order], scores[order]
        if first is not None and first.size:
            rest = ~np.isin(rows, first)
            top = np.full(len(first), np.inf, np.float32)  # ahead of every nearest item, in their order
            rows, scores = np.concatenate([first, rows[rest]]), np.concatenate([top, scores[rest]])
        if banned_rows.size:
            keep = ~np.isin(rows, banned_rows)
            rows, scores = rows[keep], scores[keep]
        ids = self.id_of_row[rows]
        new_ids, new_scores = self.new_items.search(vector, want) if new_items else (rows[:0], scores[:0])
        if new_ids.size:
            ids = np.concatenate([ids, new_ids])
            order = np.argsort(-np.concatenate([scores, new_scores]), kind="stable")
            ids = ids[order]
        if exclude.size and new_ids.size:
            ids = ids[~np.isin(ids, exclude)]
        return ids[:want]

    def _search_allowed(self, vector: Floats, n: int, allowed: Allowed) -> tuple[Int64s, Floats]:
        """The ``n`` nearest rows among the filter's. A filter that keeps few items (``SUBSET_SCAN_ITEMS``) is an
        exact scan of them; a broader one searches the FAISS index with the filter as its ID selector
        (``ItemIndex.search``). The
        gpu target's scan asks for ``n`` over the filter's share, deeper while that finds too few, then scans
        the filter's items exactly: a selective filter still fills the page when the catalogue has the items."""
        if allowed.rows.size == 0:
            return allowed.rows, np.zeros(0, np.float32)
        if allowed.rows.size > SUBSET_SCAN_ITEMS:
            if isinstance(self.index, ItemIndex):
                return self.index.search(vector, n, allowed)
            fetch = math.ceil(1.2 * n / allowed.share)
            while True:  # deeper while the scan finds too few of the filter's items, up to 4 times as deep
                found, scores = self.index.search(vector, min(fetch, self.index.size))
                keep = allowed.mask[found]
                if keep.sum() >= min(n, allowed.rows.size):
                    return found[keep][:n], scores[keep][:n]
                if fetch >= self.index.size or fetch > 4 * 1.2 * n / allowed.share:
                    break
                fetch *= 2
        rows = allowed.rows
        exact = np.einsum(
            "ij,j->i", rows_float32(self.item_embeddings, rows), np.asarray(vector, np.float32).reshape(-1)
        )
        top = np.argsort(-exact, kind="stable")[:n]
        return rows[top], exact[top].astype(np.float32)

    def _popular(self, banned_rows: Int64s, allowed: Allowed | None = None) -> Int64s:
        """The most clicked items that may be shown; with a filter, its own most clicked items (the catalogue's
        most clicked hold few of a selective filter's)."""
        rows = self.popular[~np.isin(self.popular, banned_rows)] if banned_rows.size else self.popular
        if allowed is not None:
            rows = rows[allowed.mask[rows]]
            if len(rows) < self.settings.candidates and allowed.rows.size > len(rows):
                clicks = -np.asarray(self.store.tables.item_log_clicks)[allowed.rows]
                top = min(self.max_fetch, len(clicks))
                best = np.argpartition(clicks, top - 1)[:top] if top < len(clicks) else np.arange(len(clicks))
                more = allowed.rows[best[np.argsort(clicks[best], kind="stable")]]
                more = more[~np.isin(more, banned_rows)] if banned_rows.size else more
                rows = np.concatenate([rows, more[~np.isin(more, rows)]])
        ids: Int64s = self.id_of_row[rows]
        return ids

    def _keep_available(
        self, ids: Int64s, rows: Int64s, feats: dict[str, Array], options: ListingOptions
    ) -> dict[str, Array]:
        """The first N candidates in stock (the build's stock, or the online store's) that pass the request's
        filter with their current price and stock (``rows``: their table rows, -1 unknown): the ranker's rows."""
        self.store.keep_matching(feats, ids, rows, options)
        in_stock = (feats[c.DENSE_FEATURES][:, IN_STOCK_COLUMN] > 0) & feats[c.AVAILABLE]
        keep = np.flatnonzero(in_stock)[: self.settings.candidates]
        out = {k: (v if k == c.NEW_EMBEDDINGS else v[keep]) for k, v in feats.items()}
        out[c.AVAILABLE] = np.ones(len(keep), bool)
        out[c.ITEM_IDS] = ids[keep]
        return out

    def _context(self, user_id: Array, exclude_ids: Array) -> tuple[int, int, Int64s]:
        uid = check_user_id(user_id)
        exclude = check_id_list(c.EXCLUDE_IDS, exclude_ids)
        user_row = int(self.store.tables.user_rows(np.array([uid], np.int64))[0])
        return uid, user_row, exclude

    def _candidates(
        self,
        retrieve: Callable[[int], Int64s],
        uid: int,
        user_row: int,
        build: Callable[..., dict[str, Array]],
        backfill: Callable[[], Int64s],
        options: ListingOptions,
    ) -> dict[str, Array]:
        """Retrieve, take the ranker's features, keep N in stock that pass the filter. The first fetch is N over
        the catalogue's in-stock share; a neighbourhood with more sold-out items than that is fetched again,
        twice as deep. When nothing retrieved is in stock even at ``max_fetch``, the candidates are the most
        clicked items in stock (``backfill``): the ranker is never sent an empty list. A filter that nothing
        passes gets one candidate that is not AVAILABLE (topk returns no item)."""
        want = math.ceil(self.settings.candidates * self.fetch_factor)
        while True:
            ids = retrieve(want)
            if ids.size == 0:
                if options.filter is not None:
                    break
                raise InvalidInput(c.EXCLUDE_IDS, "nothing left to rank: every retrieved item is excluded or bought")
            out = self._available(ids, uid, user_row, build, options)
            if len(out[c.ITEM_IDS]) >= self.settings.candidates or len(ids) < want or want >= self.max_fetch:
                break
            want = min(2 * want, self.max_fetch)
        if ids.size == 0 or len(out[c.ITEM_IDS]) == 0:
            out = self._available(backfill(), uid, user_row, build, options)
        if len(out[c.ITEM_IDS]) == 0 and options.filter is not None:
            # one row for the ranker, not shown: the features of the catalogue's first item, whatever its stock
            placeholder = self.id_of_row[:1]
            rows = self.store.tables.item_rows(placeholder)
            out = build(uid, placeholder, np.full(1, user_row, np.int64), rows)
            out[c.AVAILABLE] = np.zeros(1, bool)
            out[c.ITEM_IDS] = placeholder
        if len(out[c.ITEM_IDS]) == 0:
            raise InvalidInput(c.EXCLUDE_IDS, "nothing left to rank: no item that may be shown is in stock")
        return out

    def _available(
        self,
        ids: Int64s,
        uid: int,
        user_row: int,
        build: Callable[..., dict[str, Array]],
        options: ListingOptions,
    ) -> dict[str, Array]:
        users = np.full(len(ids), user_row, np.int64)
        rows = self.store.tables.item_rows(ids)
        return self._keep_available(ids, rows, build(uid, ids, users, rows), options)

    def search(
        self,
        user_id: Array,
        query: Array,
        query_embedding: Array,
        exclude_ids: Array,
        build_values: bool = False,
        options: str | None = None,
    ) -> dict[str, Array]:
        """Candidates for a query (its embedding from the encoder) and their ranker features; ``options``: the
        request's ``shoprank_options`` (``runtime/options.py``), whose filter retrieval applies."""
        text = decode_query(query)
        uid, user_row, exclude = self._context(user_id, exclude_ids)
        listing = self.store.options(options)
        vector = self._vector(c.CONTEXT_EMBEDDING, query_embedding)
        banned = self._banned(user_row, exclude)
        match = self.store.queries.match_one(text, lambda: vector)  # once: every fetch's features reuse it
        first, boost = self.behaviour(match)
        first = self._with_pinned(first, text, listing, build_values)
        understood, constraints = self.store.understand(text, listing)

        def candidates(filt: Filter | None, ahead: Int64s | None) -> dict[str, Array]:
            allowed = self.allowed(filt, build_values)
            return self._candidates(
                lambda want: self._retrieve(
                    vector, banned, exclude, want, not build_values, ahead, boost, allowed=allowed
                ),
                uid,
                user_row,
                lambda u, i, us, it: self.store.search_features(u, text, i, us, it, build_values, match),
                lambda: self._popular(banned, allowed),
                ListingOptions(filter=filt),
            )

        if constraints is not None and understood.mode == "filter":
            feats = candidates(constraints & listing.filter, first)
            if int(feats[c.AVAILABLE].sum()) < MIN_MATCHES:  # too few match the words: the plain query
                understood = Understood(understood.chips, understood.mode, True, understood.tree)
                feats = candidates(listing.filter, first)
        elif constraints is not None and understood.mode == "boost":
            # the items that match go first (half the candidates at most); topk ranks them BOOST higher
            matching, _ = self._search_allowed(
                vector, self.settings.candidates // 2, self.allowed(constraints & listing.filter, build_values) or EMPTY
            )
            ahead = matching if first is None else np.concatenate([first, matching[~np.isin(matching, first)]])
            feats = candidates(listing.filter, ahead)
        else:
            feats = candidates(listing.filter, first)
        rows = np.maximum(feats[c.ITEM_ROWS], -1)
        applied = self.store.apply_rules(feats, feats[c.ITEM_IDS], rows, text, listing, build_values=build_values)
        feats[c.NOTES] = notes_tensor(understood, applied)
        return feats

    def _with_pinned(
        self, first: Int64s | None, query: str | None, listing: ListingOptions, build_values: bool
    ) -> Int64s | None:
        """``first`` (the item rows fetched ahead of the nearest ones) after the items a rule pins for this
        request, so a pinned item is a candidate wherever it may be shown (no rule with ``build_values``)."""
        rules = None if build_values else self.store.rules
        pinned = rules.pinned_ids(query, listing) if rules is not None else np.zeros(0, np.int64)
        if pinned.size == 0:
            return first
        rows = self.store.tables.item_rows(pinned)
        rows = rows[rows >= 0]
        return rows if first is None else np.concatenate([rows, first[~np.isin(first, rows)]])

    def behaviour(self, match: tuple[Array, Array]) -> tuple[Int64s | None, Floats | None]:
        """What the query statistics add to a search's retrieval, from the query's ``match``: the items clicked
        after the query (or its nearest head queries), and the category boost; None where the settings or
        the statistics give none."""
        s, queries = self.settings, self.store.queries
        if s.behaviour_share <= 0 and s.category_boost <= 0:
            return None, None
        rows, weights = match
        if not (weights > 0).any():
            return None, None
        clicked = queries.clicked_items(rows[0], weights[0], int(s.behaviour_share * s.candidates))
        boost = s.category_boost * queries.category_shares(rows[0], weights[0]) if s.category_boost > 0 else None
        return (clicked if clicked.size else None), boost

    def recommend(
        self,
        user_id: Array,
        context_item_ids: Array,
        exclude_ids: Array,
        build_values: bool = False,
        recent: Int64s | None = None,
        options: str | None = None,
    ) -> dict[str, Array]:
        """Candidates for a user and their ranker features. The context is the viewed items
        (CONTEXT_ITEM_IDS) and the user's recent interactions in the online store (``runtime.covisit``):
        the items co-visited with it come first (at most ``covisit_share`` of N); the rest of the N are the
        items nearest the recommendation vector mixed with the most clicked ones (``viewed_popular_share``
        of it beside viewed items, ``popular_share`` otherwise), which also fill whatever is left. A user
        with neither a profile nor a context gets the most clicked. CONTEXT_EMBEDDING is the vector (topk's
        similarity). ``recent``: the recent ids, newest first, in place of the online store's (offline
        evaluation). ``options``: the request's ``shoprank_options``: its filter applies, and the viewed items'
        variant groups are left out unless it says ``include_own_group``."""
        uid, user_row, exclude = self._context(user_id, exclude_ids)
        listing = self.store.options(options)
        allowed = self.allowed(listing.filter, build_values)
        viewed = check_id_list(c.CONTEXT_ITEM_IDS, context_item_ids)
        if recent is None:
            recent = self.store.recent(uid, build_values)
        context, n_viewed = self.store.context(viewed, recent)
        vector = self.user_vector(user_row, context, n_viewed > 0)
        exclude = np.concatenate([exclude, viewed])  # the items being viewed are not recommended back
        banned = self._banned(user_row, exclude)
        if not listing.include_own_group:
            banned = np.concatenate([banned, self.own_groups(viewed)])
        most_clicked = self._popular(banned, allowed)
        has_context = bool((context >= 0).any())
        first = None
        if has_context and self.settings.covisit_share > 0:
            weights = np.where(np.arange(len(context)) < n_viewed, 1.0, RECENT_WEIGHT)
            rows, _ = self.store.covisits.neighbours(context, weights)
            rows = rows[~np.isin(rows, banned)] if banned.size else rows
            rows = rows if allowed is None else rows[allowed.mask[rows]]
            first = rows[: int(self.settings.covisit_share * self.settings.candidates)]
        first = self._with_pinned(first, None, listing, build_values)
        # the most clicked items take a share of what the co-visited ones leave (all of it without a vector):
        # beside viewed items viewed_popular_share, otherwise popular_share
        mix = self.settings.viewed_popular_share if n_viewed else self.settings.popular_share
        share = mix if np.any(vector) else 1.0
        reserved = 0 if first is None else len(first)

        def retrieve(want: int) -> Int64s:
            popular = most_clicked[: math.ceil(max(want - reserved, 0) * share)]
            if share >= 1.0 and first is None:
                return popular
            similar = self._retrieve(
                vector, banned, exclude, want, not build_values, first, tight=True, allowed=allowed
            )
            both = np.concatenate([similar[: want - len(popular)], popular, similar[want - len(popular) :]])
            if len(both) < want:  # popularity fills what the context and the vector left
                both = np.concatenate([both, most_clicked[:want]])
            _, once = np.unique(both, return_index=True)  # each id once, where it first appears
            ids: Int64s = both[np.sort(once)][:want]
            return ids

        feats = self._candidates(
            retrieve,
            uid,
            user_row,
            lambda u, i, us, it: self.store.recommend_features(u, i, us, it, build_values, context, n_viewed, recent),
            lambda: most_clicked,
            listing,
        )
        feats[c.CONTEXT_EMBEDDING] = vector.reshape(1, -1)
        rows = np.maximum(feats[c.ITEM_ROWS], -1)
        applied = self.store.apply_rules(feats, feats[c.ITEM_IDS], rows, None, listing, build_values=build_values)
        feats[c.NOTES] = notes_tensor(NOTHING, applied)
        return feats

    def user_vector(self, user_row: int, context: Int64s, viewed: bool = False) -> Floats:
        """The user's profile plus the mean title embedding of the ``context`` item rows, normalised (zeros
        when the user has no profile and there is no context); the context's alone beside ``viewed`` items:
        ``runtime.covisit.context_vector``."""
        return context_vector(self.store.profiles()[user_row], context, self.item_embeddings, viewed)

    def _vector(self, name: str, value: Array) -> Floats:
        return check_embedding(value, self.store.embed_dim, name)

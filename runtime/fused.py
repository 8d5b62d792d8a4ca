"""The cpu target's fused layout: one call's whole pipeline in one process.

Each public call (``search``, ``recommend``, ``search_catalog``, ``recommend_catalog``) is one
Python-backend model that runs what the ensemble layout spreads over four or five models: features
(or retrieval), the text encoder, the ranker and top-k, with the two ONNX models run by ONNX Runtime in
process. It reads the very files of the composing models (its *parts*): ``<repository>/<part>/<version>``,
the version being its own, so a release is one version number as in the ensemble layout
(``server/publish.py`` copies the parts with it). Nothing changes in what a call computes: the same
feature, retrieval and top-k code runs on the same files.

The query embedding is cached in process (``EmbeddingCache``): a query the statistics do not know asks
for its embedding once (to borrow from its nearest head queries) and the encoder step finds it there, as
a repeated query does. Where the node's other fused instances are idle (``runtime/occupancy.py``), the
encoder runs a wider session (``encoder_alone_threads``): one shopper's search gets the cores, a loaded node
keeps one thread per instance. Why this layout and its settings: docs/serving.md ("The cpu target's layout").

A fused config holds a made-up request (``model_warmup``) that Triton sends each instance before it serves, so a
new instance's first shopper does not pay for the first run of every part. The model answers the same request
itself at load first (``answer_warm_request``): a release that cannot answer it fails in ``initialize``, the load
failure Triton handles cleanly (a failing warm-up sample of two instances at once crashed tritonserver 2.51 in 1
of 3 tries here). Triton's request runs one of the encoder's two sessions, whichever the node's occupancy picks at
that moment, so the model runs each session once at load too (``Encoder.warm``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime import contract as c
from runtime.arrays import Array
from runtime.backend import bls_scan, config_parameters, encoder_runs_metric, online_store, query_cache_metric
from runtime.features import FeatureStore
from runtime.occupancy import Occupancy
from runtime.online import OnlineItems
from runtime.ort_runner import make_session
from runtime.retrieval import Retriever
from runtime.scan import Scan
from runtime.scoring import TopK
from runtime.text import QueryTokens

PARTS_PARAMETER = c.PARTS_PARAMETER
THREADS_PARAMETER = "intra_op_thread_count"  # ONNX Runtime threads of its ranker (and encoder) sessions
ENCODER_THREADS_PARAMETER = "encoder_intra_op_thread_count"  # its encoder's, where they differ
CACHE_PARAMETER = "query_cache_entries"  # how many query embeddings it keeps (0: none)
ALONE_PARAMETER = "encoder_alone_threads"  # its encoder's threads while no other fused instance serves (0: never)
QUERY_CACHE_ENTRIES = 10_000  # its default: 10,000 x 384 floats = 15 MB per instance
# The encoder widens only where the node's other fused instances have been idle this long. Measured on 2 cores
# (default shop, 2 x 1): at concurrency 1 the other instance had finished 0.9-1.5 ms before (Triton alternates
# instances); with 8 in flight it was serving 94% of the time, and 85-95% of the rest it had finished under
# 0.5 ms before (between two requests). So 0.5 ms widens every search at concurrency 1 and 2-4% under load.
QUIET_S = 0.0005
# The encoder runs one query at a time here, so its tokens are not padded to the batcher's length buckets: the
# same embedding bit for bit (checked on 600 benchmark queries at 1 and 2 threads, and by tests/test_fused.py),
# 0.35 ms less per uncached benchmark query on one thread, 6-8% of the encoder (make bench-encoder-length).
ONE_QUERY = c.ONE_QUERY_PAD_MULTIPLE
# The made-up request each fused instance answers before it serves (its config's model_warmup, written by the
# build), the same for every shop: an unknown user, a query no statistics hold, ids that need not exist (an unknown
# candidate, context or excluded item is valid), the top 10. It takes every step of the call, as a shopper's does.
WARM_QUERY = "warm up"
WARM_VALUES: dict[str, tuple[int | str, ...]] = {
    c.USER_ID: (0,),
    c.QUERY: (WARM_QUERY,),
    c.ITEM_IDS: tuple(range(100)),
    c.CONTEXT_ITEM_IDS: (0,),
    c.EXCLUDE_IDS: (0,),
    c.TOP_K: (10,),
}
WARM_DTYPES = {c.USER_ID: np.int64, c.QUERY: object, c.TOP_K: np.int32}  # the others: int64 ids

# What each fused model reads, by the call it serves (the ensemble layout's steps of that call)
PARTS = {
    c.SEARCH_ENSEMBLE: (c.SEARCH_FEATURES, c.TEXT_ENCODER, c.RANKER, c.TOPK),
    c.RECOMMEND_ENSEMBLE: (c.RECOMMEND_FEATURES, c.RANKER, c.TOPK),
    c.SEARCH_CATALOG: (c.QUERY_TOKENIZER, c.TEXT_ENCODER, c.RETRIEVE_SEARCH, c.RANKER, c.TOPK),
    c.RECOMMEND_CATALOG: (c.RETRIEVE_RECOMMEND, c.RANKER, c.TOPK),
}
FUSED_SUFFIX = "_fused"


Online = OnlineItems | None


def fused_name(call: str) -> str:
    """The fused model serving ``call`` (the one step of the ``call`` ensemble in the fused layout)."""
    return f"{call}{FUSED_SUFFIX}"


@dataclass(frozen=True)
class FusedSettings:
    """A fused model's config parameters: its parts' folders and its sizes."""

    folders: dict[str, Path]  # part -> its version folder
    threads: int = 1
    cache_entries: int = QUERY_CACHE_ENTRIES
    encoder_threads: int = 0  # 0: ``threads``
    alone_threads: int = 0  # the encoder's threads while the node's other fused instances are idle; 0: never
    warm_up: bool = False  # the config has a warm-up request: each encoder session runs once at load

    @property
    def encoder_thread_count(self) -> int:
        return self.encoder_threads or self.threads

    @property
    def widens(self) -> bool:
        """Whether the encoder has a second, wider session for when its instance is alone."""
        return self.alone_threads > self.encoder_thread_count

    @classmethod
    def from_config(cls, model_config: str, model_dir: str | Path, version: str | int) -> FusedSettings:
        """From the Python backend's ``args``: the model's config JSON, its folder and its version. The parts
        are the repository's sibling folders at the same version."""
        params = config_parameters(model_config)
        root = Path(model_dir).parent
        parts = [p for p in params.get(PARTS_PARAMETER, "").split(",") if p]
        if not parts:
            raise ValueError(f"{Path(model_dir).name}: config parameter {PARTS_PARAMETER} names no part")
        return cls(
            {p: root / p / str(version) for p in parts},
            int(params.get(THREADS_PARAMETER, "1") or 1),
            int(params.get(CACHE_PARAMETER, str(QUERY_CACHE_ENTRIES)) or 0),
            int(params.get(ENCODER_THREADS_PARAMETER, "0") or 0),
            int(params.get(ALONE_PARAMETER, "0") or 0),
            bool(json.loads(model_config).get("model_warmup")),
        )


class EmbeddingCache:
    """Query embeddings by their tokens, least recently used out first. ``on_lookup(hit)``: a metric hook."""

    def __init__(self, entries: int, on_lookup: Callable[[bool], None] | None = None):
        self.entries = max(0, int(entries))
        self.on_lookup = on_lookup
        self._store: OrderedDict[bytes, Array] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, compute: Callable[[], Array]) -> Array:
        value = self._store.get(key)
        hit = value is not None
        if value is not None:
            self._store.move_to_end(key)
            self.hits += 1
        else:
            self.misses += 1
            value = compute()
            if self.entries:
                value.setflags(write=False)  # shared by later requests: a write would be a bug, raised here
                self._store[key] = value
                if len(self._store) > self.entries:
                    self._store.popitem(last=False)
        if self.on_lookup is not None:
            self.on_lookup(hit)
        return value


Cache = EmbeddingCache | None


@dataclass(frozen=True)
class Serving:
    """What a fused model gets from its server besides its settings: the online store, the ``item_scan``
    model through BLS, its query cache (counted in the server's metrics), its occupancy slot, and
    ``encoder_runs(wide)``, called on each encoder run (the server's ``shoprank_encoder_runs_total``)."""

    online: Online = None
    scan: Scan | None = None
    cache: Cache = None
    occupancy: Occupancy | None = None
    encoder_runs: Callable[[bool], None] | None = None


class Encoder:
    """The text encoder's ONNX file in an ONNX Runtime session, its answers cached by the query's tokens.

    ``wide``: a second session on more threads, run where ``occupancy`` says the node's other fused instances
    have been idle for ``QUIET_S`` (one shopper at a time: the cores are free); the first, narrow, one runs
    otherwise, so under load each instance keeps to its thread. Both give the same embedding, bit for bit
    (checked on 1,200 benchmark queries of the default shop, and by tests/test_fused.py). ``on_run(wide)``: called
    on each run (a cache hit runs nothing), a metric hook."""

    def __init__(
        self,
        session: Any,
        cache: EmbeddingCache,
        wide: Any = None,
        occupancy: Occupancy | None = None,
        on_run: Callable[[bool], None] | None = None,
    ):
        self.session = session
        self.cache = cache
        self.wide = wide
        self.occupancy = occupancy
        self.on_run = on_run

    @classmethod
    def load(
        cls,
        folder: Path,
        settings: FusedSettings,
        cache: EmbeddingCache | None = None,
        occupancy: Occupancy | None = None,
        on_run: Callable[[bool], None] | None = None,
    ) -> Encoder:
        path = str(folder / "model.onnx")
        session = make_session(path, intra_op_threads=settings.encoder_thread_count)
        wide = None
        if settings.widens and occupancy is not None and occupancy.active:
            wide = make_session(path, intra_op_threads=settings.alone_threads)
        return cls(session, cache or EmbeddingCache(settings.cache_entries), wide, occupancy, on_run)

    def _session(self) -> Any:
        wide = self.wide is not None and self.occupancy is not None and self.occupancy.alone(QUIET_S)
        if self.on_run is not None:
            self.on_run(wide)
        return self.wide if wide else self.session

    def embed(self, input_ids: Array, attention_mask: Array) -> Array:
        """The ``[1, D]`` embedding of one query's tokens (``[1, L]`` each)."""
        key = input_ids.tobytes() + b"|" + attention_mask.tobytes()

        def run() -> Array:
            (emb,) = self._session().run(
                [c.SENTENCE_EMBEDDING], {c.INPUT_IDS: input_ids, c.ATTENTION_MASK: attention_mask}
            )
            return emb  # type: ignore[no-any-return]

        return self.cache.get(key, run)

    def warm(self, input_ids: Array, attention_mask: Array) -> None:
        """Runs each session once on these tokens, outside the cache and the run count: ONNX Runtime plans a
        session's memory on its first run, and Triton's warm-up request reaches only one of them."""
        for session in (self.session, self.wide):
            if session is not None:
                session.run([c.SENTENCE_EMBEDDING], {c.INPUT_IDS: input_ids, c.ATTENTION_MASK: attention_mask})


class Ranker:
    """The ranker's ONNX file in an ONNX Runtime session; one run per request (its candidates are the batch)."""

    def __init__(self, session: Any):
        self.session = session

    @classmethod
    def load(cls, folder: Path, threads: int) -> Ranker:
        return cls(make_session(str(folder / "model.onnx"), intra_op_threads=threads))

    def scores(self, feats: dict[str, Array]) -> tuple[Array, Array]:
        logit, sim_weight = self.session.run(
            [c.LOGIT, c.SIM_WEIGHT], {c.CAT_FEATURES: feats[c.CAT_FEATURES], c.DENSE_FEATURES: feats[c.DENSE_FEATURES]}
        )
        return logit, sim_weight


def _rank(
    topk: TopK,
    ranker: Ranker,
    feats: dict[str, Array],
    context: Array,
    item_ids: Array,
    top_k: Array,
    options: str | None,
) -> dict[str, Array]:
    """The ranker and top-k on a features (or retrieval) step's tensors: the response."""
    logit, sim_weight = ranker.scores(feats)
    return topk.rank(
        context,
        logit,
        sim_weight,
        feats[c.ITEM_ROWS],
        item_ids,
        top_k,
        feats[c.AVAILABLE],
        feats[c.NEW_EMBEDDINGS],
        feats[c.PRICES],
        feats[c.NOTES],
        feats[c.BOOSTS],
        feats[c.PINS],
        options,
    )


class FusedSearch:
    """``search``: USER_ID, QUERY, ITEM_IDS, TOP_K -> the response (search_features, text_encoder, ranker, topk)."""

    inputs = (c.USER_ID, c.QUERY, c.ITEM_IDS, c.TOP_K)
    online_part = c.SEARCH_FEATURES  # the online store's metrics keep the ensemble layout's labels

    def __init__(self, store: FeatureStore, encoder: Encoder, ranker: Ranker, topk: TopK):
        self.store, self.encoder, self.ranker, self.topk = store, encoder, ranker, topk
        store.embed = encoder.embed  # an unknown query borrows by its embedding, which the call then reuses

    @classmethod
    def load(cls, settings: FusedSettings, serving: Serving | None = None) -> FusedSearch:
        f, served = settings.folders, serving or Serving()
        encoder = Encoder.load(f[c.TEXT_ENCODER], settings, served.cache, served.occupancy, served.encoder_runs)
        store = FeatureStore.load(f[c.SEARCH_FEATURES], online=served.online, query_pad_multiple=ONE_QUERY)
        if settings.warm_up:
            encoder.warm(*store.tokens(WARM_QUERY))
        return cls(store, encoder, Ranker.load(f[c.RANKER], settings.threads), TopK.load(f[c.TOPK]))

    def __call__(
        self,
        user_id: Array,
        query: Array,
        item_ids: Array,
        top_k: Array,
        build_values: bool = False,
        options: str | None = None,
    ) -> dict[str, Array]:
        feats = self.store.search(user_id, query, item_ids, build_values=build_values, options=options)
        emb = self.encoder.embed(feats[c.INPUT_IDS], feats[c.ATTENTION_MASK])
        return _rank(self.topk, self.ranker, feats, emb, item_ids, top_k, options)


class FusedRecommend:
    """``recommend``: USER_ID, ITEM_IDS, TOP_K -> the response (recommend_features, ranker, topk)."""

    inputs = (c.USER_ID, c.ITEM_IDS, c.TOP_K)
    online_part = c.RECOMMEND_FEATURES

    def __init__(self, store: FeatureStore, ranker: Ranker, topk: TopK):
        self.store, self.ranker, self.topk = store, ranker, topk

    @classmethod
    def load(cls, settings: FusedSettings, serving: Serving | None = None) -> FusedRecommend:
        f, served = settings.folders, serving or Serving()
        store = FeatureStore.load(
            f[c.RECOMMEND_FEATURES], with_tokenizer=False, with_profiles=True, online=served.online
        )
        return cls(store, Ranker.load(f[c.RANKER], settings.threads), TopK.load(f[c.TOPK]))

    def __call__(
        self, user_id: Array, item_ids: Array, top_k: Array, build_values: bool = False, options: str | None = None
    ) -> dict[str, Array]:
        feats = self.store.recommend(user_id, item_ids, build_values=build_values, options=options)
        return _rank(self.topk, self.ranker, feats, feats[c.CONTEXT_EMBEDDING], item_ids, top_k, options)


class FusedSearchCatalog:
    """``search_catalog``: USER_ID, QUERY, EXCLUDE_IDS, TOP_K -> the response (query_tokens, text_encoder,
    retrieve_search, ranker, topk)."""

    inputs = (c.USER_ID, c.QUERY, c.EXCLUDE_IDS, c.TOP_K)
    online_part = c.RETRIEVE_SEARCH

    def __init__(self, tokens: QueryTokens, encoder: Encoder, retriever: Retriever, ranker: Ranker, topk: TopK):
        self.tokens, self.encoder, self.retriever, self.ranker, self.topk = tokens, encoder, retriever, ranker, topk

    @classmethod
    def load(cls, settings: FusedSettings, serving: Serving | None = None) -> FusedSearchCatalog:
        f, served = settings.folders, serving or Serving()
        encoder = Encoder.load(f[c.TEXT_ENCODER], settings, served.cache, served.occupancy, served.encoder_runs)
        retriever = Retriever.load(f[c.RETRIEVE_SEARCH], recommend=False, online=served.online, scan=served.scan)
        ranker = Ranker.load(f[c.RANKER], settings.threads)
        tokens = QueryTokens.load(f[c.QUERY_TOKENIZER], pad_multiple=ONE_QUERY)
        if settings.warm_up:
            warm = tokens.tokens(np.array([WARM_QUERY.encode()], object))
            encoder.warm(warm[c.INPUT_IDS], warm[c.ATTENTION_MASK])
        return cls(tokens, encoder, retriever, ranker, TopK.load(f[c.TOPK]))

    def __call__(
        self,
        user_id: Array,
        query: Array,
        exclude_ids: Array,
        top_k: Array,
        build_values: bool = False,
        options: str | None = None,
    ) -> dict[str, Array]:
        tokens = self.tokens.tokens(query)
        emb = self.encoder.embed(tokens[c.INPUT_IDS], tokens[c.ATTENTION_MASK])
        feats = self.retriever.search(user_id, query, emb, exclude_ids, build_values=build_values, options=options)
        return _rank(self.topk, self.ranker, feats, emb, feats[c.ITEM_IDS], top_k, options)


class FusedRecommendCatalog:
    """``recommend_catalog``: USER_ID, CONTEXT_ITEM_IDS, EXCLUDE_IDS, TOP_K -> the response (retrieve_recommend,
    ranker, topk)."""

    inputs = (c.USER_ID, c.CONTEXT_ITEM_IDS, c.EXCLUDE_IDS, c.TOP_K)
    online_part = c.RETRIEVE_RECOMMEND

    def __init__(self, retriever: Retriever, ranker: Ranker, topk: TopK):
        self.retriever, self.ranker, self.topk = retriever, ranker, topk

    @classmethod
    def load(cls, settings: FusedSettings, serving: Serving | None = None) -> FusedRecommendCatalog:
        f, served = settings.folders, serving or Serving()
        retriever = Retriever.load(f[c.RETRIEVE_RECOMMEND], recommend=True, online=served.online, scan=served.scan)
        return cls(retriever, Ranker.load(f[c.RANKER], settings.threads), TopK.load(f[c.TOPK]))

    def __call__(
        self,
        user_id: Array,
        context_item_ids: Array,
        exclude_ids: Array,
        top_k: Array,
        build_values: bool = False,
        options: str | None = None,
    ) -> dict[str, Array]:
        feats = self.retriever.recommend(
            user_id, context_item_ids, exclude_ids, build_values=build_values, options=options
        )
        return _rank(self.topk, self.ranker, feats, feats[c.CONTEXT_EMBEDDING], feats[c.ITEM_IDS], top_k, options)


Call = FusedSearch | FusedRecommend | FusedSearchCatalog | FusedRecommendCatalog
KINDS: dict[str, type[Call]] = {
    c.SEARCH_ENSEMBLE: FusedSearch,
    c.RECOMMEND_ENSEMBLE: FusedRecommend,
    c.SEARCH_CATALOG: FusedSearchCatalog,
    c.RECOMMEND_CATALOG: FusedRecommendCatalog,
}


def warm_arrays(call: Call) -> list[Array]:
    """The made-up request (``WARM_VALUES``) as the call's inputs, in its order."""
    out = []
    for name in call.inputs:
        values = WARM_VALUES[name]
        dtype = WARM_DTYPES.get(name, np.int64)
        out.append(np.array([str(v).encode() for v in values] if dtype is object else values, dtype))
    return out


def answer_warm_request(call: Call, model: str) -> dict[str, Array]:
    """The call's answer to the made-up request, or RuntimeError naming the model: its load fails (``initialize``);
    ``validate`` asks the same of a build."""
    answer: Callable[..., dict[str, Array]] = call  # each call takes its own inputs, in ``inputs``' order
    try:
        return answer(*warm_arrays(call))
    except Exception as err:
        raise RuntimeError(f"{model}: its warm-up request failed ({type(err).__name__}: {err})") from err


class Occupied:
    """A fused call that marks its instance busy in the node's ``occupancy`` while it serves a request."""

    def __init__(self, call: Call, occupancy: Occupancy):
        self.call, self.occupancy = call, occupancy
        self.inputs = call.inputs

    def __call__(self, *arrays: Array, **kwargs: Any) -> dict[str, Array]:
        with self.occupancy.serving():
            return self.call(*arrays, **kwargs)  # type: ignore[arg-type]


def load_in_triton(pb_utils: Any, args: dict[str, str], call: str) -> Occupied:
    """The fused model of ``call`` as its ``model.py`` loads it: the settings from its config, its query cache
    counted in ``shoprank_query_cache_total`` (where it has an encoder), the online store (its metrics under
    the ensemble layout's label), the ``item_scan`` model through BLS where the config names one, its slot in
    the node's occupancy (every fused instance marks when it serves; an encoder widens when alone), and its
    encoder's runs counted in ``shoprank_encoder_runs_total`` by session."""
    kind, name = KINDS[call], args["model_name"]
    settings = FusedSettings.from_config(args["model_config"], args["model_repository"], args["model_version"])
    cache = EmbeddingCache(settings.cache_entries) if c.TEXT_ENCODER in settings.folders else None
    scanner = config_parameters(args["model_config"]).get(c.SCAN_PARAMETER, "")
    scan = bls_scan(pb_utils, scanner, int(args["model_version"])) if scanner else None
    occupancy = Occupancy()
    fused = kind.load(settings, Serving(online_store(pb_utils, kind.online_part), scan, cache, occupancy))
    if settings.warm_up:
        answer_warm_request(fused, name)  # before the metrics count: it is not a shopper's request
    if cache is not None and isinstance(fused, FusedSearch | FusedSearchCatalog):
        cache.on_lookup = query_cache_metric(pb_utils, name)
        fused.encoder.on_run = encoder_runs_metric(pb_utils, name)
    return Occupied(fused, occupancy)

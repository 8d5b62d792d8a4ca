"""Every model of the CPU-target repository, as typed specs with the reason for each setting.

Two layouts serve the same calls with the same inputs, outputs and rankings (docs/serving.md, "The cpu
target's layout"):

* ``fused`` (the cpu target's): each call's ensemble has one step, a Python-backend model that runs the
  whole call in process (``runtime/fused.py``) on the files of the composing models below, its *parts*.
  The parts stay in the repository (the release's files, versioned with it) but the server does not load
  them.
* ``ensemble`` (the gpu target's, and the cpu target's with ``layout="ensemble"``):

    search:    search_features ─┬─> text_encoder ─┐
                                └─> ranker ───────┴─> topk
    recommend: recommend_features ──> ranker ───────> topk

    search_catalog:    query_tokens -> text_encoder -> retrieve_search -> ranker -> topk
    recommend_catalog: retrieve_recommend ---------------------------> ranker -> topk

* The ensembles do not batch (max_batch_size 0): one request is one user with its own candidate list.
* ``text_encoder`` batches queries: a query is padded to the next multiple of 4 tokens, so queries in
  the same length bucket have the same shape and the dynamic batcher groups them.
* ``ranker``'s batch axis is the *candidate*: a request with 100 candidates is a batch of 100 rows, and
  the dynamic batcher concatenates the rows of concurrent requests (up to 4,096) into one run.
* The encoder and the ranker do not depend on each other and run in parallel. A query the query
  statistics do not know borrows them from its nearest head queries by the encoder's embedding:
  search_features asks text_encoder for it through BLS, for those queries only (the head queries,
  most of the traffic, skip it), and the ensemble's own encoder step then finds it in the response cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from builders.repository.triton_config import ModelSpec, Step, Tensor, WarmInput
from runtime import contract as c
from runtime.fused import (
    ALONE_PARAMETER,
    CACHE_PARAMETER,
    PARTS,
    PARTS_PARAMETER,
    QUERY_CACHE_ENTRIES,
    THREADS_PARAMETER,
    WARM_VALUES,
    fused_name,
)

FUSED = "fused"
ENSEMBLE = "ensemble"
LAYOUTS = (FUSED, ENSEMBLE)


def _request_inputs(with_query: bool) -> tuple[Tensor, ...]:
    tensors = [Tensor(c.USER_ID, "int64", (1,))]
    if with_query:
        tensors.append(Tensor(c.QUERY, "bytes", (1,)))
    return tuple(tensors + [Tensor(c.ITEM_IDS, "int64", (-1,))])


def _ranker_features(embed_dim: int) -> tuple[Tensor, ...]:
    """What a features model hands on: the ranker's inputs, and to topk the rows, AVAILABLE and new items."""
    return (
        Tensor(c.CAT_FEATURES, "int64", (-1, c.N_CAT)),
        Tensor(c.DENSE_FEATURES, "float32", (-1, c.N_DENSE)),
        Tensor(c.ITEM_ROWS, "int64", (-1,)),
        Tensor(c.AVAILABLE, "bool", (-1,)),
        Tensor(c.NEW_EMBEDDINGS, "float32", (-1, embed_dim)),
        Tensor(c.PRICES, "float32", (-1,)),
        Tensor(c.NOTES, "bytes", (1,)),
        Tensor(c.BOOSTS, "float32", (-1,)),
        Tensor(c.PINS, "int32", (-1,)),
    )


RESPONSE = (
    Tensor(c.TOP_ITEM_IDS, "int64", (-1,)),
    Tensor(c.TOP_SCORES, "float32", (-1,)),
    Tensor(c.TOP_ITEM_KEYS, "bytes", (-1,)),  # the shop's own ids (string SKUs), beside the INT64 ones
    Tensor(c.TOP_GROUP_KEYS, "bytes", (-1,)),  # the variant group each result represents
    Tensor(c.TOP_GROUP_MATCHES, "int32", (-1,)),  # its variants in the relevant set
    Tensor(c.RESULT_INFO, "bytes", (1,)),  # JSON: matches, offset, sort, per_group, facets
)
FEATURES_WHY = {
    "max_batch_size": "0: each request has its own candidate count, the work is per request (numpy, ~100 us)",
    "instance_group": "2 CPU instances so one slow request does not queue the next",
}


TOKENS = (Tensor(c.INPUT_IDS, "int64", (1, -1)), Tensor(c.ATTENTION_MASK, "int64", (1, -1)))  # one query's
# What every features / retrieval step hands on to the ranker and topk, by ensemble tensor name
FEATURES_OUT = {
    c.CAT_FEATURES: "cat",
    c.DENSE_FEATURES: "dense",
    c.ITEM_ROWS: "rows",
    c.AVAILABLE: "available",
    c.NEW_EMBEDDINGS: "new_emb",
    c.PRICES: "prices",
    c.NOTES: "notes",
    c.BOOSTS: "boosts",
    c.PINS: "pins",
}


def _tokens_step() -> Step:
    return Step(c.QUERY_TOKENIZER, {c.QUERY: c.QUERY}, {c.INPUT_IDS: "tokens", c.ATTENTION_MASK: "mask"})


def _encoder_step() -> Step:
    return Step(c.TEXT_ENCODER, {c.INPUT_IDS: "tokens", c.ATTENTION_MASK: "mask"}, {c.SENTENCE_EMBEDDING: "query_emb"})


def _ranker_step() -> Step:
    return Step(c.RANKER, {c.CAT_FEATURES: "cat", c.DENSE_FEATURES: "dense"}, {c.LOGIT: "logit", c.SIM_WEIGHT: "simw"})


def _topk_step(context: str, candidates: str = c.ITEM_IDS) -> Step:
    """The last step of every ensemble; ``context`` is the query (search) or user (recommend) embedding,
    ``candidates`` the request's ITEM_IDS or the retrieved ones."""
    return Step(
        c.TOPK,
        {
            c.CONTEXT_EMBEDDING: context,
            c.LOGIT: "logit",
            c.SIM_WEIGHT: "simw",
            c.ITEM_ROWS: "rows",
            c.ITEM_IDS: candidates,
            c.TOP_K: c.TOP_K,
            c.AVAILABLE: "available",
            c.NEW_EMBEDDINGS: "new_emb",
            c.PRICES: "prices",
            c.NOTES: "notes",
            c.BOOSTS: "boosts",
            c.PINS: "pins",
        },
        {t.name: t.name for t in RESPONSE},
    )


def specs(
    embed_dim: int = c.EMBED_DIM, scan: bool = False, layout: str = FUSED, sizes: FusedSizes | None = None
) -> list[ModelSpec]:
    """The models; ``embed_dim`` is the text encoder's output size (384 for the bundled MiniLM). ``scan``:
    the retrieval models call the ``item_scan`` model (exact, a matrix product) instead of FAISS.
    ``layout``: ``fused`` (the cpu target's) or ``ensemble`` (module docstring); ``sizes``: the fused models'
    instances and threads (default: 2 x 1, measured on 2 cores)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got {layout!r}")
    models = ensemble_specs(embed_dim, scan)
    return models if layout == ENSEMBLE else fused_specs(models, scan, sizes or FusedSizes())


def ensemble_specs(embed_dim: int = c.EMBED_DIM, scan: bool = False) -> list[ModelSpec]:
    """The ensemble layout: the composing models and the four ensembles chaining them."""
    search_features = ModelSpec(
        name=c.SEARCH_FEATURES,
        backend="python",
        instances=2,
        why=FEATURES_WHY,
        inputs=_request_inputs(True),
        outputs=TOKENS + _ranker_features(embed_dim),
    )
    recommend_features = ModelSpec(
        name=c.RECOMMEND_FEATURES,
        backend="python",
        instances=2,
        why=FEATURES_WHY,
        inputs=_request_inputs(False),
        outputs=_ranker_features(embed_dim) + (Tensor(c.CONTEXT_EMBEDDING, "float32", (1, embed_dim)),),
    )
    text_encoder = ModelSpec(
        name=c.TEXT_ENCODER,
        backend="onnxruntime",
        max_batch_size=64,
        instances=1,
        dynamic_batching=True,
        max_queue_delay_us=200,
        inputs=(Tensor(c.INPUT_IDS, "int64", (-1,)), Tensor(c.ATTENTION_MASK, "int64", (-1,))),
        outputs=(Tensor(c.SENTENCE_EMBEDDING, "float32", (embed_dim,)),),
        parameters={"intra_op_thread_count": "2"},
        response_cache=True,
        why={
            "response_cache": "head queries repeat: on the shop's query log 77% of searches hit, search p50 "
            "8.9 -> 4.4 ms, req/s 153 -> 460 (docs/tuning.md); needs --cache-config on the server",
            "max_batch_size": "64 queries; a query is padded to a multiple of 4 tokens, so concurrent queries in "
            "the same length bucket share a shape and batch",
            "dynamic_batching": "200 us delay: the sweep (docs/tuning.md) found 500/1000/2000 us no faster under "
            "load and slower at concurrency 1",
            "instance_group": "1 instance with 2 intra-op threads: 2 instances x 1 thread gave +7% req/s but +33% "
            "p50 (docs/tuning.md)",
            "dims": "sequence axis -1: length buckets of 4 up to 32 tokens (cost is linear in length)",
        },
    )
    ranker = ModelSpec(
        name=c.RANKER,
        backend="onnxruntime",
        max_batch_size=c.RANKER_MAX_BATCH,
        instances=2,
        dynamic_batching=True,
        max_queue_delay_us=100,
        inputs=(Tensor(c.CAT_FEATURES, "int64", (c.N_CAT,)), Tensor(c.DENSE_FEATURES, "float32", (c.N_DENSE,))),
        outputs=(Tensor(c.LOGIT, "float32", (1,)), Tensor(c.SIM_WEIGHT, "float32", (1,))),
        parameters={"intra_op_thread_count": "1"},
        why={
            "max_batch_size": f"{c.RANKER_MAX_BATCH} candidate rows: the batch axis is the candidate, so the "
            f"rows of concurrent requests are concatenated (>= {c.MAX_CANDIDATES}, the per-request cap)",
            "dynamic_batching": "100 us delay: a DCN over a few hundred rows is cheap, a short wait suffices",
            "instance_group": "1 intra-op thread per instance, so instances x threads stay within the node's cores; "
            "1 instance measured within noise of 2 (docs/tuning.md)",
        },
    )
    topk = ModelSpec(
        name=c.TOPK,
        backend="python",
        instances=2,
        inputs=(
            Tensor(c.CONTEXT_EMBEDDING, "float32", (1, embed_dim)),
            Tensor(c.LOGIT, "float32", (-1, 1)),
            Tensor(c.SIM_WEIGHT, "float32", (-1, 1)),
            Tensor(c.ITEM_ROWS, "int64", (-1,)),
            Tensor(c.ITEM_IDS, "int64", (-1,)),
            Tensor(c.TOP_K, "int32", (1,)),
            Tensor(c.AVAILABLE, "bool", (-1,)),
            Tensor(c.NEW_EMBEDDINGS, "float32", (-1, embed_dim)),
            Tensor(c.PRICES, "float32", (-1,)),
            Tensor(c.NOTES, "bytes", (1,)),
            Tensor(c.BOOSTS, "float32", (-1,)),
            Tensor(c.PINS, "int32", (-1,)),
        ),
        outputs=RESPONSE,
        why={
            "max_batch_size": "0: top-k is per request (its own candidate list)",
            "instance_group": "2 CPU instances: tens of microseconds of numpy per request",
        },
    )
    search = ModelSpec(
        name=c.SEARCH_ENSEMBLE,
        platform="ensemble",
        inputs=_request_inputs(True) + (Tensor(c.TOP_K, "int32", (1,)),),
        outputs=RESPONSE,
        steps=(
            Step(
                c.SEARCH_FEATURES,
                {t: t for t in (c.USER_ID, c.QUERY, c.ITEM_IDS)},
                {c.INPUT_IDS: "tokens", c.ATTENTION_MASK: "mask", **FEATURES_OUT},
            ),
            _encoder_step(),
            _ranker_step(),
            _topk_step("query_emb"),
        ),
        why={
            "max_batch_size": "0: a request is one user, one query and its own candidate list; the composing "
            "models batch instead (encoder per query, ranker per candidate row)",
            "steps": "text_encoder and ranker both depend only on search_features, so they run in parallel",
        },
    )
    recommend = ModelSpec(
        name=c.RECOMMEND_ENSEMBLE,
        platform="ensemble",
        inputs=_request_inputs(False) + (Tensor(c.TOP_K, "int32", (1,)),),
        outputs=RESPONSE,
        steps=(
            Step(
                c.RECOMMEND_FEATURES,
                {t: t for t in (c.USER_ID, c.ITEM_IDS)},
                {**FEATURES_OUT, c.CONTEXT_EMBEDDING: "user_emb"},
            ),
            _ranker_step(),
            _topk_step("user_emb"),
        ),
        why={
            "max_batch_size": "0: one user and its own candidate list per request; the ranker batches rows",
            "steps": "no query: the user's profile embedding (mean of clicked titles) is the context",
        },
    )
    return [search_features, recommend_features, text_encoder, ranker, topk, search, recommend] + catalog_specs(
        embed_dim, scan
    )


RETRIEVE_WHY = {
    "max_batch_size": "0: one vector per request; the index search, filters and features are per request",
    "instance_group": "2 CPU instances, single-threaded FAISS each; the index and tables are memory-mapped, "
    "so the instances (and both retrieval models) share one copy in the page cache",
}


SCAN_MAX_BATCH = 16  # vectors per scan: the table is read once for the whole batch


def _retrieved() -> Tensor:
    return Tensor(c.ITEM_IDS, "int64", (-1,))


def scan_spec(embed_dim: int = c.EMBED_DIM) -> ModelSpec:
    """``item_scan`` (builders/repository/item_scan.py) on a CPU instance; the gpu target puts it on the GPU."""
    return ModelSpec(
        name=c.ITEM_SCAN,
        backend="onnxruntime",
        max_batch_size=SCAN_MAX_BATCH,
        instances=1,
        dynamic_batching=True,
        max_queue_delay_us=100,
        inputs=(Tensor(c.SCAN_VECTOR, "float32", (embed_dim,)), Tensor(c.SCAN_DEPTH, "int64", (1,))),
        outputs=(Tensor(c.SCAN_ROWS, "int64", (-1,)), Tensor(c.SCAN_SCORES, "float32", (-1,))),
        parameters={"intra_op_thread_count": "1"},
        why={
            "max_batch_size": f"{SCAN_MAX_BATCH} vectors: one pass over the item table scores the whole batch; "
            "a batch answers as deep as its deepest request",
            "dynamic_batching": "100 us delay: concurrent retrieval requests share one read of the table",
            "instance_group": "1 instance: the table is in its memory once (the model file references "
            "item_embeddings.npy, hard-linked with topk's)",
        },
    )


def catalog_specs(embed_dim: int = c.EMBED_DIM, scan: bool = False) -> list[ModelSpec]:
    """The models of retrieval from the whole catalogue (runtime/retrieval.py), beside the re-ranking ones:

    search_catalog:    query_tokens -> text_encoder -> retrieve_search ----> ranker -> topk
    recommend_catalog: retrieve_recommend ----------------------------------> ranker -> topk

    With ``scan`` the retrieval models call ``item_scan`` through BLS (config parameter ``item_scan``)
    instead of searching the FAISS index, and ``item_scan`` is one more model of the repository.
    """
    id_list = Tensor(c.EXCLUDE_IDS, "int64", (-1,))
    retrieve_why = dict(RETRIEVE_WHY)
    if scan:
        retrieve_why["instance_group"] = (
            f"2 CPU instances: filters and features per request; the nearest items come from {c.ITEM_SCAN}"
        )
        retrieve_why["parameters"] = (
            f"{c.SCAN_PARAMETER}: retrieval is an exact scan by the {c.ITEM_SCAN} model (BLS), not FAISS"
        )
    retrieve_params = {c.SCAN_PARAMETER: c.ITEM_SCAN} if scan else {}
    query_tokens = ModelSpec(
        name=c.QUERY_TOKENIZER,
        backend="python",
        instances=2,
        inputs=(Tensor(c.QUERY, "bytes", (1,)),),
        outputs=TOKENS,
        why={
            "max_batch_size": "0: one query per request (the encoder batches queries)",
            "instance_group": "2 CPU instances: tokenising one query takes tens of microseconds",
        },
    )
    retrieve_search = ModelSpec(
        name=c.RETRIEVE_SEARCH,
        backend="python",
        instances=2,
        inputs=(
            Tensor(c.USER_ID, "int64", (1,)),
            Tensor(c.QUERY, "bytes", (1,)),
            Tensor(c.CONTEXT_EMBEDDING, "float32", (1, embed_dim)),
            id_list,
        ),
        outputs=(_retrieved(),) + _ranker_features(embed_dim),
        parameters=retrieve_params,
        why=retrieve_why,
    )
    retrieve_recommend = ModelSpec(
        name=c.RETRIEVE_RECOMMEND,
        backend="python",
        instances=2,
        inputs=(Tensor(c.USER_ID, "int64", (1,)), Tensor(c.CONTEXT_ITEM_IDS, "int64", (-1,)), id_list),
        outputs=(_retrieved(),)
        + _ranker_features(embed_dim)
        + (Tensor(c.CONTEXT_EMBEDDING, "float32", (1, embed_dim)),),
        parameters=retrieve_params,
        why=retrieve_why,
    )
    features_out = {c.ITEM_IDS: "candidates", **FEATURES_OUT}
    request = (Tensor(c.USER_ID, "int64", (1,)),)
    tail = (id_list, Tensor(c.TOP_K, "int32", (1,)))
    search_catalog = ModelSpec(
        name=c.SEARCH_CATALOG,
        platform="ensemble",
        inputs=request + (Tensor(c.QUERY, "bytes", (1,)),) + tail,
        outputs=RESPONSE,
        steps=(
            _tokens_step(),
            _encoder_step(),
            Step(
                c.RETRIEVE_SEARCH,
                {
                    c.USER_ID: c.USER_ID,
                    c.QUERY: c.QUERY,
                    c.CONTEXT_EMBEDDING: "query_emb",
                    c.EXCLUDE_IDS: c.EXCLUDE_IDS,
                },
                features_out,
            ),
            _ranker_step(),
            _topk_step("query_emb", "candidates"),
        ),
        why={
            "max_batch_size": "0: one user and one query per request; the encoder and the ranker batch",
            "steps": "sequential: retrieval needs the query's embedding, the ranker the retrieved candidates",
        },
    )
    recommend_catalog = ModelSpec(
        name=c.RECOMMEND_CATALOG,
        platform="ensemble",
        inputs=request + (Tensor(c.CONTEXT_ITEM_IDS, "int64", (-1,)),) + tail,
        outputs=RESPONSE,
        steps=(
            Step(
                c.RETRIEVE_RECOMMEND,
                {t: t for t in (c.USER_ID, c.CONTEXT_ITEM_IDS, c.EXCLUDE_IDS)},
                {**features_out, c.CONTEXT_EMBEDDING: "user_emb"},
            ),
            _ranker_step(),
            _topk_step("user_emb", "candidates"),
        ),
        why={
            "max_batch_size": "0: one user per request; the ranker batches the candidates' rows",
            "steps": "the user's vector (profile + context items) retrieves; topk's similarity uses it too",
        },
    )
    models = [query_tokens, retrieve_search, retrieve_recommend, search_catalog, recommend_catalog]
    return models + ([scan_spec(embed_dim)] if scan else [])


FUSED_THREADS = 1
FUSED_INSTANCES = 2
FUSED_ALONE_THREADS = 2  # the encoder's threads while no other fused instance serves (docs/benchmarks.md)


@dataclass(frozen=True)
class FusedSizes:
    """Instances per fused model and ONNX Runtime threads per session. The default, 2 x 1, is the best load
    and tail measured on 2 cores (docs/benchmarks.md); a bigger node takes more instances (one per core
    is the measured rule: 4 x 1 was no better on 2 cores)."""

    instances: int = FUSED_INSTANCES
    threads: int = FUSED_THREADS
    alone_threads: int = FUSED_ALONE_THREADS  # 0 (or <= threads): the encoder never widens

    def __post_init__(self) -> None:
        for name in ("instances", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"fused {name}: expected a whole number >= 1, got {value!r}")
        if not isinstance(self.alone_threads, int) or self.alone_threads < 0:
            raise ValueError(f"fused alone_threads: expected a whole number >= 0, got {self.alone_threads!r}")


def warm_request(inputs: tuple[Tensor, ...]) -> tuple[WarmInput, ...]:
    """The warm-up request of a call with these inputs (``WARM_VALUES``)."""
    return tuple(WarmInput(t.name, t.dtype, WARM_VALUES[t.name]) for t in inputs)


def fused_specs(
    ensemble_layout: list[ModelSpec], scan: bool = False, sizes: FusedSizes | None = None
) -> list[ModelSpec]:
    """The fused layout from the ensemble layout's models: every composing model stays (the parts, not
    loaded by the server), each call's ensemble becomes one step calling ``<call>_fused``, which takes the
    ensemble's inputs and gives its outputs."""
    sizes = sizes or FusedSizes()
    by_name = {s.name: s for s in ensemble_layout}
    fused, ensembles = [], []
    for call, parts in PARTS.items():
        ensemble = by_name[call]
        name = fused_name(call)
        params = {PARTS_PARAMETER: ",".join(parts), THREADS_PARAMETER: str(sizes.threads)}
        why = {
            "backend": f"python: the whole {call} call in one process (runtime/fused.py) on the files of "
            f"{', '.join(parts)}: no hop between steps, no parallel branch competing for few cores",
            "instance_group": f"{sizes.instances} CPU instances x {sizes.threads} ONNX Runtime thread(s) "
            "(--fused-instances, --fused-threads); 2 x 1 on 2 cores: the best load and tail against 1 x 2, "
            "2 x 2 and 4 x 1 (docs/benchmarks.md). One group per instance, rate-limiter priorities 1, 1000, ...: "
            "the server (--rate-limit=execution_count) sends a request to the first free instance in that order, "
            "so a shopper alone meets one process with its encoder and index warm in the CPU caches, not each "
            "instance in turn (docs/serving.md)",
            "max_batch_size": "0: one request is one user and its own candidates; the ranker runs them as one batch",
            "model_warmup": "each instance answers one made-up request (warmup/) before the model is ready: "
            "without it the first run of each part (ONNX Runtime's memory plan, the python backend's first "
            "request, ...) made a new instance's first requests take 90-100 ms instead of 8-14 on 2 cores, at a "
            "start, a publish or a scale-out (make bench-first-request); a release that cannot answer it does not "
            "load",
        }
        if c.TEXT_ENCODER in parts:
            params[CACHE_PARAMETER] = str(QUERY_CACHE_ENTRIES)
            why["parameters"] = (
                f"{CACHE_PARAMETER}: query embeddings kept in process (the ensemble layout's response cache); "
                f"{QUERY_CACHE_ENTRIES} x 384 floats = 15 MB per instance"
            )
            if sizes.alone_threads > sizes.threads:
                params[ALONE_PARAMETER] = str(sizes.alone_threads)
                why["parameters"] += (
                    f"; {ALONE_PARAMETER}: the encoder's threads while no other fused instance of the node serves "
                    "(runtime/occupancy.py): one shopper's search is faster, the load keeps 1 thread per instance; "
                    "a second encoder session, about 90 MB per instance (--fused-alone-threads, 0: none)"
                )
        retrieval = {c.RETRIEVE_SEARCH, c.RETRIEVE_RECOMMEND} & set(parts)
        bls = bool(retrieval) and scan  # its retrieval asks the item_scan model, through BLS
        if bls:
            params[c.SCAN_PARAMETER] = by_name[retrieval.pop()].parameters[c.SCAN_PARAMETER]
            # Triton loads the models side by side and knows nothing of a BLS call: a warm-up could ask item_scan
            # before it has loaded, and the model would then fail to load
            del why["model_warmup"]
        fused.append(
            ModelSpec(
                name=name,
                backend="python",
                instances=sizes.instances,
                preferred_instances=True,
                inputs=ensemble.inputs,
                outputs=ensemble.outputs,
                parameters=params,
                warmup=() if bls else warm_request(ensemble.inputs),
                why=why,
            )
        )
        step = Step(name, {t.name: t.name for t in ensemble.inputs}, {t.name: t.name for t in ensemble.outputs})
        ensembles.append(
            ModelSpec(
                name=call,
                platform="ensemble",
                inputs=ensemble.inputs,
                outputs=ensemble.outputs,
                steps=(step,),
                why={
                    "max_batch_size": "0: a request is one user with its own candidates (or none: retrieval)",
                    "steps": f"one: {name} runs the whole call; the ensemble names the release's version, so "
                    "publish and rollback switch it as every ensemble (server/publish.py)",
                },
            )
        )
    calls = set(PARTS)
    return [s for s in ensemble_layout if s.name not in calls] + fused + ensembles


def spec_by_name(embed_dim: int = c.EMBED_DIM, scan: bool = False, layout: str = FUSED) -> dict[str, ModelSpec]:
    return {s.name: s for s in specs(embed_dim, scan, layout)}

"""Request loop shared by the Python-backend models, with errors mapped to status codes in one place.

``triton_python_backend_utils`` is passed in by each ``model.py`` (only they import it), so this module
imports nothing from Triton. ``InvalidInput`` -> INVALID_ARGUMENT with the field-naming message; any
other exception -> INTERNAL for that request alone: the model keeps serving the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from runtime.arrays import Array, Floats, Int64s
from runtime.contract import (
    ATTENTION_MASK,
    BUILD_VALUES,
    INPUT_IDS,
    SCAN_PARAMETER,
    SCAN_ROWS,
    SCAN_SCORES,
    SENTENCE_EMBEDDING,
)
from runtime.counters import DeferredCounters
from runtime.errors import InvalidInput
from runtime.online import OnlineItems
from runtime.online_store import OnlineSettings
from runtime.options import OPTIONS_PARAMETER
from runtime.scan import Scan, scan_inputs


def request_parameters(request: Any) -> dict[str, Any]:
    """The request's parameters (``request.parameters()`` is a JSON object; ``{}`` when it has none)."""
    raw = request.parameters()
    if not raw or raw == "{}":  # ordinary traffic: no JSON parse per request
        return {}
    try:
        params = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    return params if isinstance(params, dict) else {}


def build_values_asked(request: Any) -> bool:
    """Whether the request carries ``BUILD_VALUES: true``."""
    return request_parameters(request).get(BUILD_VALUES) is True


def options_sent(params: dict[str, Any]) -> str | None:
    """The request's ``shoprank_options`` (``runtime/options.py``) from its parameters: its JSON text, None when
    not sent. A value that is not a string is INVALID_ARGUMENT naming it."""
    value = params.get(OPTIONS_PARAMETER)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(OPTIONS_PARAMETER, f"expected a string parameter holding JSON, got {type(value).__name__}")


def serve(
    pb_utils: Any,
    requests: Sequence[Any],
    inputs: Sequence[str],
    handler: Callable[..., dict[str, Array]],
    logger: Any = None,
    build_values: bool = False,
    options: bool = False,
) -> list[Any]:
    """One response per request, in order. ``pb_utils``, the requests, the responses and the logger are
    the Python backend's own objects, untyped (``triton_python_backend_utils`` exists only inside Triton).
    ``build_values``: the handler takes ``build_values=`` (the feature models), read from each request;
    ``options``: it takes ``options=`` (the request's ``shoprank_options`` text)."""
    responses = []
    for request in requests:
        try:
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in inputs}
            params = request_parameters(request) if build_values or options else {}  # one JSON parse
            extra: dict[str, Any] = {"build_values": params.get(BUILD_VALUES) is True} if build_values else {}
            if options:
                extra["options"] = options_sent(params)
            outputs = handler(*(arrays[name] for name in inputs), **extra)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in outputs.items()]
                )
            )
        except InvalidInput as err:
            responses.append(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err), pb_utils.TritonError.INVALID_ARG))
            )
        except Exception as err:
            if logger is not None:
                logger.log_error(f"internal error: {type(err).__name__}: {err}")
            responses.append(
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(
                        f"internal error: {type(err).__name__}: {err}", pb_utils.TritonError.INTERNAL
                    )
                )
            )
    return responses


READ_OUTCOMES = ("ok", "cached", "failed", "skipped", "partial")


def online_store(pb_utils: Any, model: str) -> OnlineItems | None:
    """The online store of a feature model, from the environment (``runtime/online.py``), with Triton
    metrics on the server's metrics port: ``shoprank_online_up`` (1 while Redis answers, 0 while the
    model ranks with the build's values) and ``shoprank_online_reads_total`` by outcome, sent in the background
    (``runtime/counters.py``: at most ``FLUSH_S`` late; the gauge is set at once). None when
    ``SHOPRANK_ONLINE_URL`` is unset."""
    settings = OnlineSettings.from_env()
    if not settings.enabled:
        return None
    up_family = pb_utils.MetricFamily(
        name="shoprank_online_up",
        description="1 while the online store (Redis) answers; 0 while requests use the build's values",
        kind=pb_utils.MetricFamily.GAUGE,
    )
    reads_family = pb_utils.MetricFamily(
        name="shoprank_online_reads_total",
        description="online-store reads by outcome: ok (one MGET), cached, failed (error or timeout: "
        "build values used), skipped (Redis down: build values used until the retry), partial (cluster: "
        "some nodes failed, their keys used the build's values)",
        kind=pb_utils.MetricFamily.COUNTER,
    )
    up = up_family.Metric(labels={"model": model})
    up.set(1)
    reads = DeferredCounters({o: reads_family.Metric(labels={"model": model, "outcome": o}) for o in READ_OUTCOMES})
    logger = pb_utils.Logger
    store = OnlineItems(
        settings,
        log=lambda msg: logger.log_warn(f"{model}: {msg}"),
        on_state=lambda ok: up.set(1 if ok else 0),  # rare, and at once: an alert on it should not wait
        on_read=reads.add,
    )
    store.keep_alive += [up_family, reads_family, up, reads]
    return store


def config_parameters(model_config: str) -> dict[str, str]:
    """A model's config parameters (the Python backend's ``args["model_config"]`` JSON) by name."""
    params = json.loads(model_config).get("parameters", {})
    return {str(k): str(v.get("string_value", "")) for k, v in params.items()}


def scan_model(model_config: str) -> str:
    """The scan model a retrieval model calls (its config parameter ``item_scan``), or "" (FAISS)."""
    return config_parameters(model_config).get(SCAN_PARAMETER, "")


def bls_encoder(pb_utils: Any, model: str, version: int) -> Callable[[Array, Array], Array]:
    """The query embedding ``[1, D]`` of ``input_ids`` / ``attention_mask`` as a BLS request to ``version`` of
    the encoder ``model`` (the feature model's own release), its output asked for in CPU memory. The
    encoder's response cache then answers the ensemble's own request for the same tokens."""
    cpu = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    def embed(input_ids: Array, attention_mask: Array) -> Array:
        request = pb_utils.InferenceRequest(
            model_name=model,
            model_version=version,
            requested_output_names=[SENTENCE_EMBEDDING],
            inputs=[pb_utils.Tensor(INPUT_IDS, input_ids), pb_utils.Tensor(ATTENTION_MASK, attention_mask)],
            preferred_memory=cpu,
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        tensor = pb_utils.get_output_tensor_by_name(response, SENTENCE_EMBEDDING)
        if tensor is None:
            names = [t.name() for t in response.output_tensors()]
            raise RuntimeError(f"{model}: no {SENTENCE_EMBEDDING} in its response (got {names})")
        out: Array = tensor.as_numpy()
        return out

    return embed


def flag_counter(
    pb_utils: Any, model: str, name: str, description: str, label: str, yes: str, no: str
) -> Callable[[bool], None]:
    """The counter family ``name{model, <label>=<yes>|<no>}``: a function that counts one on ``yes`` (True) or
    ``no``. Counted in process and sent in the background (``runtime/counters.py``), so a request never waits on
    the server process for its metrics."""
    family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
    counts = DeferredCounters({v: family.Metric(labels={"model": model, label: v}) for v in (yes, no)})

    def count(flag: bool) -> None:
        counts.add(yes if flag else no)

    count.keep_alive = (family, counts)  # type: ignore[attr-defined]  # the metrics live as long as the hook
    return count


def query_cache_metric(pb_utils: Any, model: str) -> Callable[[bool], None]:
    """A fused model's query-embedding cache lookups as ``shoprank_query_cache_total{model, outcome=hit|miss}``
    (the ensemble layout's counterpart: the text encoder's response-cache statistics)."""
    description = "query-embedding cache lookups of a fused model, by outcome (hit: the encoder did not run)"
    return flag_counter(pb_utils, model, "shoprank_query_cache_total", description, "outcome", "hit", "miss")


def encoder_runs_metric(pb_utils: Any, model: str) -> Callable[[bool], None]:
    """A fused model's encoder runs as ``shoprank_encoder_runs_total{model, session=wide|narrow}``: ``wide`` where
    the node's other fused instances were idle and its ``encoder_alone_threads`` session ran (one shopper at a
    time), ``narrow`` otherwise. A node whose runs are nearly all narrow is loaded: widening no longer helps."""
    description = "text-encoder runs of a fused model, by session (wide: the node's other fused instances were idle)"
    return flag_counter(pb_utils, model, "shoprank_encoder_runs_total", description, "session", "wide", "narrow")


def bls_scan(pb_utils: Any, model: str, version: int) -> Scan:
    """``runtime.scan.Scan`` as a BLS request to ``version`` of ``model`` (the ``item_scan`` model, on the
    GPU in the gpu target; the caller's own version, so a release switch never pairs a retrieval model with
    another release's table), its outputs asked for in CPU memory. An error of the scan model raises:
    that request alone fails with INTERNAL (``serve``)."""
    cpu = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    def scan(vector: Floats, depth: int) -> tuple[Int64s, Floats]:
        request = pb_utils.InferenceRequest(
            model_name=model,
            model_version=version,
            requested_output_names=[SCAN_ROWS, SCAN_SCORES],
            inputs=[pb_utils.Tensor(name, value) for name, value in scan_inputs(vector, depth).items()],
            preferred_memory=cpu,
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        rows = pb_utils.get_output_tensor_by_name(response, SCAN_ROWS).as_numpy()
        scores = pb_utils.get_output_tensor_by_name(response, SCAN_SCORES).as_numpy()
        return rows[0], scores[0]

    return scan

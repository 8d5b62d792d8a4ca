"""What one pod's Triton says, over its HTTP endpoint (KServe v2 protocol, JSON).

HTTP, not gRPC, because the Kubernetes API server's pod proxy (how ``rollout`` reaches each pod, see
``rollout/kube.py``) forwards HTTP only. The same code runs over a direct URL (a port-forward, or the
local tritonservers the tests start), so what the tests check is what runs against a cluster.

A transport is one function: ``(method, path, body or None) -> (HTTP status, body bytes)``; it raises
``Unreachable`` when no answer came at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime import contract as c
from runtime.errors import ShoprankError
from runtime.options import OPTIONS_PARAMETER

Transport = Callable[[str, str, bytes | None], tuple[int, bytes]]


class Unreachable(ShoprankError, ConnectionError):
    """No HTTP answer from the pod (refused, timed out, proxy error); the message says which."""


@dataclass
class TritonView:
    """Triton's own view of itself: ready, and each model's versions by state."""

    ready: bool
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> {version: state}
    error: str | None = None  # why the view could not be read

    def loaded(self) -> dict[str, list[str]]:
        return {m: sorted(v for v, s in vs.items() if s == "READY") for m, vs in sorted(self.models.items())}


def direct(base_url: str, timeout_s: float = 10.0) -> Transport:
    """A transport to ``http://host:port`` (a port-forward, or a local tritonserver)."""
    import urllib3

    pool = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s), retries=False)
    base = base_url.rstrip("/")
    if "://" not in base:
        base = "http://" + base

    def send(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        try:
            resp = pool.request(method, base + path, body=body, headers={"Content-Type": "application/json"})
        except urllib3.exceptions.HTTPError as err:
            raise Unreachable(f"{base}: {err}") from None
        return resp.status, resp.data

    return send


def view(send: Transport) -> TritonView:
    """Server readiness and the repository index (every model, every version, its state)."""
    try:
        status, _ = send("GET", "/v2/health/ready", None)
        ready = status == 200
        status, body = send("POST", "/v2/repository/index", b"{}")
    except Unreachable as err:
        return TritonView(False, error=str(err))
    if status != 200:
        return TritonView(ready, error=f"repository index: HTTP {status} {body[:200]!r}")
    models: dict[str, dict[str, str]] = {}
    for entry in json.loads(body):
        if "version" in entry:
            models.setdefault(entry["name"], {})[str(entry["version"])] = entry.get("state", "")
        elif "state" in entry:  # a model the server tried to load, with no version (its error in "reason")
            models.setdefault(entry["name"], {})
        # neither: a folder the server was never asked to load (a fused repository's parts, runtime/fused.py)
    return TritonView(ready, models)


def _ids(name: str, ids: list[int]) -> dict:
    return {"name": name, "shape": [len(ids)], "datatype": "INT64", "data": list(ids)}


def _request(user_id: int, query: str | None, middle: list[dict], k: int, options: str | None = None) -> bytes:
    """USER_ID, QUERY (search kinds), ``middle``, TOP_K: a ranking request with the build's values, as
    KServe v2 JSON; with ``options`` (``shoprank_options``), the listing's outputs are asked for too."""
    inputs = [_ids(c.USER_ID, [user_id])]
    if query is not None:
        inputs.append({"name": c.QUERY, "shape": [1], "datatype": "BYTES", "data": [query]})
    inputs += [*middle, {"name": c.TOP_K, "shape": [1], "datatype": "INT32", "data": [k]}]
    names = [c.TOP_ITEM_IDS, c.TOP_SCORES]
    parameters: dict[str, object] = {c.BUILD_VALUES: True}
    if options is not None:
        names += [c.TOP_GROUP_KEYS, c.TOP_GROUP_MATCHES, c.RESULT_INFO]
        parameters[OPTIONS_PARAMETER] = options
    outputs = [{"name": n} for n in names]
    return json.dumps({"parameters": parameters, "inputs": inputs, "outputs": outputs}).encode()


def infer_body(
    user_id: int, item_ids: list[int], k: int, query: str | None = None, options: str | None = None
) -> bytes:
    """The request of the search (with a query) or recommend ensemble, as KServe v2 JSON."""
    return _request(user_id, query, [_ids(c.ITEM_IDS, item_ids)], k, options)


def catalogue_body(
    user_id: int,
    k: int,
    query: str | None = None,
    exclude: list[int] | None = None,
    context: list[int] | None = None,
    options: str | None = None,
) -> bytes:
    """The request of the search_catalog (with a query) or recommend_catalog ensemble, as KServe v2 JSON."""
    middle = [] if query is not None else [_ids(c.CONTEXT_ITEM_IDS, context or [])]
    return _request(user_id, query, [*middle, _ids(c.EXCLUDE_IDS, exclude or [])], k, options)


@dataclass(frozen=True)
class Answer:
    ids: list[int]
    scores: list[float]
    error: str | None = None  # the server's error message (HTTP 4xx/5xx)
    # a listing request's answer beside the items (asked for with ``options``)
    groups: list[str] = field(default_factory=list)
    group_matches: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def infer(send: Transport, model: str, body: bytes) -> Answer:
    """One ranking over the transport; an error answer carries the server's message."""
    status, raw = send("POST", f"/v2/models/{model}/infer", body)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return Answer([], [], f"HTTP {status}: {raw[:200]!r}")
    if status != 200:
        return Answer([], [], str(data.get("error", data)) if isinstance(data, dict) else str(data))
    out = {o["name"]: o.get("data", []) for o in data.get("outputs", [])}
    info = out.get(c.RESULT_INFO) or ["{}"]
    return Answer(
        [int(x) for x in out.get(c.TOP_ITEM_IDS, [])],
        [float(x) for x in out.get(c.TOP_SCORES, [])],
        groups=[str(g) for g in out.get(c.TOP_GROUP_KEYS, [])],
        group_matches=[int(m) for m in out.get(c.TOP_GROUP_MATCHES, [])],
        info=json.loads(info[0]),
    )

"""The blocking client. ``AsyncRankingClient`` (aio.py) mirrors it method for method."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shoprank_client.core import CallPlan, EndpointPool
from shoprank_client.errors import InvalidRequest, RankingError, from_triton
from shoprank_client.experiment import Splits, unit_id
from shoprank_client.listing import Filters, FilterTree, options_parameter
from shoprank_client.protocol import (
    CONTRACT,
    SEARCH_MODEL,
    build_catalog_inputs,
    build_inputs,
    check_metadata,
    listing_fields,
    parse_items,
)
from shoprank_client.types import AnyRequest, ClientOptions, RankingResult, call_of

T = TypeVar("T")
# tritonclient ships no type hints: its clients and results are Any here, named for the reader.
TritonClient = Any
InferResult = Any


def client_kwargs(options: ClientOptions) -> dict[str, Any]:
    """Constructor keywords shared by tritonclient's sync and asyncio gRPC clients."""
    kwargs: dict[str, Any] = {
        "keepalive_options": grpcclient.KeepAliveOptions(
            keepalive_time_ms=options.keepalive_time_ms,
            keepalive_timeout_ms=options.keepalive_timeout_ms,
            keepalive_permit_without_calls=True,
        ),
    }
    if options.tls is not None:
        kwargs.update(
            ssl=True,
            root_certificates=options.tls.root_certificates,
            private_key=options.tls.client_key,
            certificate_chain=options.tls.client_cert,
        )
    return kwargs


class RankingClient:
    """Rank candidates with the served ``search`` and ``recommend`` ensembles.

    >>> client = RankingClient(["triton-0:8001", "triton-1:8001"], timeout_s=0.3)
    >>> result = client.search(user_id=42, query="wireless headphones", candidates=[101, 102, 103], k=2)
    >>> result.item_ids, result.scores

    ``endpoints``: ``"host:port"`` entries, or ``"dns:name:port"`` to spread calls over every address
    of a headless Kubernetes Service. Every call has a deadline (``timeout_s``, overridable per call);
    retryable failures are retried with backoff inside it. All errors are ``RankingError`` subclasses.
    The client is thread-safe; create one per process and reuse it (channels are kept open).
    """

    def __init__(self, endpoints: str | Sequence[str], options: ClientOptions | None = None, **overrides: Any) -> None:
        self.options = options or ClientOptions(**overrides)
        if options is not None and overrides:
            raise ValueError("pass either options= or keyword overrides, not both")
        self._pool = EndpointPool(endpoints, self.options)
        self._clients: dict[str, grpcclient.InferenceServerClient] = {}
        self._checked: set[tuple[str, str]] = set()
        self._splits = Splits(self.options.experiment_refresh_s)  # the server's online tests, per model
        self._headers = dict(self.options.headers) or None
        self._late: set[threading.Event] = set()  # RPCs past the caller's deadline, left to finish
        self._late_answers = 0  # answers that came after the deadline to a thread that looked late (starved)

    # -- public API ---------------------------------------------------------------------------------
    def search(
        self,
        user_id: int | str,
        query: str | bytes,
        candidates: Sequence[int | str],
        k: int = 10,
        timeout_s: float | None = None,
        filters: Filters | FilterTree | None = None,
        per_group: int | None = None,
        offset: int = 0,
        sort: str = "relevance",
        facets: Sequence[str] = (),
        understand: str | None = None,
        understand_fields: Sequence[str] | None = None,
        split_by: int | str | None = None,
    ) -> RankingResult:
        """Top ``k`` of ``candidates`` for ``user_id`` searching ``query``, best first. Ids may be ints or strings.
        ``filters``, ``per_group``, ``offset``, ``sort``, ``facets``: shoprank_client.listing (all calls take them)."""
        model, inputs, keys = build_inputs(user_id, candidates, k, query)
        params = options_parameter(
            filters, per_group, offset, sort, facets, understand=understand, understand_fields=understand_fields
        )
        return self._rank(model, inputs, timeout_s, keys, params, unit_id(user_id if split_by is None else split_by))

    def recommend(
        self,
        user_id: int | str,
        candidates: Sequence[int | str],
        k: int = 10,
        timeout_s: float | None = None,
        filters: Filters | FilterTree | None = None,
        per_group: int | None = None,
        offset: int = 0,
        sort: str = "relevance",
        facets: Sequence[str] = (),
        split_by: int | str | None = None,
    ) -> RankingResult:
        """Top ``k`` of ``candidates`` for ``user_id`` without a query (homepage, recommendations)."""
        model, inputs, keys = build_inputs(user_id, candidates, k)
        params = options_parameter(filters, per_group, offset, sort, facets)
        return self._rank(model, inputs, timeout_s, keys, params, unit_id(user_id if split_by is None else split_by))

    def search_catalog(
        self,
        user_id: int | str,
        query: str | bytes,
        k: int = 10,
        exclude: Sequence[int | str] = (),
        timeout_s: float | None = None,
        filters: Filters | FilterTree | None = None,
        per_group: int | None = None,
        offset: int = 0,
        sort: str = "relevance",
        facets: Sequence[str] = (),
        understand: str | None = None,
        understand_fields: Sequence[str] | None = None,
        split_by: int | str | None = None,
    ) -> RankingResult:
        """Top ``k`` of the whole catalogue for ``user_id`` searching ``query``: the server retrieves, filters
        (sold out, bought, ``exclude``, ``filters``) and ranks. Item ids come back as the shop's own: a string-id
        shop's SKUs (the server's ``TOP_ITEM_KEYS``), else the INT64 ids. One result per variant group by
        default (``per_group``); ``offset`` pages, ``sort`` orders the relevant set, ``facets`` are counted."""
        model, inputs = build_catalog_inputs(user_id, k, query=query, exclude=exclude)
        params = options_parameter(
            filters, per_group, offset, sort, facets, understand=understand, understand_fields=understand_fields
        )
        return self._rank(model, inputs, timeout_s, None, params, unit_id(user_id if split_by is None else split_by))

    def recommend_catalog(
        self,
        user_id: int | str,
        k: int = 10,
        context: Sequence[int | str] = (),
        exclude: Sequence[int | str] = (),
        timeout_s: float | None = None,
        filters: Filters | FilterTree | None = None,
        per_group: int | None = None,
        offset: int = 0,
        sort: str = "relevance",
        facets: Sequence[str] = (),
        include_own_group: bool = False,
        split_by: int | str | None = None,
    ) -> RankingResult:
        """Top ``k`` of the whole catalogue for ``user_id`` (homepage; with ``context``, the items being
        viewed, "more like this"): retrieved, filtered (sold out, bought, ``exclude``, the context and, unless
        ``include_own_group``, the context's other variants; ``filters``) and ranked."""
        model, inputs = build_catalog_inputs(user_id, k, context=context, exclude=exclude)
        params = options_parameter(filters, per_group, offset, sort, facets, include_own_group)
        return self._rank(model, inputs, timeout_s, None, params, unit_id(user_id if split_by is None else split_by))

    def rank_many(
        self,
        requests: Sequence[AnyRequest],
        timeout_s: float | None = None,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
    ) -> list[RankingResult | RankingError]:
        """Many requests concurrently; results in request order. Each request names its call
        (``SearchRequest``, ``RecommendRequest``, ``SearchCatalogRequest``, ``RecommendCatalogRequest``) and
        carries that method's keywords. With ``return_exceptions`` a failed request gives its ``RankingError``
        in place of a result; otherwise the first error is raised."""

        def one(req: AnyRequest) -> RankingResult | RankingError:
            try:
                method, keywords = call_of(req)
                result: RankingResult = getattr(self, method)(**keywords, timeout_s=timeout_s)
                return result
            except RankingError as err:
                if return_exceptions:
                    return err
                raise

        with ThreadPoolExecutor(max(1, min(max_concurrency, len(requests) or 1))) as pool:
            return list(pool.map(one, requests))

    def is_live(self, timeout_s: float | None = None) -> bool:
        """True if any endpoint's server is live."""
        return any(self._probe(e, "is_server_live", timeout_s) for e in self._pool.endpoints())

    def is_ready(self, timeout_s: float | None = None) -> bool:
        """True if any endpoint's server is ready (every model loaded)."""
        return any(self._probe(e, "is_server_ready", timeout_s) for e in self._pool.endpoints())

    def health(self, timeout_s: float | None = None) -> dict[str, bool]:
        """Readiness per endpoint (after DNS expansion)."""
        return {e: self._probe(e, "is_server_ready", timeout_s) for e in self._pool.endpoints()}

    def model_version(self, model: str = SEARCH_MODEL, timeout_s: float | None = None) -> str:
        """The newest version the server reports for ``model`` (``"search"`` or ``"recommend"``)."""
        meta = self._with_retries(
            lambda c, e, plan: c.get_model_metadata(
                model, as_json=True, client_timeout=plan.attempt_timeout(), headers=self._headers
            ),
            timeout_s,
        )[0]
        return str(max(meta.get("versions", ["?"]), key=lambda v: (len(v), v)))

    def check(self, timeout_s: float | None = None) -> None:
        """Fail fast: raise ContractMismatch if a served ensemble differs from what the SDK sends."""
        for model in CONTRACT:  # the re-ranking and the catalogue ensembles

            def verify(c: TritonClient, e: str, plan: CallPlan, m: str = model) -> None:
                self._ensure_contract(c, e, m, plan.attempt_timeout())

            self._with_retries(verify, timeout_s)

    def close(self) -> None:
        deadline = time.monotonic() + self.options.cancel_grace_s + self.options.timeout_s
        for late in list(self._late):  # let late RPCs finish (bounded) rather than cancel them
            late.wait(max(0.0, deadline - time.monotonic()))
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> RankingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------
    def _client(self, endpoint: str) -> grpcclient.InferenceServerClient:
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients.setdefault(
                endpoint, grpcclient.InferenceServerClient(endpoint, **client_kwargs(self.options))
            )
        return client

    def _ensure_contract(
        self, client: TritonClient, endpoint: str, model: str, timeout: float, call: str | None = None
    ) -> None:
        """``model`` serves the SDK's contract of ``call`` (default: ``model``; a test's treatment serves its
        public model's)."""
        if (endpoint, model) in self._checked:
            return
        meta = client.get_model_metadata(model, as_json=True, client_timeout=timeout, headers=self._headers)
        check_metadata(call or model, meta, endpoint)
        self._checked.add((endpoint, model))

    def _with_retries(
        self, fn: Callable[[TritonClient, str, CallPlan], T], timeout_s: float | None
    ) -> tuple[T, str, CallPlan]:
        plan = CallPlan(self._pool, self.options, timeout_s)
        error: RankingError | None = None
        while True:
            endpoint = plan.next_endpoint(error)
            try:
                result = fn(self._client(endpoint), endpoint, plan)
                self._pool.mark_up(endpoint)
                return result, endpoint, plan
            except InferenceServerException as exc:
                error = from_triton(exc, endpoint)
            time.sleep(plan.on_error(error))

    def _infer(
        self,
        client: TritonClient,
        endpoint: str,
        model: str,
        inputs: list[grpcclient.InferInput],
        plan: CallPlan,
        parameters: dict[str, str] | None = None,
    ) -> InferResult:
        """One inference RPC. The client waits until the call's deadline; the RPC's gRPC deadline is
        ``cancel_grace_s`` later, so Triton is not sent a cancellation for a request it is finishing."""
        wait = plan.attempt_timeout()
        grace = self.options.cancel_grace_s
        if grace <= 0:
            return client.infer(model, inputs, client_timeout=wait, headers=self._headers, parameters=parameters)
        done = threading.Event()
        box: list[tuple[InferResult, InferenceServerException | None, float]] = []

        def callback(result: InferResult, error: InferenceServerException | None) -> None:
            box.append((result, error, time.monotonic()))
            done.set()
            self._late.discard(done)

        client.async_infer(
            model, inputs, callback, client_timeout=wait + grace, headers=self._headers, parameters=parameters
        )
        if not done.wait(wait):
            self._late.add(done)
            if done.is_set():  # finished between the wait and the add
                self._late.discard(done)
            raise plan.deadline_error(endpoint)
        result, error, arrived = box[0]
        if arrived > plan.deadline:  # the answer came late; this thread only looked after it (descheduled)
            self._late_answers += 1
            raise plan.deadline_error(endpoint)
        if error is not None:
            raise error
        return result

    def _rank(
        self,
        model: str,
        inputs: list[grpcclient.InferInput],
        timeout_s: float | None,
        keys: dict[int, str] | None = None,
        parameters: dict[str, str] | None = None,
        unit: int = 0,
    ) -> RankingResult:
        def infer(client: TritonClient, endpoint: str, plan: CallPlan) -> InferResult:
            if self._splits.stale(model):
                config = client.get_model_config(
                    model, as_json=True, client_timeout=plan.attempt_timeout(), headers=self._headers
                )
                self._splits.learn(model, config)
            target = self._splits.target(model, unit)
            if self.options.check_contract:
                self._ensure_contract(client, endpoint, target, plan.attempt_timeout(), model)
            if target == model:
                return self._infer(client, endpoint, model, inputs, plan, parameters)
            try:
                return self._infer(client, endpoint, target, inputs, plan, parameters)
            except InferenceServerException as exc:  # the test stopped (or its treatment failed): the control
                if isinstance(from_triton(exc, endpoint), InvalidRequest):
                    raise
                self._splits.forget(model)
                return self._infer(client, endpoint, model, inputs, plan, parameters)

        result, endpoint, plan = self._with_retries(infer, timeout_s)
        response = result.get_response()
        return RankingResult(
            parse_items(
                result.as_numpy("TOP_ITEM_IDS"), result.as_numpy("TOP_SCORES"), keys, result.as_numpy("TOP_ITEM_KEYS")
            ),
            model=model,
            model_version=response.model_version,
            endpoint=endpoint,
            latency_ms=plan.elapsed_ms(),
            attempts=plan.attempts,
            **listing_fields(result),
        )

    def _probe(self, endpoint: str, method: str, timeout_s: float | None) -> bool:
        try:
            return bool(
                getattr(self._client(endpoint), method)(
                    headers=self._headers, client_timeout=timeout_s or self.options.timeout_s
                )
            )
        except InferenceServerException:
            return False

"""The asyncio client: ``AsyncRankingClient`` mirrors ``RankingClient`` method for method."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import tritonclient.grpc.aio as aiogrpc
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
from shoprank_client.sync import InferResult, TritonClient, client_kwargs
from shoprank_client.types import AnyRequest, ClientOptions, RankingResult, call_of

T = TypeVar("T")


class AsyncRankingClient:
    """asyncio twin of :class:`shoprank_client.RankingClient`: same constructor, same methods, awaitable.

    >>> async with AsyncRankingClient("dns:triton-headless.shop.svc:8001", timeout_s=0.3) as client:
    ...     result = await client.search(42, "wireless headphones", [101, 102, 103], k=2)
    """

    def __init__(self, endpoints: str | Sequence[str], options: ClientOptions | None = None, **overrides: Any) -> None:
        if options is not None and overrides:
            raise ValueError("pass either options= or keyword overrides, not both")
        self.options = options or ClientOptions(**overrides)
        self._pool = EndpointPool(endpoints, self.options)
        self._clients: dict[str, aiogrpc.InferenceServerClient] = {}
        self._checked: set[tuple[str, str]] = set()
        self._splits = Splits(self.options.experiment_refresh_s)  # the server's online tests, per model
        self._headers = dict(self.options.headers) or None
        self._late: set[asyncio.Future[InferResult]] = set()  # RPCs past the caller's deadline, left to finish

    async def search(
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
        return await self._rank(
            model, inputs, timeout_s, keys, params, unit_id(user_id if split_by is None else split_by)
        )

    async def recommend(
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
        """Top ``k`` of ``candidates`` for ``user_id`` without a query."""
        model, inputs, keys = build_inputs(user_id, candidates, k)
        params = options_parameter(filters, per_group, offset, sort, facets)
        return await self._rank(
            model, inputs, timeout_s, keys, params, unit_id(user_id if split_by is None else split_by)
        )

    async def search_catalog(
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
        return await self._rank(
            model, inputs, timeout_s, None, params, unit_id(user_id if split_by is None else split_by)
        )

    async def recommend_catalog(
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
        return await self._rank(
            model, inputs, timeout_s, None, params, unit_id(user_id if split_by is None else split_by)
        )

    async def rank_many(
        self,
        requests: Sequence[AnyRequest],
        timeout_s: float | None = None,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
    ) -> list[RankingResult | RankingError]:
        """Many requests concurrently (at most ``max_concurrency`` in flight); results in request order. Each
        request names its call and carries that method's keywords (``RankingClient.rank_many``)."""
        gate = asyncio.Semaphore(max(1, max_concurrency))

        async def one(req: AnyRequest) -> RankingResult | RankingError:
            async with gate:
                try:
                    method, keywords = call_of(req)
                    result: RankingResult = await getattr(self, method)(**keywords, timeout_s=timeout_s)
                    return result
                except RankingError as err:
                    if return_exceptions:
                        return err
                    raise

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def is_live(self, timeout_s: float | None = None) -> bool:
        """True if any endpoint's server is live."""
        return any([await self._probe(e, "is_server_live", timeout_s) for e in self._pool.endpoints()])

    async def is_ready(self, timeout_s: float | None = None) -> bool:
        """True if any endpoint's server is ready (every model loaded)."""
        return any([await self._probe(e, "is_server_ready", timeout_s) for e in self._pool.endpoints()])

    async def health(self, timeout_s: float | None = None) -> dict[str, bool]:
        """Readiness per endpoint (after DNS expansion)."""
        return {e: await self._probe(e, "is_server_ready", timeout_s) for e in self._pool.endpoints()}

    async def model_version(self, model: str = SEARCH_MODEL, timeout_s: float | None = None) -> str:
        """The newest version the server reports for ``model``."""

        async def fetch(c: TritonClient, e: str, plan: CallPlan) -> dict[str, Any]:
            meta: dict[str, Any] = await c.get_model_metadata(
                model, as_json=True, client_timeout=plan.attempt_timeout(), headers=self._headers
            )
            return meta

        meta = (await self._with_retries(fetch, timeout_s))[0]
        return str(max(meta.get("versions", ["?"]), key=lambda v: (len(v), v)))

    async def check(self, timeout_s: float | None = None) -> None:
        """Fail fast: raise ContractMismatch if a served ensemble differs from what the SDK sends."""
        for model in CONTRACT:  # the re-ranking and the catalogue ensembles

            async def verify(c: TritonClient, e: str, plan: CallPlan, m: str = model) -> None:
                await self._ensure_contract(c, e, m, plan.attempt_timeout())

            await self._with_retries(verify, timeout_s)

    async def close(self) -> None:
        if self._late:  # let late RPCs finish (bounded by their gRPC deadline) rather than cancel them
            await asyncio.wait(list(self._late), timeout=self.options.cancel_grace_s + self.options.timeout_s)
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def __aenter__(self) -> AsyncRankingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self, endpoint: str) -> aiogrpc.InferenceServerClient:
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients.setdefault(
                endpoint, aiogrpc.InferenceServerClient(endpoint, **client_kwargs(self.options))
            )
        return client

    async def _ensure_contract(
        self, client: TritonClient, endpoint: str, model: str, timeout: float, call: str | None = None
    ) -> None:
        """``model`` serves the SDK's contract of ``call`` (default: ``model``; a test's treatment serves its
        public model's)."""
        if (endpoint, model) in self._checked:
            return
        meta = await client.get_model_metadata(model, as_json=True, client_timeout=timeout, headers=self._headers)
        check_metadata(call or model, meta, endpoint)
        self._checked.add((endpoint, model))

    async def _with_retries(
        self, fn: Callable[[TritonClient, str, CallPlan], Awaitable[T]], timeout_s: float | None
    ) -> tuple[T, str, CallPlan]:
        plan = CallPlan(self._pool, self.options, timeout_s)
        error: RankingError | None = None
        while True:
            endpoint = plan.next_endpoint(error)
            try:
                result = await fn(self._client(endpoint), endpoint, plan)
                self._pool.mark_up(endpoint)
                return result, endpoint, plan
            except InferenceServerException as exc:
                error = from_triton(exc, endpoint)
            await asyncio.sleep(plan.on_error(error))

    async def _infer(
        self,
        client: TritonClient,
        endpoint: str,
        model: str,
        inputs: list[aiogrpc.InferInput],
        plan: CallPlan,
        parameters: dict[str, str] | None = None,
    ) -> InferResult:
        """Mirror of ``RankingClient._infer``: wait until the deadline, let a late RPC finish unseen."""
        wait = plan.attempt_timeout()
        grace = self.options.cancel_grace_s
        if grace <= 0:
            return await client.infer(model, inputs, client_timeout=wait, headers=self._headers, parameters=parameters)
        task = asyncio.ensure_future(
            client.infer(model, inputs, client_timeout=wait + grace, headers=self._headers, parameters=parameters)
        )
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait)
        except asyncio.TimeoutError:
            self._late.add(task)
            task.add_done_callback(self._forget_late)
            raise plan.deadline_error(endpoint) from None

    def _forget_late(self, task: asyncio.Future[InferResult]) -> None:
        self._late.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure is expected and needs no warning

    async def _rank(
        self,
        model: str,
        inputs: list[aiogrpc.InferInput],
        timeout_s: float | None,
        keys: dict[int, str] | None = None,
        parameters: dict[str, str] | None = None,
        unit: int = 0,
    ) -> RankingResult:
        async def infer(client: TritonClient, endpoint: str, plan: CallPlan) -> InferResult:
            if self._splits.stale(model):
                config = await client.get_model_config(
                    model, as_json=True, client_timeout=plan.attempt_timeout(), headers=self._headers
                )
                self._splits.learn(model, config)
            target = self._splits.target(model, unit)
            if self.options.check_contract:
                await self._ensure_contract(client, endpoint, target, plan.attempt_timeout(), model)
            if target == model:
                return await self._infer(client, endpoint, model, inputs, plan, parameters)
            try:
                return await self._infer(client, endpoint, target, inputs, plan, parameters)
            except InferenceServerException as exc:  # the test stopped (or its treatment failed): the control
                if isinstance(from_triton(exc, endpoint), InvalidRequest):
                    raise
                self._splits.forget(model)
                return await self._infer(client, endpoint, model, inputs, plan, parameters)

        result, endpoint, plan = await self._with_retries(infer, timeout_s)
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

    async def _probe(self, endpoint: str, method: str, timeout_s: float | None) -> bool:
        try:
            return bool(
                await getattr(self._client(endpoint), method)(
                    headers=self._headers, client_timeout=timeout_s or self.options.timeout_s
                )
            )
        except InferenceServerException:
            return False

"""Typed requests, results and options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Union

from shoprank_client.errors import InvalidRequest
from shoprank_client.listing import FacetValue, Filters, FilterTree


class RankedItem(NamedTuple):
    """One ranked candidate. A NamedTuple: immutable, and cheap to build ten of per call."""

    item_id: int | str  # the caller's own id: a string when the request sent strings
    score: float


@dataclass(frozen=True)
class RankingResult:
    """The ranked top-k, best first."""

    items: tuple[RankedItem, ...]
    model: str  # the call that answered: search, recommend, search_catalog or recommend_catalog
    model_version: str  # the served version that answered
    endpoint: str  # the server that answered
    latency_ms: float  # measured by the client, retries included
    attempts: int = 1
    server_latency_ms: float | None = None  # Triton's responses carry no per-request timing: None
    # beside items: the variant group each represents (the shop's item_group_id, or the item's own id when it
    # has none) and how many of that group's variants matched; empty from a release built before groups
    groups: tuple[str, ...] = ()
    group_matches: tuple[int, ...] = ()
    matches: int | None = None  # results there are to page through (groups, or items with per_group=0)
    facets: Mapping[str, tuple[FacetValue, ...]] = field(default_factory=dict)  # the facets asked for
    info: Mapping[str, Any] = field(default_factory=dict)  # the server's whole RESULT_INFO
    # the release that answered (the arm of an online test: log it with the shop's events); None from a
    # release built before releases said so
    release: int | None = None

    @property
    def item_ids(self) -> list[int | str]:
        return [i.item_id for i in self.items]

    @property
    def scores(self) -> list[float]:
        return [i.score for i in self.items]


# The requests of ``rank_many``: each names one call and carries that method's keywords, the listing ones
# (shoprank_client.listing) included, with the same defaults; ``call_of`` turns one into the method's arguments.


@dataclass(frozen=True)
class SearchRequest:
    user_id: int | str  # a string id is sent as its stable INT64 (shoprank_client.ids)
    query: str | bytes
    candidates: Sequence[int | str]
    k: int = 10
    filters: Filters | FilterTree | None = None
    per_group: int | None = None
    offset: int = 0
    sort: str = "relevance"
    facets: Sequence[str] = ()
    understand: str | None = None
    understand_fields: Sequence[str] | None = None
    split_by: int | str | None = None


@dataclass(frozen=True)
class RecommendRequest:
    user_id: int | str  # a string id is sent as its stable INT64 (shoprank_client.ids)
    candidates: Sequence[int | str]
    k: int = 10
    filters: Filters | FilterTree | None = None
    per_group: int | None = None
    offset: int = 0
    sort: str = "relevance"
    facets: Sequence[str] = ()
    split_by: int | str | None = None


@dataclass(frozen=True)
class SearchCatalogRequest:
    """A search page: the whole catalogue for ``query``."""

    user_id: int | str
    query: str | bytes
    k: int = 10
    exclude: Sequence[int | str] = ()
    filters: Filters | FilterTree | None = None
    per_group: int | None = None
    offset: int = 0
    sort: str = "relevance"
    facets: Sequence[str] = ()
    understand: str | None = None
    understand_fields: Sequence[str] | None = None
    split_by: int | str | None = None


@dataclass(frozen=True)
class RecommendCatalogRequest:
    """A homepage strip or a product page (``context``: the items being viewed) from the whole catalogue."""

    user_id: int | str
    k: int = 10
    context: Sequence[int | str] = ()
    exclude: Sequence[int | str] = ()
    filters: Filters | FilterTree | None = None
    per_group: int | None = None
    offset: int = 0
    sort: str = "relevance"
    facets: Sequence[str] = ()
    include_own_group: bool = False
    split_by: int | str | None = None


AnyRequest = Union[SearchRequest, RecommendRequest, SearchCatalogRequest, RecommendCatalogRequest]
_METHODS = (
    (SearchRequest, "search"),
    (RecommendRequest, "recommend"),
    (SearchCatalogRequest, "search_catalog"),
    (RecommendCatalogRequest, "recommend_catalog"),
)


def call_of(request: AnyRequest) -> tuple[str, dict[str, Any]]:
    """The client method a request names and its keywords (every field of the request)."""
    for kind, method in _METHODS:
        if type(request) is kind:
            return method, {f.name: getattr(request, f.name) for f in fields(request)}
    raise InvalidRequest(
        f"requests: expected SearchRequest, RecommendRequest, SearchCatalogRequest or RecommendCatalogRequest, "
        f"got {type(request).__name__}",
        "requests",
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for retryable errors only, always inside the deadline."""

    max_attempts: int = 3  # attempts in all, the first included; 1 = no retries
    initial_backoff_s: float = 0.01
    max_backoff_s: float = 0.2
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: backoffs must be >= 0 and multiplier >= 1")

    def backoff_cap(self, retry_number: int) -> float:
        """Upper bound of the sleep before retry ``retry_number`` (1-based); the sleep is uniform in [0, cap]."""
        return min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry_number - 1))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class TlsConfig:
    """TLS to Triton (or to a proxy in front of it). Give ``client_cert``/``client_key`` for mutual TLS.
    All three are file paths (PEM)."""

    root_certificates: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("TlsConfig: mutual TLS needs both client_cert and client_key")


@dataclass(frozen=True)
class ClientOptions:
    """Everything about how the SDK talks to the servers. Every call may override ``timeout_s``."""

    timeout_s: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    balance: str = "round_robin"  # or "failover": always the first healthy endpoint
    down_cooldown_s: float = 2.0  # an endpoint that failed is skipped this long
    dns_refresh_s: float = 30.0  # re-resolve "dns:" endpoints (headless Services) this often
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    tls: TlsConfig | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    check_contract: bool = True  # compare the served model metadata at first use
    # The caller's deadline is enforced by the client; the RPC's own gRPC deadline is this much longer,
    # so a late request finishes on the server instead of being cancelled. Triton 24.10 can crash when
    # a cancellation races the response (triton-inference-server/server#7368, fixed in 24.12). Set 0 to
    # send the exact deadline to servers that have the fix.
    cancel_grace_s: float = 2.0
    # An online test the server runs (shoprank_client.experiment): its config is re-read this often; 0 never
    # reads it (every call goes to the control)
    experiment_refresh_s: float = 10.0

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("ClientOptions.timeout_s must be > 0")
        if self.cancel_grace_s < 0:
            raise ValueError("ClientOptions.cancel_grace_s must be >= 0")
        if self.experiment_refresh_s < 0:
            raise ValueError("ClientOptions.experiment_refresh_s must be >= 0")
        if self.balance not in ("round_robin", "failover"):
            raise ValueError("ClientOptions.balance must be 'round_robin' or 'failover'")

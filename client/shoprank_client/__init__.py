"""shoprank-client: typed, resilient gRPC client for the shoprank ranking ensembles on Triton.

from shoprank_client import RankingClient
client = RankingClient("127.0.0.1:8001", timeout_s=0.5)
result = client.search(user_id=5000007, query="wireless headphones", candidates=[100003, 100011], k=1)
"""

from shoprank_client.aio import AsyncRankingClient
from shoprank_client.errors import (
    ContractMismatch,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RankingError,
    ServerError,
    Unavailable,
)
from shoprank_client.listing import FacetValue, Filters, all_of, any_of, none_of
from shoprank_client.sync import RankingClient
from shoprank_client.types import (
    NO_RETRY,
    ClientOptions,
    RankedItem,
    RankingResult,
    RecommendCatalogRequest,
    RecommendRequest,
    RetryPolicy,
    SearchCatalogRequest,
    SearchRequest,
    TlsConfig,
)

__all__ = [
    "AsyncRankingClient",
    "RankingClient",
    "ClientOptions",
    "RetryPolicy",
    "NO_RETRY",
    "TlsConfig",
    "SearchRequest",
    "RecommendRequest",
    "SearchCatalogRequest",
    "RecommendCatalogRequest",
    "RankingResult",
    "RankedItem",
    "RankingError",
    "InvalidRequest",
    "Unavailable",
    "Overloaded",
    "DeadlineExceeded",
    "ServerError",
    "ContractMismatch",
    "Filters",
    "FacetValue",
    "any_of",
    "all_of",
    "none_of",
]
__version__ = "0.1.0"

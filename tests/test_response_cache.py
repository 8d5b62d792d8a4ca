"""Triton's response cache on the query encoder, on the real tritonserver (shared fixture).

The text_encoder config enables ``response_cache`` and the launcher starts the server with a local
cache (``--cache-config local,size=...``): a repeated query is answered from the cache, with the
same ranking, and a new query is not.
"""

import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from builders.repository.model_specs import spec_by_name
from runtime import contract as c
from server.raw_requests import call

pytestmark = pytest.mark.triton


def encoder_cache_counts(client) -> tuple[int, int]:
    stats = client.get_inference_statistics(c.TEXT_ENCODER).model_stats[0].inference_stats
    return stats.cache_hit.count, stats.cache_miss.count


def test_encoder_config_enables_the_cache():
    assert spec_by_name()[c.TEXT_ENCODER].response_cache


def test_a_repeated_query_is_served_from_the_cache_with_the_same_ranking(triton_server, pipeline, known_ids):
    """A query the query statistics do not know is embedded twice per request: by search_features through
    BLS (to borrow statistics), then by the ensemble's encoder step, which the cache answers. A head query
    is embedded once, by the ensemble alone."""
    users, items = known_ids
    query = f"running shoes {uuid.uuid4().hex[:8]}".encode()  # new to this server and to the statistics
    head = next(q.encode() for q in ("running shoes", "laptop", "tent") if pipeline.search_store.queries.row(q) >= 0)
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        hits0, misses0 = encoder_cache_counts(client)
        first = call(client, int(users[0]), items[:20], 5, query)
        hits1, misses1 = encoder_cache_counts(client)
        assert (hits1, misses1) == (hits0 + 1, misses0 + 1)  # BLS: a miss; the ensemble's step: a hit
        again = call(client, int(users[1]), items[:20], 5, query)  # another user, same query: hits only
        hits2, misses2 = encoder_cache_counts(client)
        assert (hits2, misses2) == (hits1 + 2, misses1)
        call(client, int(users[1]), items[:20], 5, head)
        hits3, misses3 = encoder_cache_counts(client)
        assert hits3 + misses3 == hits2 + misses2 + 1  # a head query: no BLS call
    want = pipeline.search(int(users[0]), query, items[:20], 5)
    np.testing.assert_array_equal(first[0], want[0])
    np.testing.assert_allclose(first[1], want[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(again[0], pipeline.search(int(users[1]), query, items[:20], 5)[0])

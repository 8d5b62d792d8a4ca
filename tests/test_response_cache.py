"""The query embedding's cache on the real tritonserver, in both layouts of the cpu target.

Ensemble layout: the text_encoder config enables Triton's ``response_cache`` and the launcher starts the
server with a local cache (``--cache-config local,size=...``): a repeated query is answered from the cache,
with the same ranking, and a new query is not. Fused layout (the shared server): the fused models keep
the embeddings in process (``runtime/fused.py``) and count their lookups in ``shoprank_query_cache_total``.
"""

import time
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from benchmarks.pipeline import query_cache_counts
from builders.repository.model_specs import FUSED_INSTANCES, spec_by_name
from runtime import contract as c
from runtime.counters import FLUSH_S
from runtime.fused import fused_name
from server.raw_requests import call

pytestmark = pytest.mark.triton


def encoder_cache_counts(client) -> tuple[int, int]:
    stats = client.get_inference_statistics(c.TEXT_ENCODER).model_stats[0].inference_stats
    return stats.cache_hit.count, stats.cache_miss.count


def test_encoder_config_enables_the_cache():
    assert spec_by_name()[c.TEXT_ENCODER].response_cache


def test_a_repeated_query_is_served_from_the_cache_with_the_same_ranking(ensemble_server, pipeline, known_ids):
    """A query the query statistics do not know is embedded twice per request: by search_features through
    BLS (to borrow statistics), then by the ensemble's encoder step, which the cache answers. A head query
    is embedded once, by the ensemble alone."""
    users, items = known_ids
    query = f"running shoes {uuid.uuid4().hex[:8]}".encode()  # new to this server and to the statistics
    head = next(q.encode() for q in ("running shoes", "laptop", "tent") if pipeline.search_store.queries.row(q) >= 0)
    with grpcclient.InferenceServerClient(ensemble_server.grpc_url) as client:
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


def fused_cache_counts(server, lookups: float = 0) -> tuple[float, float]:
    """The fused search's (hits, misses) once they count at least ``lookups`` in all: the counts reach the
    metrics port in the background (``runtime/counters.py``, at most ``FLUSH_S`` late)."""
    deadline = time.monotonic() + 10 * FLUSH_S
    while True:
        hits, misses = query_cache_counts(server.metrics_url, fused_name(c.SEARCH_ENSEMBLE))
        if hits + misses >= lookups or time.monotonic() > deadline:
            return hits, misses
        time.sleep(0.05)


def test_the_fused_layout_embeds_a_query_once_per_instance(triton_server, pipeline, known_ids):
    """A new query: the first request embeds it once (the statistics' borrowing and the ranking share it);
    repeated on the same instance, it is a hit. Two instances serve in turn, so each may embed it once."""
    users, items = known_ids
    query = f"running shoes {uuid.uuid4().hex[:8]}".encode()
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        time.sleep(2 * FLUSH_S)  # the earlier tests' lookups counted
        hits0, misses0 = fused_cache_counts(triton_server)
        first = call(client, int(users[0]), items[:20], 5, query)
        hits1, misses1 = fused_cache_counts(triton_server, hits0 + misses0 + 2)
        assert (hits1, misses1) == (hits0 + 1, misses0 + 1)  # the borrowing: a miss; the ranking: a hit
        for user in users[1:5]:
            np.testing.assert_array_equal(
                call(client, int(user), items[:20], 5, query)[0], pipeline.search(int(user), query, items[:20], 5)[0]
            )
        hits2, misses2 = fused_cache_counts(triton_server, hits1 + misses1 + 8)
        assert misses2 - misses1 <= FUSED_INSTANCES - 1  # at most the other instance's first time
        assert hits2 + misses2 == hits1 + misses1 + 8  # two lookups per request
    want = pipeline.search(int(users[0]), query, items[:20], 5)
    np.testing.assert_array_equal(first[0], want[0])
    np.testing.assert_allclose(first[1], want[1], rtol=1e-5, atol=1e-5)

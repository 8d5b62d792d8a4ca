"""Integration: the real tritonserver serving the small repository, called with raw tritonclient."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from runtime import contract as c
from runtime.repository import layout
from server.raw_requests import call, request_inputs, tensor

pytestmark = [pytest.mark.triton, pytest.mark.slow]
SCORE_TOLERANCE = 1e-4  # served vs in-process scores: same ONNX files, same code; only float noise


@pytest.fixture(scope="module", params=["fused", "ensemble"])
def served(request):
    """Every test here runs on both layouts of the cpu target: the fused one (the default, shared server)
    and the ensemble one."""
    return request.getfixturevalue("triton_server" if request.param == "fused" else "ensemble_server")


@pytest.fixture(scope="module")
def client(served):
    with grpcclient.InferenceServerClient(served.grpc_url) as cl:
        yield cl


def random_request(rng, users, items, queries):
    n = int(rng.integers(1, 120))
    cands = rng.choice(items, size=n, replace=False)
    if rng.random() < 0.2:  # a few ids the catalogue does not know
        cands = np.unique(np.concatenate([cands, 10**9 + rng.integers(0, 1000, 3)]))
        rng.shuffle(cands)
    user = int(rng.choice(users)) if rng.random() < 0.8 else 42  # 42: an unknown user
    return user, cands, int(rng.integers(1, 20)), queries[int(rng.integers(len(queries)))]


def test_the_layouts_served_models_are_ready_and_its_parts_not_loaded(client, served):
    lay = layout(served.options.model_repository)
    for name in lay.served:
        assert client.is_model_ready(name), name
    for name in lay.parts:  # the fused layout's: read by the fused models, never loaded
        assert not client.is_model_ready(name), name
    assert set(lay.ensembles) == {c.SEARCH_ENSEMBLE, c.RECOMMEND_ENSEMBLE, c.SEARCH_CATALOG, c.RECOMMEND_CATALOG}


def test_served_search_equals_in_process_pipeline(client, pipeline, known_ids, rng):
    users, items = known_ids
    queries = [
        "wireless headphones",
        "helix red running shoes",
        "laptop",
        "cheap waterproof tent for 4",
        "größe 42 laufschuhe",
        "zzqx",
    ]
    for _ in range(40):
        user, cands, k, query = random_request(rng, users, items, queries)
        got_ids, got_scores = call(client, user, cands, k, query.encode())
        want_ids, want_scores = pipeline.search(user, query, cands, k)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_allclose(got_scores, want_scores, atol=SCORE_TOLERANCE, rtol=0)
        assert len(got_ids) == min(k, len(cands)) and np.all(np.diff(got_scores) <= 0)


def test_served_recommend_equals_in_process_pipeline(client, pipeline, known_ids, rng):
    users, items = known_ids
    for _ in range(20):
        user, cands, k, _ = random_request(rng, users, items, ["x"])
        got_ids, got_scores = call(client, user, cands, k)
        want_ids, want_scores = pipeline.recommend(user, cands, k)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_allclose(got_scores, want_scores, atol=SCORE_TOLERANCE, rtol=0)


def test_results_are_a_subset_of_the_candidates(client, known_ids):
    users, items = known_ids
    ids, _ = call(client, int(users[0]), items[:50], 50, b"running shoes")
    assert sorted(ids.tolist()) == sorted(items[:50].tolist())


def test_cold_start_user_and_unknown_items_still_get_a_ranking(client, known_ids):
    _, items = known_ids
    cands = np.concatenate([items[:5], [10**12, 10**12 + 1]])
    ids, scores = call(client, 987654321, cands, 7, b"laptop")
    assert set(ids.tolist()) == set(cands.tolist()) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    "query, items, k, field, problem",
    [
        (b"\xff\xfe", [1, 2], 3, "QUERY", "not valid UTF-8"),
        (b"  ", [1, 2], 3, "QUERY", "empty"),
        (b"x" * 2000, [1, 2], 3, "QUERY", "longer than the limit"),
        (b"shoes", [], 3, "ITEM_IDS", "empty"),
        (b"shoes", list(range(c.MAX_CANDIDATES + 1)), 3, "ITEM_IDS", "more than the limit"),
        (b"shoes", [4, 4], 3, "ITEM_IDS", "duplicate id 4"),
        (b"shoes", [1, 2], 0, "TOP_K", "must be at least 1"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(client, query, items, k, field, problem):
    with pytest.raises(InferenceServerException) as err:
        call(client, 1, items, k, query)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert f"{field}: " in err.value.message() and problem in err.value.message()


def test_wrong_type_or_shape_is_rejected_by_triton_naming_the_tensor(client):
    inputs = request_inputs(1, [1, 2], 2, b"shoes")
    inputs[2] = tensor(c.ITEM_IDS, np.array([1, 2], np.int32), "INT32")
    with pytest.raises(InferenceServerException) as err:
        client.infer(c.SEARCH_ENSEMBLE, inputs)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and c.ITEM_IDS in err.value.message()
    inputs = request_inputs(1, [1, 2], 2, b"shoes")
    inputs[0] = tensor(c.USER_ID, np.array([1, 2], np.int64), "INT64")
    with pytest.raises(InferenceServerException) as err:
        client.infer(c.SEARCH_ENSEMBLE, inputs)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and c.USER_ID in err.value.message()
    with pytest.raises(InferenceServerException, match="unexpected inference input|expected 4 inputs"):
        client.infer(c.SEARCH_ENSEMBLE, inputs[:3])


def test_server_keeps_serving_after_bad_requests(client, known_ids):
    users, items = known_ids
    before = call(client, int(users[1]), items[:30], 5, b"laptop")
    for _ in range(10):
        with pytest.raises(InferenceServerException):
            call(client, 1, [], 3, b"\xff")
    after = call(client, int(users[1]), items[:30], 5, b"laptop")
    np.testing.assert_array_equal(before[0], after[0])
    assert client.is_server_ready()


def test_concurrent_requests_are_answered_correctly(served, pipeline, known_ids):
    users, items = known_ids
    reqs = [
        (int(users[i % len(users)]), items[i : i + 40], 10, ["laptop", "red t-shirt", "tent"][i % 3]) for i in range(48)
    ]

    def one(r):
        with grpcclient.InferenceServerClient(served.grpc_url) as cl:
            return call(cl, r[0], r[1], r[2], r[3].encode())

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, reqs))
    for r, (ids, scores) in zip(reqs, results, strict=True):
        want_ids, want_scores = pipeline.search(*r[:1], r[3], r[1], r[2])
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, atol=SCORE_TOLERANCE, rtol=0)

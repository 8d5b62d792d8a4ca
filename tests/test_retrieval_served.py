"""search_catalog and recommend_catalog on the real tritonserver, through the SDK (sync and asyncio):
the served answers equal the in-process pipeline's, and bad requests get errors naming the field."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shoprank_client import AsyncRankingClient, InvalidRequest, RankingClient

pytestmark = [pytest.mark.triton]


@pytest.fixture(scope="module")
def client(triton_server):

    with RankingClient(triton_server.grpc_url, timeout_s=10) as c:
        yield c


def _same(served, ids, scores):
    assert list(served.item_ids) == ids.tolist()
    np.testing.assert_allclose([i.score for i in served.items], scores, atol=1e-4)


def test_search_catalog_serves_the_pipelines_answer(client, pipeline, known_ids):
    users, _ = known_ids
    for user, query in ((int(users[0]), "running shoes"), (-5, "kabellose Kopfhörer"), (int(users[9]), "lamp")):
        ids, scores = pipeline.search_catalog(user, query, 10)
        served = client.search_catalog(user, query, k=10)
        _same(served, ids, scores)
        assert served.model == "search_catalog"
    excluded = client.search_catalog(int(users[0]), "running shoes", k=10, exclude=list(ids[:2]))
    assert not set(ids[:2].tolist()) & set(excluded.item_ids)


def test_recommend_catalog_serves_the_pipelines_answer(client, pipeline, known_ids):
    users, items = known_ids
    context = items[5:6]
    ids, scores = pipeline.recommend_catalog(int(users[3]), 10, context=context, exclude=items[:3])
    served = client.recommend_catalog(int(users[3]), k=10, context=[int(context[0])], exclude=items[:3].tolist())
    _same(served, ids, scores)
    assert int(context[0]) not in served.item_ids and not set(items[:3].tolist()) & set(served.item_ids)
    cold = client.recommend_catalog(-77, k=5)
    assert len(cold.items) == 5  # a user the build never saw: the popular items in stock


def test_the_async_client_mirrors_the_catalogue_calls(triton_server, client, known_ids):

    users, items = known_ids

    async def run():
        async with AsyncRankingClient(triton_server.grpc_url, timeout_s=10) as aclient:
            return (
                await aclient.search_catalog(int(users[1]), "desk lamp", k=7, exclude=[int(items[0])]),
                await aclient.recommend_catalog(int(users[1]), k=7, context=[int(items[1])]),
            )

    s, r = asyncio.run(run())
    assert s.item_ids == client.search_catalog(int(users[1]), "desk lamp", k=7, exclude=[int(items[0])]).item_ids
    assert r.item_ids == client.recommend_catalog(int(users[1]), k=7, context=[int(items[1])]).item_ids


def test_bad_catalogue_requests_name_the_field_and_the_server_keeps_serving(client, triton_server, known_ids):
    import tritonclient.grpc as grpcclient

    users, _ = known_ids
    with pytest.raises(InvalidRequest, match="^exclude: expected a flat list"):
        client.search_catalog(1, "shoes", exclude=[[1, 2]])
    with pytest.raises(InvalidRequest, match="^context: 1001 ids is more than the limit"):
        client.recommend_catalog(1, context=list(range(1001)))
    raw = grpcclient.InferenceServerClient(triton_server.grpc_url)
    inputs = []
    for name, value, dtype in (
        ("USER_ID", np.array([1], np.int64), "INT64"),
        ("QUERY", np.array([b"   "], object), "BYTES"),
        ("EXCLUDE_IDS", np.zeros(0, np.int64), "INT64"),
        ("TOP_K", np.array([3], np.int32), "INT32"),
    ):
        t = grpcclient.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        inputs.append(t)
    with pytest.raises(Exception, match="QUERY: empty") as err:
        raw.infer("search_catalog", inputs)
    assert "INVALID_ARGUMENT" in str(err.value)
    assert len(client.search_catalog(int(users[0]), "shoes", k=3).items) == 3
    client.check()  # the served catalogue ensembles match the SDK's contract

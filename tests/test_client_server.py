"""The client SDK against real tritonservers: every method, sync and async, and every error for real.

Over 400 lines on purpose: the sync and the asyncio client run the same cases against the same servers,
side by side, so a difference between the two shows in one file.
"""

import asyncio
import dataclasses
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from builders.repository.model_specs import spec_by_name
from runtime import contract as c
from server.launcher import ServerOptions, TritonServer, free_port
from shoprank_client import (
    NO_RETRY,
    AsyncRankingClient,
    ContractMismatch,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RankingClient,
    RecommendCatalogRequest,
    RecommendRequest,
    RetryPolicy,
    SearchCatalogRequest,
    SearchRequest,
    ServerError,
    TlsConfig,
    Unavailable,
)
from tests.helpers import add_python_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def ids(known_ids):
    users, items = known_ids
    return [int(u) for u in users[:20]], [int(i) for i in items]


@pytest.fixture(scope="module")
def client(triton_server):
    with RankingClient(triton_server.grpc_url, timeout_s=5) as cl:
        yield cl


def same(result, expected):
    want_ids, want_scores = expected
    assert result.item_ids == want_ids.tolist()
    np.testing.assert_allclose(result.scores, want_scores, atol=1e-4, rtol=0)


def test_sync_methods(client, pipeline, ids, triton_server):
    users, items = ids
    res = client.search(users[0], "wireless headphones", items[:80], k=7)
    same(res, pipeline.search(users[0], "wireless headphones", items[:80], 7))
    assert (res.model, res.model_version, res.endpoint, res.attempts) == ("search", "1", triton_server.grpc_url, 1)
    assert res.latency_ms > 0 and res.server_latency_ms is None
    same(client.recommend(users[1], items[:50], k=5), pipeline.recommend(users[1], items[:50], 5))
    batch = client.rank_many(
        [SearchRequest(users[2], "tent", items[:30], 3), RecommendRequest(users[3], items[:30], 4)]
    )
    same(batch[0], pipeline.search(users[2], "tent", items[:30], 3))
    same(batch[1], pipeline.recommend(users[3], items[:30], 4))
    assert client.is_live() and client.is_ready() and client.health() == {triton_server.grpc_url: True}
    assert client.model_version("search") == "1" and client.model_version("recommend") == "1"
    client.check()


def test_async_methods_mirror_the_sync_ones(pipeline, ids, triton_server):
    users, items = ids

    async def go():
        async with AsyncRankingClient(triton_server.grpc_url, timeout_s=5) as cl:
            same(
                await cl.search(users[0], "laptop", items[:40], k=6), pipeline.search(users[0], "laptop", items[:40], 6)
            )
            same(await cl.recommend(users[1], items[:40], k=6), pipeline.recommend(users[1], items[:40], 6))
            batch = await cl.rank_many(
                [SearchRequest(users[2], "backpack", items[:20], 2), RecommendRequest(users[2], items[:20], 2)]
            )
            same(batch[1], pipeline.recommend(users[2], items[:20], 2))
            assert await cl.is_live() and await cl.is_ready()
            assert await cl.health() == {triton_server.grpc_url: True}
            assert await cl.model_version("recommend") == "1"
            await cl.check()
            with pytest.raises(InvalidRequest):
                await cl.search(users[0], b"\xff", items[:3])

    asyncio.run(go())
    sync_names = {n for n in dir(RankingClient) if not n.startswith("_")}
    assert sync_names - {"__enter__", "__exit__"} == {n for n in dir(AsyncRankingClient) if not n.startswith("_")}


def test_rank_many_takes_every_call_with_its_listing_keywords(client, ids, triton_server):
    """A page that renders several answers at once: each of the four request kinds, with listing keywords,
    answers in rank_many as its own method does (sync and asyncio)."""
    users, items = ids
    requests = [
        SearchRequest(users[0], "tent", items[:60], 5, sort="price_asc", facets=["brand"]),
        RecommendRequest(users[1], items[:60], 4, offset=2),
        SearchCatalogRequest(users[2], "red t-shirt", 6, exclude=items[:3], understand="off", facets=["price"]),
        RecommendCatalogRequest(users[3], 5, context=[items[10]], filters={"in_stock": True}, per_group=0),
    ]
    alone = [
        client.search(users[0], "tent", items[:60], 5, sort="price_asc", facets=["brand"]),
        client.recommend(users[1], items[:60], 4, offset=2),
        client.search_catalog(users[2], "red t-shirt", 6, exclude=items[:3], understand="off", facets=["price"]),
        client.recommend_catalog(users[3], 5, context=[items[10]], filters={"in_stock": True}, per_group=0),
    ]

    def key(r):
        return (r.model, r.item_ids, r.groups, r.matches, dict(r.facets), r.info.get("sort"), r.info.get("offset"))

    assert [r.model for r in alone] == ["search", "recommend", "search_catalog", "recommend_catalog"]
    assert alone[0].facets["brand"] and alone[2].facets["price"] and alone[1].info["offset"] == 2
    assert [key(r) for r in client.rank_many(requests)] == [key(r) for r in alone]

    async def go():
        async with AsyncRankingClient(triton_server.grpc_url, timeout_s=5) as cl:
            return await cl.rank_many(requests, max_concurrency=2)

    assert [key(r) for r in asyncio.run(go())] == [key(r) for r in alone]
    with pytest.raises(InvalidRequest) as err:
        client.rank_many([("search", users[0])])
    assert err.value.field == "requests"


def test_many_concurrent_async_calls(pipeline, ids, triton_server):
    users, items = ids
    reqs = [
        SearchRequest(users[i % 20], ["tent", "red t-shirt", "laptop 16gb"][i % 3], items[i : i + 60], 10)
        for i in range(150)
    ]

    async def go():
        async with AsyncRankingClient(triton_server.grpc_url, timeout_s=30) as cl:
            return await cl.rank_many(reqs, max_concurrency=32)

    for req, res in zip(reqs, asyncio.run(go()), strict=True):
        same(res, pipeline.search(req.user_id, req.query, req.candidates, req.k))


def test_server_side_invalid_argument_keeps_the_message_and_field(client, ids):
    users, items = ids
    with pytest.raises(InvalidRequest) as err:
        client.search(users[0], b"\xff\xfe", items[:5])
    assert err.value.status == "INVALID_ARGUMENT" and err.value.field == "query"
    assert "QUERY: not valid UTF-8" in err.value.message


def test_client_side_invalid_request_sends_nothing(ids):
    with RankingClient(f"127.0.0.1:{free_port()}", timeout_s=0.5) as cl:  # nothing listens there
        with pytest.raises(InvalidRequest) as err:
            cl.search(1, "shoes", [])
    assert err.value.status is None


class _Recording(set):
    """The client's set of abandoned RPCs, recording every RPC the client gave up on while in flight."""

    def __init__(self):
        super().__init__()
        self.abandoned = 0

    def add(self, item):
        self.abandoned += 1
        super().add(item)


def test_deadline_shorter_than_the_work(client, ids, triton_server, monkeypatch):
    users, items = ids
    monkeypatch.setattr(client, "_late", _Recording())
    for n in range(5):
        with pytest.raises(DeadlineExceeded, match="deadline of 2 ms"):
            client.search(users[0], f"waterproof hiking boots {n} " * 5, items[:1000], 10, timeout_s=0.002)
        # on time, not after the work: the client raised while the RPC was still in flight (no wall clock), or,
        # where its thread was descheduled past the whole RPC, because the answer arrived after the deadline
        assert client._late.abandoned + client._late_answers == n + 1
        # the abandoned request (about 16 ms of work) finishes before the next starts: the next deadline is
        # then not measured by a client thread starved of the 2 cores by the server's other instance
        finished = time.monotonic() + 10
        while client._late and time.monotonic() < finished:
            time.sleep(0.005)
    assert client.search(users[0], "laptop", items[:10], 3).attempts == 1  # the client is still fine
    assert triton_server.process.poll() is None and client.is_ready()  # and so is the server


def test_async_deadline_and_exact_deadline_mode(ids, triton_server, pipeline):
    users, items = ids

    async def go():
        async with AsyncRankingClient(triton_server.grpc_url, timeout_s=5) as cl:
            with pytest.raises(DeadlineExceeded):
                await cl.search(users[0], "waterproof hiking boots " * 5, items[:1000], 10, timeout_s=0.002)
            return await cl.search(users[0], "laptop", items[:10], 3)

    assert asyncio.run(go()).attempts == 1
    # cancel_grace_s=0 sends the exact deadline as the gRPC deadline (for servers >= 24.12).
    with RankingClient(triton_server.grpc_url, timeout_s=5, cancel_grace_s=0) as exact:
        same(exact.search(users[1], "tent", items[:30], 4), pipeline.search(users[1], "tent", items[:30], 4))


def test_failover_from_a_killed_server_and_unavailable_when_all_are_down(small_repo, triton_server, ids, tmp_path):
    users, items = ids
    second = TritonServer(ServerOptions(model_repository=small_repo, log_file=tmp_path / "b.log")).start()
    try:
        cl = RankingClient([second.grpc_url, triton_server.grpc_url], timeout_s=5, balance="failover")
        assert cl.search(users[0], "laptop", items[:20], 3).endpoint == second.grpc_url
    finally:
        second.stop()
    res = cl.search(users[0], "laptop", items[:20], 3)
    assert res.endpoint == triton_server.grpc_url and res.attempts == 2
    assert cl.search(users[0], "laptop", items[:20], 3).attempts == 1  # the dead one is skipped for a while
    cl.close()
    with RankingClient(second.grpc_url, timeout_s=3, retry=RetryPolicy(max_attempts=2)) as only_dead:
        with pytest.raises(Unavailable) as err:
            only_dead.search(users[0], "laptop", items[:20], 3)
    assert err.value.endpoint == second.grpc_url
    with pytest.raises(Unavailable):
        only_dead.check()


def test_dns_endpoint_spreads_over_every_address(triton_server, ids):
    users, items = ids
    port = triton_server.grpc_url.rsplit(":", 1)[1]
    with RankingClient(f"dns:localhost:{port}", timeout_s=5) as cl:
        results = [cl.search(users[0], "tent", items[:10], 2) for _ in range(4)]
        assert {r.endpoint for r in results} >= {f"127.0.0.1:{port}"}
        assert f"127.0.0.1:{port}" in cl.health()


SLOW_SEARCH = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.1)
        out = []
        for r in requests:
            ids = pb_utils.get_input_tensor_by_name(r, "ITEM_IDS").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOP_ITEM_IDS", ids),
                                                   pb_utils.Tensor("TOP_SCORES", np.zeros(len(ids), np.float32))]))
        return out
"""


@pytest.fixture(scope="module")
def overload_server(tmp_path_factory):
    """A 'search' model (not an ensemble) that takes 100 ms and queues at most 1 request.

    Not the real ensemble: in Triton 24.10 an ensemble whose step rejects a request for a full queue
    hangs (fixed upstream in triton-inference-server/core#466, Feb 2026), see docs/serving.md.
    """
    repo = tmp_path_factory.mktemp("overload") / "repo"
    spec = dataclasses.replace(
        spec_by_name()[c.SEARCH_ENSEMBLE],
        platform="",
        backend="python",
        steps=(),
        instances=1,
        dynamic_batching=True,
        max_queue_size=1,
    )
    add_python_model(repo, "search", SLOW_SEARCH, spec.render())
    with TritonServer(ServerOptions(model_repository=repo, log_file=repo.parent / "log.txt")) as srv:
        yield srv


def test_overloaded_queue_is_overloaded_and_retries_recover(overload_server):
    reqs = [SearchRequest(i, "tent", [1, 2, 3], 2) for i in range(12)]

    async def burst(retry):
        async with AsyncRankingClient(overload_server.grpc_url, timeout_s=20, retry=retry) as cl:
            return await cl.rank_many(reqs, max_concurrency=12, return_exceptions=True)

    shed = asyncio.run(burst(NO_RETRY))
    overloaded = [r for r in shed if isinstance(r, Overloaded)]
    assert overloaded and all(isinstance(r, Overloaded) or r.item_ids == [1, 2, 3] for r in shed)
    assert "exceeds maximum queue size" in overloaded[0].message.lower()
    patient = asyncio.run(burst(RetryPolicy(max_attempts=100, initial_backoff_s=0.05, max_backoff_s=0.3)))
    assert all(not isinstance(r, Exception) for r in patient), patient
    assert max(r.attempts for r in patient) > 1


FAKE_SEARCH = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("ranker exploded", pb_utils.TritonError.INTERNAL))
                for _ in requests]
"""


@pytest.fixture(scope="module")
def odd_server(tmp_path_factory):
    """'search' with the right signature that always fails; 'recommend' with a different signature."""
    repo = tmp_path_factory.mktemp("odd") / "repo"
    search = spec_by_name()[c.SEARCH_ENSEMBLE]
    fake = dataclasses.replace(search, platform="", backend="python", steps=(), instances=1)
    add_python_model(repo, "search", FAKE_SEARCH, fake.render())
    rec = dataclasses.replace(fake, name="recommend", inputs=fake.inputs[:1])
    add_python_model(repo, "recommend", FAKE_SEARCH, rec.render())
    with TritonServer(ServerOptions(model_repository=repo, log_file=repo.parent / "log.txt")) as srv:
        yield srv


def test_server_error_and_contract_mismatch(odd_server):
    with RankingClient(odd_server.grpc_url, timeout_s=5) as cl:
        with pytest.raises(ServerError, match="ranker exploded") as err:
            cl.search(1, "shoes", [1, 2, 3])
        assert err.value.status == "INTERNAL"
        with pytest.raises(ContractMismatch, match="input ITEM_IDS is missing"):
            cl.recommend(1, [1, 2, 3])
        with pytest.raises(ContractMismatch, match="model 'recommend'"):
            cl.check()


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_server(small_repo, tmp_path_factory):
    """Triton with mutual TLS and a required header on inference (what an auth proxy would check)."""
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=d,
    )
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.cnf",
            "-out",
            f"{name}.crt",
            cwd=d,
        )
    flags = [
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={d / 'server.crt'}",
        f"--grpc-server-key={d / 'server.key'}",
        f"--grpc-root-cert={d / 'ca.crt'}",
        "--grpc-restricted-protocol=inference:x-shop-key=s3cret",
    ]
    srv = TritonServer(ServerOptions(model_repository=small_repo, log_file=d / "log.txt", extra_args=flags))
    with srv:
        yield srv, d


def test_mutual_tls_and_required_headers(tls_server, ids):
    srv, d = tls_server
    users, items = ids
    tls = TlsConfig(str(d / "ca.crt"), str(d / "client.crt"), str(d / "client.key"))
    header = {"triton-grpc-protocol-x-shop-key": "s3cret"}  # Triton prefixes restricted-protocol headers
    with RankingClient(srv.grpc_url, timeout_s=5, tls=tls, headers=header) as cl:
        assert cl.search(users[0], "tent", items[:10], 3).item_ids
    with RankingClient(srv.grpc_url, timeout_s=5, tls=tls, check_contract=False, retry=NO_RETRY) as no_header:
        with pytest.raises(Unavailable, match="x-shop-key"):
            no_header.search(users[0], "tent", items[:10], 3)
    with RankingClient(
        srv.grpc_url, timeout_s=2, tls=TlsConfig(str(d / "ca.crt")), headers=header, retry=NO_RETRY
    ) as no_client_cert:
        with pytest.raises(Unavailable):
            no_client_cert.search(users[0], "tent", items[:10], 3)


def test_client_installs_alone_and_its_cli_ranks(tmp_path, triton_server, ids):
    """A service's view: a fresh virtualenv with only client/ installed (from the package registry)."""
    import sys

    users, items = ids
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    client_dir = Path(__file__).resolve().parent.parent / "client"
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(client_dir)], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout
    assert "torch" not in freeze and "onnxruntime" not in freeze and "shoprank-client" in freeze
    out = subprocess.run(
        [
            str(venv / "bin" / "shoprank-rank"),
            "--endpoint",
            triton_server.grpc_url,
            "--user",
            str(users[0]),
            "--query",
            "red t-shirt",
            "--candidates",
            ",".join(map(str, items[:8])),
            "--k",
            "3",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["rank", "item_id", "score"] and "model search v1" in lines[-1]
    ranked = [line.split() for line in lines[1:4]]
    assert [r[0] for r in ranked] == ["1", "2", "3"] and {int(r[1]) for r in ranked} <= set(items[:8])
    assert "8 results to page through (offset 0)" in lines  # the candidates the server may show
    bad = subprocess.run(
        [
            str(venv / "bin" / "shoprank-rank"),
            "--endpoint",
            triton_server.grpc_url,
            "--user",
            "1",
            "--query",
            "x",
            "--candidates",
            "",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "candidates: empty" in bad.stderr

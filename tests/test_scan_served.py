"""Retrieval by the item_scan model (retrieval.engine: scan; the gpu target's default) on the real
tritonserver: the retrieval models call item_scan through BLS, and the served answers equal the
in-process pipeline's, which runs the same model file with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from builders.data import demo
from builders.repository.pipeline import InProcessPipeline
from rollout.__main__ import main
from rollout.golden import load
from runtime import contract as c
from runtime.repository import layout
from runtime.scan import ScanIndex
from server.launcher import ServerOptions, TritonServer
from shoprank_client import RankingClient, ServerError
from tests.conftest import REPO_ROOT, build_small_variant

pytestmark = [pytest.mark.triton]


@pytest.fixture(scope="module")
def scan_repo(small_build, tmp_path_factory):
    """The small demo shop with ``retrieval.engine: scan`` on the cpu target (the build's cached steps)."""

    retrieval = dict(demo.config_dict("small", REPO_ROOT / "build" / "small" / "demo_data").get("retrieval") or {})
    out = tmp_path_factory.mktemp("scan") / "model_repository"
    return build_small_variant("small", out, retrieval={**retrieval, "engine": "scan"})


@pytest.fixture(scope="module")
def scan_server(scan_repo, tmp_path_factory):

    log = tmp_path_factory.mktemp("scan_logs") / "tritonserver.log"
    # explicit model control: a test unloads item_scan and loads it back while the server runs
    opts = ServerOptions(model_repository=scan_repo, log_file=log, ready_timeout_s=180, model_control="explicit")
    server = TritonServer(opts)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _executions(url: str, model: str) -> int:
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(model, as_json=True)
    return sum(int(s.get("inference_count", 0)) for s in stats["model_stats"])


def test_scan_retrieval_is_served_through_bls_and_equals_the_pipeline(scan_server, scan_repo, known_ids):

    pipe = InProcessPipeline(scan_repo)
    assert isinstance(pipe.retriever(False).index, ScanIndex) and isinstance(pipe.retriever(True).index, ScanIndex)
    users, items = known_ids
    before = _executions(scan_server.grpc_url, c.ITEM_SCAN)
    with RankingClient(scan_server.grpc_url, timeout_s=10) as client:
        for user, query in ((int(users[0]), "running shoes"), (-5, "kabellose Kopfhörer"), (int(users[9]), "lamp")):
            ids, scores = pipe.search_catalog(user, query, 10)
            served = client.search_catalog(user, query, k=10)
            assert list(served.item_ids) == ids.tolist()
            np.testing.assert_allclose([i.score for i in served.items], scores, atol=1e-4)
        ids, _ = pipe.recommend_catalog(int(users[3]), 10, context=items[5:6], exclude=items[:3])
        served = client.recommend_catalog(int(users[3]), k=10, context=[int(items[5])], exclude=items[:3].tolist())
        assert list(served.item_ids) == ids.tolist()
    assert _executions(scan_server.grpc_url, c.ITEM_SCAN) - before >= 4  # every retrieval called the scan model


def test_the_exact_scan_finds_what_the_exact_faiss_index_finds(scan_repo, small_repo, pipeline):
    """The small shop's FAISS index is exact (flat, fp32); the scan reads the float16 table."""

    scan = InProcessPipeline(scan_repo).retriever(False)
    flat = pipeline.retriever(False)
    assert flat.settings.kind == "flat"
    for query in ("running shoes", "desk lamp", "kabellose Kopfhörer", "gift for a gardener"):
        vector = pipeline.query_embedding(query).reshape(-1)
        got, _ = scan.index.search(vector, 300)
        want, _ = flat.index.search(vector, 300)
        assert len(set(got.tolist()) & set(want.tolist())) >= 297  # only float16 near-ties at the edge differ


def test_a_release_carries_the_scan_model_at_the_retrieval_models_version(scan_repo):

    lay = layout(scan_repo)
    # served (the fused catalogue models call it through BLS), and versioned with the retrieval files it indexes
    assert c.ITEM_SCAN in lay.steps and c.RETRIEVE_SEARCH in lay.released
    assert c.ITEM_SCAN not in lay.parts


def test_rollout_verify_passes_the_scan_repository_catalogue_requests_included(scan_server, scan_repo):

    lines: list[str] = []
    assert main(["verify", "--golden", str(scan_repo), "--url", scan_server.http_url], out=lines.append) == 0
    requests = load(scan_repo).requests
    assert sum(r.catalogue for r in requests) >= 10
    assert f"{len(requests)}/{len(requests)} requests match" in "\n".join(lines)


def test_without_the_scan_model_retrieval_fails_per_request_and_recovers_when_it_is_back(scan_server, known_ids):
    import tritonclient.grpc as grpcclient

    users, _ = known_ids
    raw = grpcclient.InferenceServerClient(scan_server.grpc_url)
    raw.unload_model(c.ITEM_SCAN)
    try:
        with RankingClient(scan_server.grpc_url, timeout_s=10) as client:
            with pytest.raises(ServerError, match=c.ITEM_SCAN):
                client.search_catalog(int(users[0]), "running shoes", k=5)
            assert (
                len(client.search(int(users[0]), "running shoes", [int(i) for i in known_ids[1][:8]], k=3).items) == 3
            )
    finally:
        raw.load_model(c.ITEM_SCAN)
    with RankingClient(scan_server.grpc_url, timeout_s=10) as client:
        assert len(client.search_catalog(int(users[0]), "running shoes", k=5).items) == 5

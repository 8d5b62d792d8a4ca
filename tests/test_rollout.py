"""The operator's tool (rollout/): the golden set the build writes, verify against real tritonservers
standing in for pods, and status/verify/wait through the kubernetes client.

NOT RUN AGAINST A REAL CLUSTER: no kube-apiserver can run on these machines. The Kubernetes side runs
the real ``kubernetes`` client against tests/kube_standin.py, a local stand-in for the API server that
serves model objects built from the chart's real ``helm template`` output and forwards the pod proxy
to real local tritonservers.

Over 400 lines on purpose: the operator's tool end to end (golden set, status, verify, wait) against
one rendered chart and its stand-in cluster, which the tests share.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from rollout import golden as golden_mod
from rollout.__main__ import main
from rollout.golden import GoldenError, GoldenRequest
from rollout.kube import Release
from rollout.status import PodRow, ReleaseStatus, release_status, table
from rollout.triton_http import Answer, TritonView
from rollout.verify import difference
from rollout.wait import wait
from runtime.backend import build_values_asked
from runtime.contract import ARM_PARAMETER, BUILD_VALUES
from runtime.repository import layout, read_config
from server.experiment import arm_name
from server.launcher import ServerOptions, TritonServer
from server.publish import write_config
from tests import kube_standin as ks
from tests.conftest import REPO_ROOT

HELM = REPO_ROOT / "build" / "tools" / "helm"
CHART = REPO_ROOT / "helm" / "shoprank"
GPU = "NVIDIA-H100-80GB-HBM3"


def rollout(*args: str) -> tuple[int, str]:

    lines: list[str] = []
    code = main(list(args), out=lines.append)
    return code, "\n".join(lines)


@pytest.fixture(scope="module")
def golden(small_repo):
    return golden_mod.load(small_repo)


# ---------------------------------------------------------------- the golden set the build writes


@pytest.mark.unit
def test_the_build_writes_a_golden_set_of_every_kind_with_its_answers(small_repo, golden, known_ids):
    users, items = known_ids
    kinds = {r.kind for r in golden.requests}
    assert kinds >= {
        "search/known-user",
        "search/cold-user",
        "search/unknown-items",
        "recommend/known-user",
        "recommend/cold-user",
        "recommend/unknown-items",
        "search/max-candidates",
        "error/duplicate-candidates",
        "error/empty-query",
        "error/k-zero",
        "error/too-many-candidates",
        "search_catalog/known-user",
        "search_catalog/cold-user",
        "recommend_catalog/known-user",
        "recommend_catalog/cold-user",
        "error/catalogue-blank-query",
        # listing requests: filters, groups, pages, sort, facets, understood words
        "search_catalog/filter-facets",
        "search_catalog/understood",
        "recommend_catalog/category-page-2",
        "recommend_catalog/product-page-groups",
        "search/filter-sorted",
        "recommend/page-facet",
        "error/unknown-filter-field",
    }
    assert 250 <= len(golden.requests) <= 450
    assert golden.repository_checksum == golden_mod.repository_checksum(small_repo)
    fields = ("ITEM_IDS", "QUERY", "TOP_K", "shoprank_options.filter.no_such_field")
    for r in golden.requests:
        if r.kind.startswith("error/"):
            # the serving code's own message, which names the field
            assert r.error and r.error.split(":")[0] in fields and not r.top_ids
            continue
        ranked = r.ranked_ids()
        assert r.error is None and len(r.top_ids) == len(r.top_scores) <= r.k
        assert set(r.top_ids) <= set(ranked) and len(r.candidate_scores) == len(ranked)
        if r.options is not None:  # a page of the relevant set, in its order, with what the page shows beside it
            sent = json.loads(r.options)
            assert len(r.groups) == len(r.group_matches) == len(r.top_ids) and r.info["matches"] >= len(r.top_ids)
            assert r.info["offset"] == sent.get("offset", 0) and r.info["sort"] == sent.get("sort", "relevance")
            assert set(r.info.get("facets", {})) == set(sent.get("facets", [])) and "release" not in r.info
            continue
        assert len(r.top_ids) == min(r.k, len(ranked))
        assert r.top_scores == sorted(r.top_scores, reverse=True)
        if r.catalogue:  # no candidate list sent; the build's retrieved candidates, none excluded or viewed
            assert not r.item_ids and len(ranked) > r.k and None not in r.candidate_scores
            assert not set(ranked) & set(r.exclude_ids + r.context_ids)
        if "cold-user" in r.kind:
            assert r.user_id not in set(users.tolist())
        if "unknown-items" in r.kind:
            assert set(r.item_ids) - set(items.tolist())


@pytest.mark.unit
def test_the_repository_checksum_follows_every_served_file_only(small_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(small_repo, repo)
    before = golden_mod.repository_checksum(repo)
    (repo / "ranker" / "1" / "__pycache__").mkdir()
    (repo / "ranker" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"bytecode")
    (repo / golden_mod.GOLDEN_FILE).write_text("{}")
    assert golden_mod.repository_checksum(repo) == before  # what a server writes, and the golden set itself
    cfg = repo / "ranker" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "\n")
    assert golden_mod.repository_checksum(repo) != before


@pytest.mark.unit
def test_a_missing_or_foreign_golden_set_is_refused_with_the_path(tmp_path):
    with pytest.raises(GoldenError, match=rf"{tmp_path}/golden.json: no golden set here; the build writes it"):
        golden_mod.load(tmp_path)
    (tmp_path / "golden.json").write_text('{"format": 99}')
    with pytest.raises(GoldenError, match=r"format 99, this tool reads formats \[1, 2, 3\]"):
        golden_mod.load(tmp_path / "golden.json")
    code, out = rollout("verify", "--golden", str(tmp_path / "none.json"), "--url", "127.0.0.1:1")
    assert code == 2 and "none.json: no golden set here" in out


@pytest.mark.unit
def test_a_treatment_is_verified_against_the_golden_set_its_live_repository_names(small_repo, tmp_path):
    """``--arm treatment --golden <live repository>``: the golden set of the release the treatment's ensembles
    name (``.golden.<release>.json``); a file, or a build's folder (no online test in it), is its own."""
    assert golden_mod.of_treatment(tmp_path / "g.json") == tmp_path / "g.json"
    assert golden_mod.of_treatment(small_repo) == small_repo
    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    ensemble = layout(live).ensembles[0]
    cfg = read_config(live / ensemble)
    cfg.name = arm_name(ensemble)
    cfg.parameters[ARM_PARAMETER].string_value = ensemble
    for step in cfg.ensemble_scheduling.step:
        step.model_version = 7
    (live / cfg.name / "1").mkdir(parents=True)
    write_config(live / cfg.name, cfg)
    assert golden_mod.of_treatment(live) == live / ".golden.7.json"
    code, out = rollout("verify", "--golden", str(live), "--arm", "treatment", "--url", "127.0.0.1:1")
    assert code == 2 and ".golden.7.json: no golden set here" in out
    other = live / arm_name(layout(live).ensembles[1])  # an arm naming another release: ambiguous
    cfg.name = other.name
    for step in cfg.ensemble_scheduling.step:
        step.model_version = 8
    (other / "1").mkdir(parents=True)
    write_config(other, cfg)
    with pytest.raises(GoldenError, match=r"name releases \[7, 8\]; name the golden file"):
        golden_mod.of_treatment(live)


@pytest.mark.unit
def test_a_format_1_golden_set_without_catalogue_fields_still_loads(golden, tmp_path):
    old = {**golden.to_json(), "format": 1}
    keep = ("id", "kind", "model", "user_id", "item_ids", "k", "query", "top_ids", "top_scores")
    old["requests"] = [
        {k: v for k, v in r.items() if k in keep + ("candidate_scores", "error")}
        for r in old["requests"]
        if r["model"] in ("search", "recommend")
    ]
    (tmp_path / "golden.json").write_text(json.dumps(old))
    back = golden_mod.load(tmp_path)
    assert len(back.requests) == len(old["requests"]) and not any(r.catalogue for r in back.requests)


@pytest.mark.unit
def test_the_checksum_command_prints_what_the_chart_takes(small_repo, golden, tmp_path):
    code, out = rollout("checksum", str(small_repo))
    assert code == 0 and out == golden.repository_checksum and len(out) == len("sha256:") + 64
    assert rollout("checksum", str(tmp_path / "nope"))[0] == 2


# ---------------------------------------------------------------- comparing one answer


def _ranking(golden, min_len: int = 3) -> GoldenRequest:
    return next(r for r in golden.requests if r.error is None and len(r.top_ids) >= min_len)


@pytest.mark.unit
def test_the_builds_own_answer_passes_and_near_ties_may_swap(golden):
    tol = golden.tolerance
    for r in golden.requests:
        got = Answer([], [], r.error) if r.error else Answer(list(r.top_ids), list(r.top_scores))
        if r.options is not None and r.error is None:
            got = Answer(got.ids, got.scores, None, list(r.groups), list(r.group_matches), {**r.info, "release": 7})
        assert difference(r, got, tol) is None, r.describe()
    r = _ranking(golden)
    ids, scores = list(r.top_ids), list(r.top_scores)
    # two items the build scores within the tolerance of each other may come back in either order
    tied = GoldenRequest(**{**r.__dict__, "top_scores": [scores[0], scores[0] - tol / 4, *scores[2:]]})
    tied = GoldenRequest(
        **{
            **tied.__dict__,
            "candidate_scores": [
                tied.top_scores[1] if i == ids[1] else s for i, s in zip(r.item_ids, r.candidate_scores, strict=True)
            ],
        }
    )
    swapped = Answer([ids[1], ids[0], *ids[2:]], [tied.top_scores[1], tied.top_scores[0], *tied.top_scores[2:]])
    assert difference(tied, swapped, tol) is None


@pytest.mark.unit
def test_each_kind_of_difference_is_named(golden):
    r = _ranking(golden)
    ids, scores = list(r.top_ids), list(r.top_scores)
    off = Answer(ids, [scores[0] + 0.5, *scores[1:]])
    assert f"position 0: item {ids[0]} scored {scores[0] + 0.5:.6f}, the build scored it {scores[0]:.6f}" in str(
        difference(r, off, golden.tolerance)
    )
    swapped = Answer([ids[1], ids[0], *ids[2:]], [scores[1], scores[0], *scores[2:]])
    if scores[0] - scores[1] > golden.tolerance:
        assert f"position 0: item {ids[1]} (build score" in str(difference(r, swapped, golden.tolerance))
    stranger = Answer([10**18, *ids[1:]], scores)
    assert "item 1000000000000000000 is not one of the request's candidates" in str(difference(r, stranger, 1e-3))
    assert "returned 1 items, expected" in str(difference(r, Answer(ids[:1], scores[:1]), 1e-3))
    assert "got the error 'boom'" in str(difference(r, Answer([], [], "boom"), 1e-3))
    bad = next(x for x in golden.requests if x.error)
    assert "got a ranking of 2 items" in str(difference(bad, Answer([1, 2], [0.0, 0.0]), 1e-3))
    cat = next(x for x in golden.requests if x.catalogue and x.error is None and len(x.top_ids) >= 2)
    elsewhere = Answer([10**18, *cat.top_ids[1:]], list(cat.top_scores))
    assert "item 1000000000000000000 was not retrieved by the build" in str(difference(cat, elsewhere, 1e-3))
    assert "retrieved by the build, k=" in cat.describe()
    assert "got the error 'other'" in str(difference(bad, Answer([], [], "other"), 1e-3))


@pytest.mark.unit
def test_a_listing_answer_that_differs_beside_its_items_is_named(golden):
    """Same items, but other groups, matching variants, results to page through, facet counts or chips: the
    gate names what differs; a golden set of another target allows counts within 2% (at least 2)."""
    r = next(x for x in golden.requests if x.kind == "search_catalog/filter-facets")
    same = Answer(list(r.top_ids), list(r.top_scores), None, list(r.groups), list(r.group_matches), dict(r.info))
    assert difference(r, same, 1e-3) is None and "options {" in r.describe()
    other_groups = Answer(same.ids, same.scores, None, ["g", *r.groups[1:]], list(r.group_matches), dict(r.info))
    assert "variant groups ['g'" in str(difference(r, other_groups, 1e-3))
    matches = Answer(same.ids, same.scores, None, list(r.groups), [9, *r.group_matches[1:]], dict(r.info))
    assert "matching variants per group [9" in str(difference(r, matches, 1e-3))
    brand = r.info["facets"]["brand"]
    off_by_one = json.loads(json.dumps(r.info))
    off_by_one["facets"]["brand"][0]["count"] = brand[0]["count"] + 1
    counted = Answer(same.ids, same.scores, None, list(r.groups), list(r.group_matches), off_by_one)
    assert "RESULT_INFO.facets is" in str(difference(r, counted, 1e-3))
    assert difference(r, counted, 1e-3, exact=False) is None  # another target: within the slack
    fewer = {**r.info, "matches": r.info["matches"] - 50}
    assert "RESULT_INFO.matches is" in str(
        difference(r, Answer(same.ids, same.scores, None, list(r.groups), list(r.group_matches), fewer), 1e-3, False)
    )
    understood = next(x for x in golden.requests if x.kind == "search_catalog/understood")
    assert understood.info.get("understood", {}).get("chips"), understood.info  # "under <median>" read as a chip
    no_chips = {k: v for k, v in understood.info.items() if k != "understood"}
    got = Answer(list(understood.top_ids), list(understood.top_scores), None, list(understood.groups))
    got = Answer(got.ids, got.scores, None, got.groups, list(understood.group_matches), no_chips)
    assert "RESULT_INFO.understood is null" in str(difference(understood, got, 1e-3))


# ---------------------------------------------------------------- status and wait on rendered manifests


def render(*sets: str) -> list[dict]:
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "get_helm.sh")], check=True, capture_output=True)
    args = [str(HELM), "template", "shop", str(CHART), "--namespace", "shop", "-f", str(CHART / "values-gpu.yaml")]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def release_docs(checksum: str) -> list[dict]:
    return render(
        f"modelRepository.checksum={checksum}",
        "modelRepository.source=pvc",
        "modelRepository.pvc.claimName=models",
        "engineBuild.enabled=true",
    )


OLD = "sha256:" + "0" * 64
BUILT = f"{GPU} sm90 trt100500: text_encoder=built ranker=reused"


@pytest.fixture(scope="module")
def deployment(golden):
    return ks.deployment_from(release_docs(golden.repository_checksum), replicas=2)


def _release(dep, pods, nodes):

    return Release("shop", "shop", dep, pods, nodes)


def _view(versions: str = "1") -> TritonView:
    names = ["ranker", "recommend", "recommend_features", "search", "search_features", "text_encoder", "topk"]
    return TritonView(True, {m: {versions: "READY"} for m in names})


@pytest.mark.unit
@pytest.mark.helm
def test_status_of_a_healthy_release_built_from_the_rendered_chart(deployment, golden):

    pods = [ks.pod_from(deployment, f"shop-shoprank-abc-{i}", f"gpu-{i}", engines=(0, BUILT)) for i in range(2)]
    nodes = {f"gpu-{i}": ks.node(f"gpu-{i}", GPU) for i in range(2)}
    st = release_status(
        _release(deployment, pods, nodes), {p.metadata.name: _view() for p in pods}, golden.repository_checksum
    )
    assert st.ok, st.problems
    assert [r.gpu for r in st.pods] == [GPU, GPU] and all(r.current and r.triton_ready for r in st.pods)
    assert st.pods[0].engines == f"built: {BUILT}" and st.pods[0].image.endswith("shoprank-0.1.0")
    assert st.pods[0].models["ranker"] == ["1"] and st.repository_checksum == golden.repository_checksum
    text = table(st)
    assert "all pods agree" in text and "never against a real cluster" in text
    assert golden.repository_checksum.split(":")[1][:12] in text


@pytest.mark.unit
@pytest.mark.helm
def test_status_names_every_pod_that_disagrees(deployment, golden):

    pods = [
        ks.pod_from(deployment, "p-good", "gpu-0", engines=(0, BUILT)),
        ks.pod_from(
            deployment, "p-old", "gpu-1", engines=(0, BUILT), annotations={"shoprank.io/repository-checksum": OLD}
        ),
        ks.pod_from(
            deployment,
            "p-engines",
            "gpu-2",
            ready=False,
            restarts=3,
            engines=(1, "build-engines: cannot tell the GPU product"),
        ),
        ks.pod_from(deployment, "p-versions", "gpu-3", engines=(0, BUILT)),
    ]
    nodes = {
        "gpu-0": ks.node("gpu-0", GPU),
        "gpu-1": ks.node("gpu-1", GPU),
        "gpu-2": ks.node("gpu-2", "NVIDIA-L40S"),
        "gpu-3": None,
    }  # gpu-3: the operator may not read nodes
    views = {
        "p-good": _view(),
        "p-old": _view(),
        "p-engines": TritonView(False, error="connection refused"),
        "p-versions": _view(),
    }
    views["p-versions"].models["ranker"]["2"] = "READY"  # one pod loaded a second ranker version
    st = release_status(_release(deployment, pods, nodes), views, golden.repository_checksum)
    assert not st.ok
    text = "\n".join(st.problems)
    assert "p-old: not on the current pod template" in text and "p-good" not in text
    assert "p-engines: engine build failed: exit 1: build-engines: cannot tell the GPU product" in text
    assert "p-engines: not ready" in text and "p-engines: Triton not reachable: connection refused" in text
    assert "p-versions: loaded models differ from the other pods: ranker versions ['1', '2'] (others: ['1'])" in text
    assert {r.pod: r.gpu for r in st.pods} == {
        "p-good": GPU,
        "p-old": GPU,
        "p-engines": "NVIDIA-L40S",
        "p-versions": "?",
    }
    assert any("2 GPU products" in w for w in st.warnings) and any("p-engines: 3 restarts" in w for w in st.warnings)
    other = release_status(_release(deployment, pods[:1], {"gpu-0": nodes["gpu-0"]}), {"p-good": _view()}, OLD)
    assert any("the golden set is for repository sha256:0000" in p for p in other.problems)


@pytest.mark.unit
def test_wait_polls_until_the_rollout_is_done_then_verifies_once():

    def st(problems):
        """A release with ``problems``; None: one pod, nothing wrong."""
        rows, problems = ([_row()], []) if problems is None else ([], problems)
        return ReleaseStatus("shop", "shop", "d", 2, "c", "c", "img", rows, problems)

    now = [0.0]
    seq = iter([st(["p-old: not on the current pod template"]), st(["p-new: not ready"]), st(None)])
    verified, lines = [], []

    class Verdict:
        ok = True

    def run_verify():
        verified.append(now[0])
        return Verdict()

    def on_fake_clock(fetch, timeout_s):
        """wait() polling every 5 s of a clock that only its sleeps move, from 0."""
        now[0] = 0.0
        return wait(
            fetch, run_verify, timeout_s, 5, lines.append, lambda: now[0], lambda s: now.__setitem__(0, now[0] + s)
        )

    res = on_fake_clock(lambda: next(seq), timeout_s=60)
    assert res.ok and verified == [10.0] and res.message == "rollout finished and verified"
    assert "waiting for: p-old: not on the current pod template" in lines[0] and "p-new: not ready" in lines[1]
    stuck = on_fake_clock(lambda: st(["p-old: not ready"]), timeout_s=12)
    assert not stuck.ok and stuck.message == "timed out after 12s: p-old: not ready" and len(verified) == 1
    Verdict.ok = False
    failed = wait(lambda: st(None), run_verify, 60, 5, lines.append, lambda: 0.0, lambda s: None)
    assert not failed.ok and failed.message == "rollout finished but verify FAILED"


def _row():

    return PodRow("p", "Running", True, 0, "n", "-", "img", "c", "c", True, "-", True, {"ranker": ["1"]})


# ---------------------------------------------------------------- real tritonservers standing in for pods


def _corrupt(small_repo: Path, into: Path) -> Path:
    """The repository with one table out of line: item embedding rows in another order (a catalogue
    re-exported in another order, the ids not), as a half-synced or stale copy would serve."""
    shutil.copytree(small_repo, into)
    table = next((into / "topk" / "1").glob("*.npy"))
    emb = np.load(table)
    np.save(table, np.roll(emb, 1, axis=0))
    return into


@pytest.fixture(scope="module")
def other_servers(release_two, small_repo, tmp_path_factory):
    """Two more tritonservers: one serving another ranker (release two), one a corrupted table."""

    tmp = tmp_path_factory.mktemp("rollout")
    repos = {"stale": release_two, "corrupt": _corrupt(small_repo, tmp / "corrupt")}
    # exit_timeout_s: Triton 24.10 waits out its exit timeout while it counts an HTTP connection, and
    # nothing is in flight at teardown
    servers = {
        name: TritonServer(
            ServerOptions(model_repository=repo, log_file=tmp / f"{name}.log", ready_timeout_s=240, exit_timeout_s=3)
        )
        for name, repo in repos.items()
    }
    errors: list[BaseException] = []

    def start(server):
        try:
            server.start()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield servers
    finally:
        stops = [threading.Thread(target=s.stop) for s in servers.values()]
        for t in stops:
            t.start()
        for t in stops:
            t.join()


@pytest.mark.triton
@pytest.mark.slow
def test_verify_passes_the_same_repository_and_fails_another_ranker_or_a_corrupted_table(
    triton_server, other_servers, small_repo, release_two
):
    good, stale, corrupt = triton_server.http_url, other_servers["stale"].http_url, other_servers["corrupt"].http_url
    code, out = rollout("verify", "--golden", str(small_repo), "--url", good)
    assert code == 0 and "verify: PASSED" in out
    n = len(golden_mod.load(small_repo).requests)
    assert f"ok    {good}: {n}/{n} requests match" in out
    # either kind of ranker serves its build's answers: release two's is the DCN, the small build's the GBDT
    kinds = {
        json.loads((REPO_ROOT / "build" / w / "ranker" / "report.json").read_text())["kind"]
        for w in ("small", "small-v2")
    }
    code, out = rollout("verify", "--golden", str(release_two), "--url", stale)
    assert code == 0 and "verify: PASSED" in out and kinds == {"gbdt", "dcn"}
    code, out = rollout("verify", "--golden", str(small_repo), "--url", good, "--url", stale, "--url", corrupt)
    assert code == 1 and "verify: FAILED" in out
    lines = out.splitlines()
    for bad in (stale, corrupt):
        i = next((i for i, line in enumerate(lines) if line.startswith(f"FAIL  {bad}:")), -1)
        assert i >= 0 and "requests differ" in lines[i], out
        assert lines[i + 1].startswith("      first: #") and "candidates, k=" in lines[i + 1]
        assert "position " in lines[i + 2] or "returned " in lines[i + 2]
    code, out = rollout("verify", "--golden", str(small_repo), "--url", "127.0.0.1:1", "--json")
    assert code == 1 and '"unreachable"' in out and "Connection refused" in out


@pytest.fixture()
def world(golden, triton_server, other_servers):
    dep = ks.deployment_from(release_docs(golden.repository_checksum), replicas=2)
    pods = [ks.pod_from(dep, f"shop-shoprank-new-{i}", f"gpu-{i}", engines=(0, BUILT)) for i in range(2)]
    return ks.World(
        deployment=dep,
        pod_states=[pods],
        nodes={f"gpu-{i}": ks.node(f"gpu-{i}", GPU) for i in range(3)},
        backends={p.metadata.name: f"http://{triton_server.http_url}" for p in pods},
    )


def _cluster_args(api, tmp_path):
    return ["-n", "shop", "--release", "shop", "--kubeconfig", api.kubeconfig(tmp_path / "kubeconfig")]


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.helm
def test_status_and_verify_through_the_kubernetes_client_and_pod_proxy(world, other_servers, tmp_path, small_repo):
    with ks.StandInApiServer(world) as api:
        flags = _cluster_args(api, tmp_path)
        code, out = rollout("status", *flags, "--golden", str(small_repo))
        assert code == 0, out
        assert "all pods agree" in out and "built: sm90 trt100500: text_encoder=built" in out
        assert f"{len(layout(small_repo).served)} models, versions 1" in out  # the parts are not loaded
        code, out = rollout("verify", *flags, "--golden", str(small_repo))
        assert code == 0 and out.count("requests match") == 2 and "verify: PASSED" in out
        assert any("/pods/shop-shoprank-new-0:8000/proxy/v2/models/search/infer" in c for c in world.calls)
        # the operator may not read nodes: the GPU shows as unknown, nothing else changes
        world.nodes_forbidden = True
        code, out = rollout("status", *flags, "--json")
        assert code == 0 and '"gpu": "?"' in out
        # one pod serves another build (an old ReplicaSet's pod, another ranker)
        stale = ks.pod_from(
            world.deployment,
            "shop-shoprank-old-0",
            "gpu-2",
            engines=(0, BUILT),
            annotations={"shoprank.io/repository-checksum": OLD},
        )
        world.pod_states = [[*world.pod_states[0], stale]]
        world.backends[stale.metadata.name] = f"http://{other_servers['stale'].http_url}"
        code, out = rollout("status", *flags)
        assert code == 1 and "shop-shoprank-old-0: not on the current pod template" in out
        code, out = rollout("verify", *flags, "--golden", str(small_repo))
        assert code == 1 and "FAIL  shop-shoprank-old-0:" in out and "first: #" in out
        assert out.count("requests match") == 2
        # a pod whose Triton is gone: the API server answers for it (503 Status), the pod is unreachable
        world.backends[stale.metadata.name] = "http://127.0.0.1:1"
        code, out = rollout("verify", *flags, "--golden", str(small_repo), "--json")
        assert code == 1 and "pod proxy shop-shoprank-old-0:8000: HTTP 503 error trying to reach service" in out


@pytest.mark.triton
@pytest.mark.slow
@pytest.mark.helm
def test_wait_follows_a_rollout_to_the_end_then_verifies(world, other_servers, tmp_path, small_repo):
    dep = world.deployment
    new = world.pod_states[0]
    old = ks.pod_from(dep, "shop-shoprank-old-0", "gpu-2", annotations={"shoprank.io/repository-checksum": OLD})
    starting = ks.pod_from(dep, new[1].metadata.name, "gpu-1", ready=False, engines=(0, BUILT))
    world.pod_states = [[new[0], starting, old], [new[0], starting, old], new]
    world.backends[old.metadata.name] = f"http://{other_servers['stale'].http_url}"
    with ks.StandInApiServer(world) as api:
        code, out = rollout(
            "wait", *_cluster_args(api, tmp_path), "--golden", str(small_repo), "--interval", "0.05", "--timeout", "60"
        )
    assert code == 0, out
    assert "1/2 pods ready on the current template, 1 old" in out
    assert "2/2 pods ready on the current template" in out and "verify: PASSED" in out
    assert out.strip().splitlines()[-1].startswith("wait: rollout finished and verified")
    world.pod_states = [[new[0], starting]]
    with ks.StandInApiServer(world) as api:
        code, out = rollout("wait", *_cluster_args(api, tmp_path), "--interval", "0.05", "--timeout", "0.2")
    assert code == 1 and "wait: timed out after 0.2s" in out


@pytest.mark.unit
def test_the_tool_imports_and_its_help_works_on_a_fresh_interpreter():
    for cmd in ([], ["status"], ["verify"], ["wait"], ["checksum"]):
        out = subprocess.run(
            [sys.executable, "-m", "rollout", *cmd, "--help"], capture_output=True, text=True, cwd=REPO_ROOT
        )
        assert out.returncode == 0, out.stderr
        assert "usage: python -m rollout" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "rollout", "status", "--kubeconfig", "/nonexistent"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 2 and "cannot load the kubeconfig /nonexistent" in out.stdout


@pytest.mark.unit
def test_only_a_json_true_build_values_parameter_skips_the_store():

    class Request:  # the python backend's InferenceRequest.parameters() returns the JSON text
        def __init__(self, text):
            self.text = text

        def parameters(self):
            return self.text

    assert build_values_asked(Request(f'{{"{BUILD_VALUES}": true}}'))
    for text in ("{}", "", f'{{"{BUILD_VALUES}": "true"}}', f'{{"{BUILD_VALUES}": 1}}', "not json", "[]"):
        assert not build_values_asked(Request(text)), text

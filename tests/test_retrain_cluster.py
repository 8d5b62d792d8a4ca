"""The retrain's promotion on Kubernetes (retrain/cluster.py), what the chart's CronJob runs: a candidate moved
onto the release volume, the volume's ``current`` link flipped, the Deployment's pod template patched, the
rollout followed and verified on every pod, the pods' metrics watched, and what fails rolled back.

NOT A REAL CLUSTER: none can run on these machines. The real ``kubernetes`` client talks to
tests/kube_standin.py, which serves the Deployment the chart renders with the CronJob on and applies the
client's patch. What the Deployment controller and the kubelets would do next is stood in for by
``Kubelets``: new pods on the patched template, each serving, through a real local tritonserver, the release
the volume's link named when the pod started (a subPath mount resolves the link then)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from builders.data.config import RetrainConfig
from builders.data.dataset import ShopData
from retrain.__main__ import main as retrain_main
from retrain.cluster import OnKubernetes
from retrain.loop import promote
from retrain.volume import ReleaseVolume, adopt
from rollout import golden as golden_mod
from rollout.kube import Cluster
from rollout.status import RELEASE, REPO_CHECKSUM
from server.launcher import ServerOptions, TritonServer
from server.raw_requests import request_inputs
from tests import kube_standin as ks
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.helm]

HELM = REPO_ROOT / "build" / "tools" / "helm"
CHART = REPO_ROOT / "helm" / "shoprank"
RETRAIN = ["retrain.enabled=true", "modelRepository.source=pvc", "modelRepository.pvc.claimName=models"]
RETRAIN += ["retrain.exports.claimName=exports"]


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "get_helm.sh")], check=True, capture_output=True)
    args = [str(HELM), "template", "shop", str(CHART), "--namespace", "shop"]
    for s in RETRAIN:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _base(url: str) -> str:
    return "http://" + url.removeprefix("http://").split("/")[0]


class Kubelets:
    """On each patch of the pod template: two new pods on it, not ready; each then serves the release the
    volume's link names (one tritonserver per release folder, started on first use) and becomes ready, and
    the old pods are gone. ``hang_next``: the next rollout's pods never become ready (a release that crashes)."""

    def __init__(self, world: ks.World, volume: ReleaseVolume, servers: dict[Path, TritonServer], logs: Path):
        self.world, self.volume, self.servers, self.logs = world, volume, servers, logs
        self.started: list[TritonServer] = []
        self.rolls = 0
        self.hang_next = False

    def serve(self, pods: list, server: TritonServer) -> None:
        for p in pods:
            self.world.backends[p.metadata.name] = f"http://{server.http_url}"
            self.world.metrics[p.metadata.name] = _base(server.metrics_url)

    def __call__(self, dep) -> None:
        self.rolls += 1
        new = [ks.pod_from(dep, f"shop-shoprank-r{self.rolls}-{i}", f"node-{i}", ready=False) for i in range(2)]
        self.world.pod_states = [[*self.world.pods(), *new]]
        release = self.volume.link.resolve()  # what the subPath mount binds when the containers start
        if self.hang_next:
            self.hang_next = False
            return
        threading.Thread(target=self._start, args=(dep, new, release), daemon=True).start()

    def _start(self, dep, new: list, release: Path) -> None:
        if release not in self.servers:
            log = self.logs / f"{release.name}.log"
            server = TritonServer(ServerOptions(model_repository=release, log_file=log, ready_timeout_s=180))
            self.started.append(server)
            server.start()
            self.servers[release] = server
        self.serve(new, self.servers[release])
        self.world.pod_states = [[ks.pod_from(dep, p.metadata.name, p.spec.node_name) for p in new]]

    def server_now(self) -> TritonServer:
        meta = self.world.pods()[0].metadata
        assert meta is not None and meta.name is not None
        backend = self.world.backends[meta.name]
        return next(s for s in self.servers.values() if backend.endswith(s.http_url))


def test_the_cronjobs_promotion_rolls_the_deployment_onto_the_volumes_new_release_and_back_when_it_fails(
    rendered, small_repo, triton_server, tmp_path
):
    vol = ReleaseVolume(tmp_path / "volume")
    first = adopt(vol.root, small_repo)
    dep = ks.deployment_from(rendered, replicas=2)
    assert RELEASE not in (dep.spec.template.metadata.annotations or {})
    world = ks.World(deployment=dep, pod_states=[[ks.pod_from(dep, f"shop-shoprank-r0-{i}", f"n-{i}") for i in (0, 1)]])
    # the pods running before: the session's server, on a repository with the same files as the first release
    kubelets = Kubelets(world, vol, {vol.path(first).resolve(): triton_server}, tmp_path)
    kubelets.serve(world.pods(), triton_server)
    world.on_patch = kubelets
    shop = ShopData.load(REPO_ROOT / "build" / "small" / "data")
    user, items = int(shop.user_ids[0]), [int(i) for i in shop.item_ids[:50]]
    # the same files as the live release: the gate passes it (quality equal; latency margin wide on a busy machine)
    settings = RetrainConfig(max_lists=200, latency_margin=10.0, watch_s=1.0)

    def candidate(name: str) -> Path:
        return Path(shutil.copytree(small_repo, tmp_path / name))

    def answering(k: int):
        def watch_window(seconds: float) -> None:
            raw = grpcclient.InferenceServerClient(kubelets.server_now().grpc_url)
            for _ in range(30):  # requests to the new release's pods during its watch
                if k == 0:  # ones it must refuse: its error rate rises
                    with pytest.raises(InferenceServerException, match="TOP_K"):
                        raw.infer("recommend", request_inputs(user, items, 0))
                else:
                    raw.infer("recommend", request_inputs(user, items, k))

        return watch_window

    lines: list[str] = []
    try:
        with ks.StandInApiServer(world) as api:
            cluster = Cluster.connect(kubeconfig=api.kubeconfig(tmp_path / "kubeconfig"))
            target = OnKubernetes(vol, cluster, "shop", "shop", timeout_s=240, interval_s=0.2, keep=1, out=lines.append)

            # 1. promoted and rolled out, then failing during its watch: the volume and the pods go back
            entry = promote(target, candidate("c1"), shop, settings, tmp_path / "work", wait=answering(0))
            assert entry["decision"] == "rolled back", entry
            second = vol.names()[1]
            assert entry["release"] == first and vol.live() == first and entry["watch"]["requests"] >= 30
            assert "error rate 100.0%" in entry["reasons"][0]
            checksum = golden_mod.load(small_repo).repository_checksum
            assert world.patches == [
                {RELEASE: second, REPO_CHECKSUM: checksum},
                {RELEASE: first, REPO_CHECKSUM: checksum},
            ]
            assert kubelets.server_now() is triton_server  # the pods serve the first release again
            assert sum("rollout finished and verified" in line for line in lines) == 2
            proxied = [c for c in world.calls if "/proxy/" in c]
            assert any(":8002/proxy/metrics" in c for c in proxied)  # the watch: each pod's metrics
            assert any(":8000/proxy/v2/models/search/infer" in c for c in proxied)  # the golden set: each pod
            assert any(
                c.startswith("PATCH /apis/apps/v1/namespaces/shop/deployments/shop-shoprank") for c in world.calls
            )

            # 2. promoted and kept: the pods serve the new release; releases beyond `keep` leave the volume
            entry = promote(target, candidate("c2"), shop, settings, tmp_path / "work", wait=answering(10))
            assert entry["decision"] == "promoted" and entry["watch"]["rollback"] is False, entry
            third = entry["release"]
            assert vol.live() == third and vol.names() == [first, third]  # the rolled-back one pruned
            assert kubelets.server_now().options.model_repository == vol.path(third).resolve()
            assert dep.spec.template.metadata.annotations[RELEASE] == third
            assert all(p.metadata.annotations[RELEASE] == third for p in world.pods())

            # 3. a rollout whose pods never become ready: switched back within the rollout's timeout
            kubelets.hang_next = True
            target.timeout_s = 3
            entry = promote(target, candidate("c3"), shop, settings, tmp_path / "work", wait=answering(10))
            assert entry["decision"] == "rolled back" and entry["release"] == third
            assert "timed out after 3s" in entry["reasons"][0] and "not ready" in entry["reasons"][0], entry
            assert vol.live() == third and world.patches[-1][RELEASE] == third
            assert kubelets.server_now().options.model_repository == vol.path(third).resolve()
    finally:
        for server in kubelets.started:
            server.stop()


def test_the_cronjobs_command_refuses_a_volume_without_a_release_and_half_given_flags(tmp_path, capsys):
    argv = ["--profile", "small", "--volume", str(tmp_path), "--kube-release", "shop"]
    assert retrain_main(argv) == 2
    assert "no release link; adopt a built repository first" in capsys.readouterr().err
    assert retrain_main(["--profile", "small", "--volume", str(tmp_path)]) == 2
    assert "--volume and --kube-release go together" in capsys.readouterr().err

"""The retrain's promotion on Kubernetes (the chart's CronJob): a release volume and a rolled Deployment.

The chart's pods load their repository once, at start (``modelControlMode: none``), from the volume's
``current`` link (``retrain/volume.py``). So a release is promoted by:

1. moving the candidate onto the volume as ``releases/<id>`` and flipping ``current`` to it;
2. patching the Deployment's pod template with the release's id and repository checksum
   (``shoprank.io/release``, ``shoprank.io/repository-checksum``): a new ReplicaSet rolls out under the
   chart's ``maxUnavailable: 0``, each new pod serving the new release and each old pod drained;
3. following the rollout until every pod is ready on the new template, then the release's golden set on
   every pod (``rollout/follow.py``, what ``python -m rollout wait`` does);
4. the watch reads each pod's Triton metrics through the API server's pod proxy.

A rollout that does not finish or answers wrong, and a release the watch rejects, are rolled back the same
way: the link flipped to the release before, the template patched to it, the rollout followed again.

NOT RUN AGAINST A REAL CLUSTER on the project's machines (no kube-apiserver or kubelet can run there): the
tests run it against ``tests/kube_standin.py``, which serves the chart's rendered Deployment, applies the
patch, and stands real local tritonservers in for the new pods, each serving what ``current`` named when it
started, as a kubelet's subPath mount does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from retrain import watch
from retrain.loop import RolloutFailed
from retrain.volume import ReleaseVolume
from rollout import golden as golden_mod
from rollout.follow import follow
from rollout.kube import Cluster
from rollout.status import RELEASE, REPO_CHECKSUM
from rollout.triton_http import Unreachable
from rollout.wait import WaitResult
from runtime.repository import layout, serving_version

logger = logging.getLogger(__name__)


@dataclass
class OnKubernetes:
    """A Helm release of the chart whose pods serve ``volume``'s ``current`` release."""

    volume: ReleaseVolume
    cluster: Cluster
    namespace: str
    name: str  # the Helm release
    timeout_s: float = 900.0  # a rollout's wait, as `python -m rollout wait --timeout`
    interval_s: float = 5.0
    keep: int = 5  # releases kept on the volume (the live one and the one before always)
    out: Callable[[str], None] = logger.info
    _before: str | None = field(default=None, init=False)

    def live(self) -> tuple[Path, int]:
        repo = self.volume.path(self.volume.live())
        return repo, serving_version(repo)

    def counters(self) -> dict[str, watch.Window] | None:
        ensembles = set(layout(self.live()[0]).ensembles)
        release = self.cluster.release(self.namespace, self.name)
        got: dict[str, watch.Window] = {}
        for pod, send in self.cluster.transports(release, "metrics").items():
            try:
                code, body = send("GET", "/metrics", None)
            except Unreachable as err:
                logger.warning(f"metrics of {pod} not read: {err}")
                continue
            if code == 200:
                got[pod] = watch.parse(body.decode(), ensembles)
        return got

    def _roll(self, release: str) -> WaitResult:
        golden = golden_mod.load(self.volume.path(release))
        deployment = self.cluster.release(self.namespace, self.name).deployment_name
        self.cluster.patch_pod_template(
            self.namespace, deployment, {RELEASE: release, REPO_CHECKSUM: golden.repository_checksum}
        )
        self.out(f"deployment {deployment} rolled to release {release}")
        result = follow(self.cluster, self.namespace, self.name, golden, self.timeout_s, self.interval_s, self.out)
        self.out(f"release {release}: {result.message} ({result.waited_s:.0f}s)")
        return result

    def _switch_back(self, to: str | None, failed: str) -> str:
        if to is None:
            raise RolloutFailed(f"release {failed} failed and the volume holds no release before it", None)
        self.volume.flip(to)
        result = self._roll(to)
        if not result.ok:  # the release that served before does not come back: a person must look
            raise RolloutFailed(f"switching back to release {to} failed too: {result.message}", to)
        return to

    def publish(self, candidate: Path) -> str:
        release = self.volume.add(candidate)
        before = self.volume.flip(release)
        result = self._roll(release)
        if not result.ok:
            back = self._switch_back(before, release)
            raise RolloutFailed(f"release {release}: {result.message}", back)
        self._before = before
        pruned = self.volume.prune(self.keep, protect={before} if before else set())
        if pruned:
            self.out(f"releases deleted from the volume (keeping {self.keep}): {', '.join(pruned)}")
        return release

    def rollback(self) -> str:
        return self._switch_back(self._before, self.volume.live())

"""A release on the cluster, read and followed: its status with each pod's Triton view, and a rollout
followed to the end then verified on every pod. ``python -m rollout status|wait`` and the retrain CronJob's
promotion (``retrain/cluster.py``) both use these."""

from __future__ import annotations

from collections.abc import Callable

from rollout.golden import GoldenSet
from rollout.kube import Cluster
from rollout.status import ReleaseStatus, release_status
from rollout.triton_http import view
from rollout.verify import verify
from rollout.wait import WaitResult, wait


def status(
    cluster: Cluster, namespace: str, name: str, golden_checksum: str | None = None, ask_triton: bool = True
) -> ReleaseStatus:
    """The release's pods and what disagrees; each running pod's Triton asked through the pod proxy."""
    release = cluster.release(namespace, name)
    views = {pod: view(send) for pod, send in cluster.transports(release).items()} if ask_triton else {}
    return release_status(release, views, golden_checksum)


def follow(
    cluster: Cluster,
    namespace: str,
    name: str,
    golden: GoldenSet | None,
    timeout_s: float,
    interval_s: float = 5.0,
    out: Callable[[str], None] = print,
    tolerance: float | None = None,
    workers: int = 8,
) -> WaitResult:
    """Until every pod is ready on the current template and agrees, then the golden set on every pod."""

    def run_verify():
        assert golden is not None
        return verify(golden, cluster.transports(cluster.release(namespace, name)), tolerance, workers)

    return wait(
        lambda: status(cluster, namespace, name, golden.repository_checksum if golden else None),
        run_verify if golden is not None else None,
        timeout_s,
        interval_s,
        out=out,
    )

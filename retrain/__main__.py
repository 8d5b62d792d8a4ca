"""``python -m retrain``: the nightly retrain against a running server (``retrain/loop.py``).

    python -m retrain --config shoprank.yaml --repo model_repository --url 127.0.0.1:8001 \
        --metrics-url http://127.0.0.1:8002/metrics

The server must serve ``--repo`` in explicit model control (``make serve-live``), as ``server/publish.py``
needs. On Kubernetes (the chart's CronJob), the release volume and the Helm release serving it instead:

    python -m retrain --config shoprank.yaml --volume /volume --kube-release shop -n shop --in-cluster

builds in ``/volume/work``, and promotes by flipping ``/volume/current`` and rolling the Deployment
(``retrain/cluster.py``). Exit status: 0 promoted, 3 refused (kept aside), 4 rolled back, 1 a build, data or
cluster error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from builders import build as build_mod
from builders.data import config as cfg_mod
from builders.data.dataset import ShopData
from builders.repository.model_specs import ENSEMBLE, FUSED, FusedSizes
from builders.repository.triton_config import instance_count
from retrain.cluster import OnKubernetes
from retrain.loop import CANDIDATE, RolloutFailed, Served, Target, promote
from retrain.volume import ReleaseVolume, VolumeError
from rollout.golden import GoldenError
from rollout.kube import Cluster, KubeError
from runtime import cli_logging
from runtime.fused import ALONE_PARAMETER, THREADS_PARAMETER
from runtime.repository import ServedRepositoryError, layout, read_config
from server.publish import Publisher, PublishError

EXIT = {"promoted": 0, "refused": 3, "rolled back": 4}


def served_shape(repo: Path) -> tuple[str, FusedSizes | None]:
    """The served repository's layout and fused sizes, so the candidate's configs are the live ones (publish
    refuses any other)."""
    lay = layout(repo)
    if not lay.parts:
        return ENSEMBLE, None
    configs = [read_config(repo / step) for step in lay.steps]
    cfg = configs[0]
    threads = cfg.parameters[THREADS_PARAMETER].string_value if THREADS_PARAMETER in cfg.parameters else "1"
    alone = [int(x.parameters[ALONE_PARAMETER].string_value or 0) for x in configs if ALONE_PARAMETER in x.parameters]
    return FUSED, FusedSizes(instance_count(cfg), int(threads or 1), alone[0] if alone else 0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="the shop's shoprank.yaml (its data folder holds the newest logs)")
    p.add_argument("--profile", help="the demo shop instead of --config")
    p.add_argument("--work", type=Path, help="the build's cache folder (default: build/<name or profile>/)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="the repository the server serves")
    p.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address")
    p.add_argument("--metrics-url", default="http://127.0.0.1:8002/metrics", help="Triton's metrics ('' : no watch)")
    p.add_argument("--no-progress", action="store_true")
    k8s = p.add_argument_group("on Kubernetes (the chart's retrain CronJob)")
    k8s.add_argument("--volume", type=Path, help="the release volume (retrain/volume.py) instead of --repo/--url")
    k8s.add_argument("--kube-release", help="the Helm release whose pods serve the volume's current release")
    k8s.add_argument("-n", "--namespace", default="default", help="its namespace")
    k8s.add_argument("--in-cluster", action="store_true", help="the Job's service account (else a kubeconfig)")
    k8s.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    k8s.add_argument("--context", help="kube context (default: the kubeconfig's current one)")
    k8s.add_argument("--rollout-timeout", type=float, default=900, help="seconds a rollout may take (default 900)")
    k8s.add_argument("--interval", type=float, default=5, help="seconds between the rollout's checks (default 5)")
    k8s.add_argument("--keep", type=int, default=5, help="releases kept on the volume (default 5)")
    return p


def _target(args: argparse.Namespace, volume: ReleaseVolume | None) -> Target:
    if volume is not None:
        cluster = Cluster.connect(args.context, args.kubeconfig, args.in_cluster)
        return OnKubernetes(
            volume,
            cluster,
            args.namespace,
            args.kube_release,
            timeout_s=args.rollout_timeout,
            interval_s=args.interval,
            keep=args.keep,
            out=print,
        )
    import tritonclient.grpc as grpcclient

    publisher = Publisher(args.repo, grpcclient.InferenceServerClient(args.url))
    return Served(args.repo, publisher, args.metrics_url or None)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    args = _parser().parse_args(argv)
    if (args.config is None) == (args.profile is None):
        print("error: give --config (your shop) or --profile (the demo shop)", file=sys.stderr)
        return 2
    if (args.volume is None) != (args.kube_release is None):
        print("error: --volume and --kube-release go together", file=sys.stderr)
        return 2

    try:
        volume = ReleaseVolume(args.volume) if args.volume else None
        repo = volume.path(volume.live()) if volume else args.repo
        cfg, work, _ = build_mod.resolve(args.profile, args.config, args.work or (volume.work if volume else None))
        shape, sizes = served_shape(repo)
        start = time.perf_counter()
        report = build_mod.build(
            "cpu",
            args.profile,
            work / CANDIDATE,
            work,
            progress=not args.no_progress,
            config=args.config,
            layout=shape,
            fused_sizes=sizes,
        )
        built = time.perf_counter() - start
        steps = {k: v.get("seconds") for k, v in report.items() if isinstance(v, dict) and "seconds" in v}
        print(f"candidate built in {built:.0f} s: {json.dumps(steps)}")
        entry = promote(_target(args, volume), work / CANDIDATE, ShopData.load(work / "data"), cfg.retrain, work)
    except (build_mod.BuildError, cfg_mod.ConfigError, KubeError, GoldenError, RolloutFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (PublishError, ServedRepositoryError, VolumeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{entry['decision']}: {'; '.join(entry['reasons']) or 'the candidate is not worse than the live release'}")
    return EXIT[entry["decision"]]


if __name__ == "__main__":
    sys.exit(main())

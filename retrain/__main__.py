"""``python -m retrain``: the nightly retrain against a running server (``retrain/loop.py``).

    python -m retrain --config shoprank.yaml --repo model_repository --url 127.0.0.1:8001 \
        --metrics-url http://127.0.0.1:8002/metrics

The server must serve ``--repo`` in explicit model control (``make serve-live``), as ``server/publish.py``
needs. Exit status: 0 promoted, 3 refused (kept aside), 4 rolled back, 1 a build or data error, 2 bad usage.
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
from retrain.loop import CANDIDATE, Served, promote
from runtime import cli_logging
from runtime.fused import THREADS_PARAMETER
from runtime.repository import ServedRepositoryError, layout, read_config
from server.publish import Publisher, PublishError

EXIT = {"promoted": 0, "refused": 3, "rolled back": 4}


def served_shape(repo: Path) -> tuple[str, FusedSizes | None]:
    """The served repository's layout and fused sizes, so the candidate's configs are the live ones (publish
    refuses any other)."""
    lay = layout(repo)
    if not lay.parts:
        return ENSEMBLE, None
    cfg = read_config(repo / lay.steps[0])
    threads = cfg.parameters[THREADS_PARAMETER].string_value if THREADS_PARAMETER in cfg.parameters else "1"
    return FUSED, FusedSizes(int(cfg.instance_group[0].count), int(threads or 1))


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="the shop's shoprank.yaml (its data folder holds the newest logs)")
    p.add_argument("--profile", help="the demo shop instead of --config")
    p.add_argument("--work", type=Path, help="the build's cache folder (default: build/<name or profile>/)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="the repository the server serves")
    p.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address")
    p.add_argument("--metrics-url", default="http://127.0.0.1:8002/metrics", help="Triton's metrics ('' : no watch)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if (args.config is None) == (args.profile is None):
        print("error: give --config (your shop) or --profile (the demo shop)", file=sys.stderr)
        return 2
    import tritonclient.grpc as grpcclient

    try:
        cfg, work, _ = build_mod.resolve(args.profile, args.config, args.work)
        shape, sizes = served_shape(args.repo)
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
        publisher = Publisher(args.repo, grpcclient.InferenceServerClient(args.url))
        served = Served(args.repo, publisher, args.metrics_url or None)
        entry = promote(served, work / CANDIDATE, ShopData.load(work / "data"), cfg.retrain, work)
    except (build_mod.BuildError, cfg_mod.ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (PublishError, ServedRepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{entry['decision']}: {'; '.join(entry['reasons']) or 'the candidate is not worse than the live release'}")
    return EXIT[entry["decision"]]


if __name__ == "__main__":
    sys.exit(main())

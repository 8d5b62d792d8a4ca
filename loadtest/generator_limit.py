"""At what rate does this machine's load generator itself become the limit?

    python -m loadtest.generator_limit --out build/generator_limit

Serves ``search`` and ``recommend`` as trivial Python models (same tensors, no work: they return
the first k candidates), so the server is as cheap as Triton gets. It then runs short soak tests at
increasing offered load, one Locust process, and later with workers. Where the achieved rate stops
following the offered rate while the Locust process nears a full core, the generator is the limit.
Writes ``generator_limit.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

from builders.repository.model_specs import spec_by_name
from loadtest import run as runner
from server.launcher import ServerOptions, TritonServer

TRIVIAL = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            ids = pb_utils.get_input_tensor_by_name(r, "ITEM_IDS").as_numpy()
            k = int(pb_utils.get_input_tensor_by_name(r, "TOP_K").as_numpy()[0])
            scores = np.zeros(min(k, len(ids)), np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOP_ITEM_IDS", ids[:k]),
                                                   pb_utils.Tensor("TOP_SCORES", scores)]))
        return out
"""


def trivial_repository(dest: Path) -> Path:
    """``search`` and ``recommend`` with the served ensembles' exact tensors, doing no work."""

    for name in ("search", "recommend"):
        spec = dataclasses.replace(spec_by_name()[name], platform="", backend="python", steps=(), instances=2)
        (dest / name / "1").mkdir(parents=True, exist_ok=True)
        (dest / name / "1" / "model.py").write_text(TRIVIAL)
        (dest / name / "config.pbtxt").write_text(spec.render())
    return dest


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("build/generator_limit"))
    p.add_argument("--repo", default=None, help="a built repository, for the request mix (default: small)")
    p.add_argument("--users", default="5,10,20,40,80", help="users per run; each paces to --rate-per-user")
    p.add_argument("--rate-per-user", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", default="0,2", help="Locust worker counts to try (0 = one process)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    repo = trivial_repository(args.out / "trivial_repo")
    rows = []
    with TritonServer(ServerOptions(model_repository=repo, log_file=args.out / "tritonserver.log")) as server:
        for workers in [int(w) for w in args.workers.split(",")]:
            for users in [int(u) for u in args.users.split(",")]:
                out = args.out / f"w{workers}_u{users}"
                run_args = [
                    "--host",
                    server.grpc_url,
                    "--metrics-url",
                    server.metrics_url,
                    "--shape",
                    "soak",
                    "--soak-users",
                    str(users),
                    "--soak-s",
                    str(args.seconds),
                    "--rate-per-user",
                    str(args.rate_per_user),
                    "--requests",
                    "2000",
                    "--out",
                    str(out),
                    "--workers",
                    str(workers),
                ]
                run_args += ["--repo", args.repo] if args.repo else []
                runner.main(run_args)
                with open(out / "locust_stats.csv") as f:
                    agg = {r["Name"]: r for r in csv.DictReader(f)}["Aggregated"]
                cpu = (out / "summary.md").read_text().split("busiest Locust process used ")[1].split("%")[0]
                rows.append(
                    (
                        workers,
                        users,
                        users * args.rate_per_user,
                        float(agg["Requests/s"]),
                        float(agg["50%"]),
                        float(agg["99%"]),
                        int(cpu),
                    )
                )
    lines = [
        "# Load-generator limit on this machine",
        "",
        "Server: trivial `search`/`recommend` python models (no work). "
        f"Generator: Locust {locust_version()}, "
        "gRPC through the SDK, on the same 2 cores.",
        "",
        "| Locust workers | users | offered req/s | achieved req/s | p50 ms | p99 ms | busiest Locust process CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {w or 'none (1 process)'} | {u} | {o:.0f} | {a:.0f} | {p50:.0f} | {p99:.0f} | {c}% |"
        for w, u, o, a, p50, p99, c in rows
    ]
    (args.out / "generator_limit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def locust_version() -> str:
    from importlib.metadata import version

    return version("locust")

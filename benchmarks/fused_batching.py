"""Does Triton's dynamic batching pay in the fused models? ``search_catalog`` served by variants of one repository
(only the configs differ: ``INSTANCES:MAX_BATCH`` each, 0 = one request per execution), the same requests, each
variant alone per round and the order rotated every round: p50 at concurrency 1, then req/s, p50 and p99 with 8 in
flight, and the requests per execution from Triton's statistics. Not a test: nothing asserts.

    python -m benchmarks.fused_batching --variants 2:0,2:4,3:0,3:4 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

from benchmarks.peer import loaded, plan, timed, triton_caller
from benchmarks.pipeline import fused_variant, machine, percentiles
from builders.repository.pipeline import InProcessPipeline
from server.launcher import ServerOptions, TritonServer

CALL = "search_catalog"


def measure(repo: Path, reqs: list[dict], n: int) -> dict[str, float]:
    import tritonclient.grpc as grpcclient

    with TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=600, response_cache_bytes=0)) as server:
        make = functools.partial(triton_caller, server.grpc_url)
        caller = make()
        for r in reqs[n : n + 20]:
            caller(CALL, r)
        times, _ = timed(caller, CALL, reqs[:n])
        latencies, seconds, _ = loaded(make, CALL, reqs[n:])
        client = grpcclient.InferenceServerClient(server.grpc_url)
        stats = client.get_inference_statistics(f"{CALL}_fused", as_json=True)["model_stats"][0]
    return {
        "p50": percentiles(times)[0],
        "rps": n / seconds,
        "p50_load": percentiles(latencies)[0],
        "p99_load": percentiles(latencies)[1],
        "per_execution": int(stats["inference_count"]) / int(stats["execution_count"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("build/default/bench_repo"))
    ap.add_argument("--variants", default="2:0,2:4,3:0,3:4", help="INSTANCES:MAX_BATCH, comma-separated")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    repos = {
        v: fused_variant(
            args.repo,
            args.repo.parent / f"bench_repo_batching_{v.replace(':', '_')}",
            instances=int(v.split(":")[0]),
            max_batch=int(v.split(":")[1]),
        )
        for v in names
    }
    reqs = plan(InProcessPipeline(args.repo), args.requests)[CALL]
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in names}
    for r in range(args.rounds):
        for v in names[r % len(names) :] + names[: r % len(names)]:
            runs[v].append(measure(repos[v], reqs, args.requests))
            print(r, v, {k: round(x, 2) for k, x in runs[v][-1].items()}, flush=True)
    print(f"{machine()}; {CALL}, {args.requests} requests, medians of {args.rounds} rounds")
    print("| instances:max batch | p50 (c=1) | req/s (8 in flight) | p50 (8 in flight) | p99 (8 in flight) ", end="")
    print("| requests per execution |")
    print("|---|---|---|---|---|---|")
    for v, rows in runs.items():
        med = {k: float(np.median([row[k] for row in rows])) for k in rows[0]}
        print(
            f"| {v} | {med['p50']:.2f} ms | {med['rps']:.0f} | {med['p50_load']:.1f} ms | {med['p99_load']:.1f} ms | "
            f"{med['per_execution']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

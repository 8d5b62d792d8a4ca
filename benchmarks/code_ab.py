"""This tree's serving code against an earlier commit's, on the same repository and the same requests, one run
(``make bench-code-ab BEFORE=<commit>``; results in docs/benchmarks.md).

``before`` is the earlier commit's launcher in a git worktree (``--before-code``), ``after`` this tree's; both
serve ``--repo``, a repository this tree built, so the comparison is of the serving code alone (it holds for
changes that keep the repository's format). Both servers are up together, each called with raw
``tritonclient`` over gRPC, on the requests of ``make bench-peer`` (``benchmarks.peer.plan``):

* concurrency 1: each request sent to both servers in turn, the order alternating, so a slow phase of the
  machine falls on both;
* load: 8 requests in flight on as many other requests, ``--rounds`` passes per server, the servers taking the
  passes in turn (before, after, after, before, ...); req/s and p99 are the medians over the passes.

Parity: the top-k ids of every concurrency-1 answer, before against after. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from benchmarks.peer import CALLS, emit, in_turn, loaded, plan, timed, triton_caller
from benchmarks.pipeline import machine, percentiles
from benchmarks.search_cost import start_before, wait_ready
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from server.launcher import ServerOptions, TritonServer

SIDES = ("before", "after")
Caller = Callable[[str, dict], list[int]]
WARMUP = 20


def concurrency_one(callers: dict[str, Caller], name: str, reqs: list[dict]) -> dict:
    """Every request of ``reqs`` to each side in turn: per side, its latencies (ms) and answers."""
    out: dict[str, dict[str, list]] = {side: {"times": [], "answers": []} for side in callers}
    for i, r in enumerate(reqs):
        for side in in_turn(callers, i):
            times, answers = timed(callers[side], name, [r])
            out[side]["times"] += times
            out[side]["answers"] += answers
    return out


def under_load(makers: dict[str, Callable[[], Caller]], name: str, reqs: list[dict], rounds: int):
    """``rounds`` passes of ``reqs`` with 8 in flight per side, the sides in turn: per side, its req/s and p99s."""
    out: dict[str, dict[str, list[float]]] = {side: {"rps": [], "p99": []} for side in makers}
    for r in range(rounds):
        for side in in_turn(makers, r):
            latencies, seconds, _ = loaded(makers[side], name, reqs)
            out[side]["rps"].append(len(reqs) / seconds)
            out[side]["p99"].append(percentiles(latencies)[1])
    return out


def measure(urls: dict[str, str], requests: dict[str, list[dict]], rounds: int) -> dict:
    """Per call and side: p50/p99 at concurrency 1, req/s and p99 with 8 in flight (medians over the passes);
    per call, how many answers the sides share."""
    makers: dict[str, Callable[[], Caller]] = {
        side: functools.partial(triton_caller, url) for side, url in urls.items()
    }
    callers = {side: make() for side, make in makers.items()}
    results: dict = {}
    for name in CALLS:
        half = len(requests[name]) // 2
        first, others = requests[name][:half], requests[name][half:]
        for side in SIDES:
            timed(callers[side], name, others[:WARMUP])
        one = concurrency_one(callers, name, first)
        load = under_load(makers, name, others, rounds)
        results[name] = {}
        for side in SIDES:
            p50, p99 = percentiles(one[side]["times"])
            rps, p99_load = (statistics.median(load[side][k]) for k in ("rps", "p99"))
            results[name][side] = {"p50": p50, "p99": p99, "rps": rps, "p99_load": p99_load}
        pairs = zip(one["before"]["answers"], one["after"]["answers"], strict=True)
        results[name]["same"] = sum(a == b for a, b in pairs)
        results[name]["n"] = len(first)
    return results


def table(results: dict, before: str, n: int, rounds: int) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; the serving code of `{before}` (before) against this "
        f"tree's (after), both up and serving the same repository; {n} requests per call at concurrency 1, each sent "
        f"to both in turn, then {rounds} passes per server of {n} other requests with 8 in flight, taken in turn "
        "(`make bench-code-ab`, benchmarks/code_ab.py).",
        "",
        "| call | p50 before / after (c=1) | p99 before / after (c=1) | req/s before / after (8 in flight) "
        "| p99 before / after (8 in flight) | after / before: p50, req/s | same top-k |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        b, a = r["before"], r["after"]
        lines.append(
            f"| `{name}` | {b['p50']:.2f} / {a['p50']:.2f} ms | {b['p99']:.1f} / {a['p99']:.1f} ms "
            f"| {b['rps']:.0f} / {a['rps']:.0f} | {b['p99_load']:.0f} / {a['p99_load']:.0f} ms "
            f"| {a['p50'] / b['p50']:.2f}x, {a['rps'] / b['rps']:.2f}x | {r['same']}/{r['n']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m benchmarks.code_ab", description=__doc__.splitlines()[0])
    p.add_argument("--before-code", type=Path, required=True, help="a worktree of the earlier commit")
    p.add_argument("--before-label", default=None, help="how the table names it (default: the folder)")
    p.add_argument("--repo", type=Path, required=True, help="the repository both serve (this tree's build)")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--rounds", type=int, default=4, help="load passes per server")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    requests = plan(InProcessPipeline(repo), args.requests)
    log = Path("build") / "logs" / "code_ab_before.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc, before_url = start_before(args.before_code.resolve(), repo, log)
    after = TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=600))  # as shipped, as before's
    try:
        after.start()
        wait_ready(before_url, timeout_s=600)
        results = measure({"before": before_url, "after": after.grpc_url}, requests, args.rounds)
    finally:
        after.stop()
        proc.terminate()
        proc.wait(timeout=60)
    label = args.before_label or args.before_code.name
    emit(table(results, label, args.requests, args.rounds), args.out, f"code-ab-{label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

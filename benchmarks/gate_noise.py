"""How far apart the retrain gate's latency verdict puts two equal releases (``make bench-gate-noise``;
results in docs/retrain.md).

The gate (``retrain/gate.py``) refuses a candidate that is slower than the live release by more than
``retrain.latency_margin`` (25%). Here both sides are the same release, so every verdict other than 0% is
noise. Each round times the held-out lists both ways, each with fresh in-process pipelines: ``one after
the other`` (every list by the live release, then every list by the candidate: what the gate did before)
and ``in turns`` (``gate.score_side_by_side``: list by list, which release goes first alternating: what it
does now), while ``--threads`` SDK threads in this process send searches to a tritonserver serving the same
repository without pause: the load the retrain test publishes under. Both verdicts are
``gate.time_ratio``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pipeline import machine, write_section
from builders.build import REPO_ROOT
from builders.data.dataset import ShopData
from builders.repository.pipeline import InProcessPipeline
from loadtest.background import under_load
from retrain import gate
from runtime import cli_logging
from runtime.repository import serving_version
from server.launcher import ServerOptions, TritonServer
from shoprank_client import RankingClient
from shoprank_client.types import ClientOptions, RetryPolicy


def rounds(repo: Path, lists: gate.HeldOut, n: int) -> list[tuple[float, float]]:
    """Per round, the verdicts ``(one after the other, in turns)`` on the release against itself."""
    version = serving_version(repo)
    got = []
    for r in range(n):
        live, candidate = (gate.score(InProcessPipeline(repo, version), lists)[1] for _ in range(2))
        apart = gate.time_ratio(live, candidate)
        pipelines = {name: InProcessPipeline(repo, version) for name in ("live", "candidate")}
        turns = gate.score_side_by_side(pipelines, lists)
        together = gate.time_ratio(turns["live"][1], turns["candidate"][1])
        print(f"round {r + 1}: one after the other {apart:+.1%}, in turns {together:+.1%}", flush=True)
        got.append((apart, together))
    return got


def under_sdk_load(repo: Path, shop: ShopData, threads: int, action: Callable[[], Any]) -> Any:
    """``action()`` while ``threads`` threads send searches to a tritonserver serving ``repo``."""
    users = [int(u) for u in shop.user_ids[:20]]
    candidates = [int(i) for i in shop.item_ids[:100]]
    with TritonServer(ServerOptions(model_repository=repo)) as server:
        client = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=1)))

        def ask(i: int) -> int | None:
            return client.search(users[i % len(users)], "dress", candidates, k=10).release

        result, answers, failures = under_load(ask, action, threads)
    print(f"load: {len(answers)} searches answered, {len(failures)} failed")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "default", help="a build's cache folder")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT / "build" / "default" / "bench_repo")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=3, help="SDK threads loading the server (0: no load)")
    parser.add_argument("--max-lists", type=int, default=1500)
    parser.add_argument("--out", type=Path, help="write the table into this markdown file's gate-noise section")
    args = parser.parse_args(argv)
    cli_logging.configure()
    shop = ShopData.load(args.work / "data")
    lists = gate.held_out(shop, args.max_lists)
    print(f"{len(lists)} held-out lists, {args.rounds} rounds, {args.threads} SDK threads of load")
    if args.threads:
        got = under_sdk_load(args.repo, shop, args.threads, lambda: rounds(args.repo, lists, args.rounds))
    else:
        got = rounds(args.repo, lists, args.rounds)
    a = np.array(got)
    rows = [
        "| verdict on a release against itself | rounds | lowest | highest | largest distance from 0 | SD |",
        "|---|---|---|---|---|---|",
    ]
    for name, col in (("one after the other", a[:, 0]), ("in turns, list by list (the gate)", a[:, 1])):
        rows.append(
            f"| {name} | {len(col)} | {col.min():+.1%} | {col.max():+.1%} | {np.abs(col).max():.1%} | {col.std():.1%} |"
        )
    text = "\n".join(
        [
            f"{len(lists)} held-out lists of `{args.work.name}`, {args.threads} SDK threads loading a tritonserver "
            f"on the same machine. Machine: {machine()}.",
            "",
            *rows,
            "",
            f"Reproduce: `make bench-gate-noise` (`python -m benchmarks.gate_noise --rounds {args.rounds} "
            f"--threads {args.threads}`).",
            "",
        ]
    )
    print(text)
    if args.out:
        write_section(args.out, "gate-noise", text)


if __name__ == "__main__":
    main()

"""Tuning sweep of the served search ensemble on this machine, and Triton's response cache on the
query encoder under the shop's real query mix.

    python -m benchmarks.tuning --profile default --out docs/tuning.md      (make bench-tuning)

Sweep: one setting changed at a time from the current defaults (``builders/repository/model_specs.py``):
dynamic batching (queue delay, preferred batch sizes) and instance counts of the encoder and the
ranker, and the Python models' instances. Each configuration is served by a fresh tritonserver on
a copy of the built repository (only ``config.pbtxt`` differs), and gets the same requests: p50 and
p99 at concurrency 1, and throughput with 8 requests in flight. The sweep runs ``--rounds`` times
in alternating order; the table has the median.

Response cache: the search requests replay the shop's query log in time order (head queries
repeat: in the default shop's last 2,000 searches, about 460 distinct queries), each with its own
user and candidates; the encoder's response cache (``response_cache { enable: true }`` and
``--cache-config local,size=...``) against none, same requests. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import statistics
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, make_requests, serve_and_measure, write_section
from builders.data.dataset import ShopData
from builders.repository.model_specs import ENSEMBLE, specs
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import contract as c

logger = logging.getLogger(__name__)

CACHE_BYTES = 64 * 1024 * 1024

# name -> {model: overrides of its ModelSpec fields}
SWEEP: dict[str, dict[str, dict]] = {
    "defaults": {},
    "encoder delay 0": {c.TEXT_ENCODER: {"max_queue_delay_us": 0}},
    "encoder delay 500 us": {c.TEXT_ENCODER: {"max_queue_delay_us": 500}},
    "encoder delay 1000 us": {c.TEXT_ENCODER: {"max_queue_delay_us": 1000}},
    "encoder delay 2000 us, preferred 4/8": {
        c.TEXT_ENCODER: {"max_queue_delay_us": 2000, "preferred_batch_sizes": (4, 8)}
    },
    "encoder 2 instances x 1 thread": {c.TEXT_ENCODER: {"instances": 2, "parameters": {"intra_op_thread_count": "1"}}},
    "ranker 1 instance": {c.RANKER: {"instances": 1}},
    "ranker delay 500 us": {c.RANKER: {"max_queue_delay_us": 500}},
    "features/topk 1 instance": {c.SEARCH_FEATURES: {"instances": 1}, c.TOPK: {"instances": 1}},
}


def write_configs(repo: Path, overrides: dict[str, dict], response_cache: bool = False) -> None:

    for spec in specs(layout=ENSEMBLE):  # the sweep tunes the ensemble layout's steps
        changes = dict(overrides.get(spec.name, {}))
        if spec.name == c.TEXT_ENCODER:
            changes["response_cache"] = response_cache  # the sweep measures batching without the cache
        (repo / spec.name / "config.pbtxt").write_text(dataclasses.replace(spec, **changes).render())


def query_log_requests(work: Path, pipeline, n: int, candidates: int, seed: int = 0):
    """The last ``n`` searches of the shop's log in time order, each with its user and random candidates."""

    shop = ShopData.load(work / "data")
    searches = np.flatnonzero((shop.session_query >= 0) & (shop.session_user >= 0))[-n:]
    rng = np.random.default_rng(seed)
    items = pipeline.search_store.tables.item_ids_sorted
    return [
        (
            int(shop.user_ids[shop.session_user[s]]),
            shop.queries[shop.session_query[s]],
            rng.choice(items, size=candidates, replace=False),
            10,
        )
        for s in searches
    ]


def run(
    work: Path,
    n: int,
    in_flight: int,
    rounds: int,
    parts: tuple[str, ...] = ("sweep", "cache"),
    configs: list[str] | None = None,
) -> dict:

    repo = work / "tuning_repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(work / "bench_repo_ensemble", repo)  # make bench-tuning builds it (--layout ensemble)
    pipeline = InProcessPipeline(repo)
    requests = make_requests(pipeline, n, 100)
    names = ["defaults"] + [n for n in (configs or SWEEP) if n != "defaults"]
    unknown = sorted(set(names) - set(SWEEP))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {list(SWEEP)}")
    sweep: dict[str, list[dict]] = {name: [] for name in names} if "sweep" in parts else {}
    for r in range(rounds if sweep else 0):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            logger.info(f"[sweep round {r + 1}] {name}")
            write_configs(repo, SWEEP[name])
            sweep[name].append(serve_and_measure(repo, requests, in_flight))
    # The last 4,000 searches of the log: the first half one at a time (latency, cache warming up
    # after 20 warm-up requests), the second half under load (the cache holds the first half's queries).
    log_requests = query_log_requests(work, pipeline, 4000, 100)
    first, second = log_requests[:2000], log_requests[2000:]
    cache: dict[str, list[dict]] = {"no cache": [], "encoder response cache": []} if "cache" in parts else {}
    for r in range(rounds if cache else 0):
        for name in list(cache) if r % 2 == 0 else list(reversed(cache)):
            logger.info(f"[cache round {r + 1}] {name}")
            on = name != "no cache"
            write_configs(repo, {}, response_cache=on)
            cache[name].append(
                serve_and_measure(repo, first, in_flight, CACHE_BYTES if on else 0, load_requests=second)
            )
    write_configs(repo, {})
    return {
        "sweep": sweep,
        "cache": cache,
        "n": n,
        "in_flight": in_flight,
        "rounds": rounds,
        "distinct_queries": [len({q for _, q, _, _ in part}) for part in (first, second)],
        "log_requests": len(first),
    }


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(x[key] for x in runs)


def tables(r: dict) -> str:
    lines = []
    if r["sweep"]:
        lines += [
            "| configuration | p50 (conc. 1) | p99 (conc. 1) | req/s (8 in flight) | req/s vs defaults |",
            "|---|---|---|---|---|",
        ]
    for name, runs in r["sweep"].items():
        base = r["sweep"]["defaults"]
        lines.append(
            f"| {name} | {_med(runs, 'p50'):.2f} ms | {_med(runs, 'p99'):.2f} ms | {_med(runs, 'rps'):.0f} | "
            f"{statistics.median(x['rps'] / b['rps'] for x, b in zip(runs, base, strict=True)):.2f}x |"
        )
    if not r["cache"]:
        return "\n".join(lines)
    n1, n2 = r["distinct_queries"]
    lines += [
        "",
        f"Response cache on `text_encoder`, the shop's last 4,000 searches replayed in time order: the "
        f"first {r['log_requests']} ({n1} distinct queries) one at a time, then the next "
        f"{r['log_requests']} ({n2} distinct) with 8 in flight:",
        "",
        "| configuration | hit rate, first half | p50 (conc. 1) | p99 (conc. 1) | hit rate, second half | "
        "req/s (8 in flight) |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in r["cache"].items():
        lines.append(
            f"| {name} | {_med(runs, 'hit_rate_seq'):.0%} | {_med(runs, 'p50'):.2f} ms | "
            f"{_med(runs, 'p99'):.2f} ms | {_med(runs, 'hit_rate_load'):.0%} | {_med(runs, 'rps'):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--parts", nargs="+", default=["sweep", "cache"], choices=["sweep", "cache"])
    p.add_argument("--configs", nargs="+", default=None, help="only these sweep configurations (and the defaults)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    r = run(Path("build") / args.profile, args.requests, args.in_flight, args.rounds, tuple(args.parts), args.configs)
    text = (
        f"Machine: {machine()}\n\nDate: {date.today().isoformat()}; profile `{args.profile}`; "
        f"{r['n']} search requests (1 query, 100 candidates, k=10) per configuration; median of {r['rounds']} "
        f"rounds in alternating order. Reproduce: `make bench-tuning`.\n\n{tables(r)}\n"
    )
    print(text)
    if args.out:
        write_section(args.out, "tuning-" + "-".join(args.parts) + ("-confirm" if args.configs else ""), text)
        print(f"written into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The query-stats build step at a large shop's size: time and peak memory (``python -m benchmarks.query_stats_scale``).

A generated statistics window of ``--lists`` search lists of ``--per-list`` impressions each, over
``--queries`` distinct queries (Zipf-distributed, so a head and a long tail) and ``--items`` items, is
counted by ``builders.learning.query_stats.build`` exactly as a build counts a shop's. Reported: the
seconds, the peak resident memory of the process (``ru_maxrss``) against the memory of the window's own
arrays (what the build holds anyway), the queries kept and the tables' size. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks.pipeline import machine
from benchmarks.synthetic import logs_only_shop
from builders.data.config import QueryStatsConfig
from builders.data.dataset import ShopData
from builders.learning import query_stats


def window(n_lists: int, per_list: int, n_queries: int, n_items: int, seed: int = 0) -> ShopData:
    rng = np.random.default_rng(seed)
    n = n_lists * per_list
    weights = 1.0 / np.arange(1, n_queries + 1) ** 1.05
    query = rng.choice(n_queries, size=n_lists, p=weights / weights.sum())
    # drawn in this order, as before: the same shop for a seed
    category, brand = rng.integers(0, 500, n_items), rng.integers(0, 5_000, n_items)
    items, click = rng.integers(0, n_items, n), (rng.random(n) < 0.05).astype(np.int8)
    queries = [f"query number {i}" for i in range(n_queries)]
    return logs_only_shop(
        category,
        np.arange(n_lists, dtype=np.int64),
        query.astype(np.int64),
        per_list,
        items,
        click,
        queries,
        brand,
        [f"b{i}" for i in range(5_000)],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.query_stats_scale", description=__doc__.splitlines()[0])
    p.add_argument("--lists", type=int, default=2_000_000)
    p.add_argument("--per-list", type=int, default=30)
    p.add_argument("--queries", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=10_000_000)
    args = p.parse_args(argv)
    shop = window(args.lists, args.per_list, args.queries, args.items)
    own = sum(v.nbytes for v in shop.__dict__.values() if isinstance(v, np.ndarray))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    emb = np.zeros((args.queries, 384), np.float32)  # the embeddings step's queries.npy (a memory map in a build)
    start = time.perf_counter()
    stats, report = query_stats.build(shop, QueryStatsConfig(), emb)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"Machine: {machine()}")
    print(
        f"{args.lists:,} lists x {args.per_list} impressions ({args.lists * args.per_list:,}), {args.queries:,} "
        f"queries, {args.items:,} items: {seconds:.1f} s; the window's own arrays {own / 2**30:.2f} GiB; "
        f"peak RSS {peak / 2**30:.2f} GiB (before the step {before / 2**30:.2f} GiB); "
        f"kept {report['kept_queries']:,} queries covering "
        f"{report['share_of_lists_covered']:.1%} of the lists; tables {report['bytes'] / 2**20:.0f} MiB; "
        f"pairs {report['pairs']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

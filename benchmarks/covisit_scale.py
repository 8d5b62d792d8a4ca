"""The covisit build step at a large shop's size: time and peak memory (``python -m benchmarks.covisit_scale``).

A generated statistics window of ``--sessions`` visits of ``--lists-per-session`` lists of ``--per-list``
impressions each (a click rate of ``--ctr``; every list after a visit's first is a product page, the page of
an item clicked before it) over ``--items`` items (Zipf-popular, so some items are in many sessions) is
counted by ``builders.learning.covisit.build`` exactly as a build counts a shop's. Reported: the seconds,
the peak resident memory of the process (``ru_maxrss``) against the memory of the window's own arrays
(what the build holds anyway), the passes, pairs and the tables' size. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks.pipeline import machine
from benchmarks.synthetic import logs_only_shop
from builders.data.config import CovisitConfig
from builders.data.dataset import ShopData
from builders.learning import covisit


def window(n_sessions: int, lists_per: int, per_list: int, n_items: int, ctr: float, seed: int = 0) -> ShopData:
    rng = np.random.default_rng(seed)
    n_lists = n_sessions * lists_per
    n = n_lists * per_list
    # Zipf-like popularity without a 10M-entry probability table: item = floor(n_items * u^3)
    items = np.minimum((n_items * rng.random(n) ** 3).astype(np.int64), n_items - 1)
    click = (rng.random(n) < ctr).astype(np.int8)
    group = np.repeat(np.arange(n_sessions, dtype=np.int64), lists_per)
    time_ = group * 86_400 // 50 + np.tile(np.arange(lists_per, dtype=np.int64) * 600, n_sessions)
    context = np.where(np.tile(np.arange(lists_per), n_sessions) > 0, items[::per_list], -1).astype(np.int64)
    return logs_only_shop(
        rng.integers(0, 500, n_items),  # drawn after the clicks, as before: the same shop for a seed
        time_,
        np.full(n_lists, -1, np.int64),
        per_list,
        items,
        click,
        session_context=context,
        session_group=group,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.covisit_scale", description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1_000_000)
    p.add_argument("--lists-per-session", type=int, default=3)
    p.add_argument("--per-list", type=int, default=20)
    p.add_argument("--items", type=int, default=10_000_000)
    p.add_argument("--ctr", type=float, default=0.15)
    args = p.parse_args(argv)
    shop = window(args.sessions, args.lists_per_session, args.per_list, args.items, args.ctr)
    own = sum(v.nbytes for v in shop.__dict__.values() if isinstance(v, np.ndarray))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    tables, report = covisit.build(shop, CovisitConfig())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n = len(shop.imp_item)
    print(f"Machine: {machine()}")
    print(
        f"{args.sessions:,} sessions x {args.lists_per_session} lists x {args.per_list} impressions ({n:,}), "
        f"{args.items:,} items: {seconds:.1f} s; {report['interactions']:,} interactions; the window's own "
        f"arrays {own / 2**30:.2f} GiB; peak RSS {peak / 2**30:.2f} GiB (before the step {before / 2**30:.2f} GiB); "
        f"{report['passes']} passes; {report['pairs']:,} pairs kept for {report['items_with_pairs']:,} items; "
        f"tables {report['bytes'] / 2**20:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The online store measured through the served ensemble: two real tritonservers on the small build, one
without the store and one reading a real redis-server, the same requests sent to both, interleaved.

1. **Search p50/p99, with and without the store**, at 100 and 1,000 candidates. Sequential SDK calls.
2. **Update to visible**: the time from a push (the top item sold out) until a search no longer returns
   it, first from one feature-model instance and then from every one. The search is polled every 5 ms
   at the default staleness bound (1,000 ms) and at 100 ms.
3. **Under updates**: a Locust run (``loadtest.run``) at a steady rate against the server that reads the
   store, alternately with and without ``--online-url``: 1,000 writes/s into the same Redis, 2 in 10
   session clicks, the rest price/stock updates (``loadtest/online_writes.py``). Reports failed
   requests and search p99 of each run, after an unrecorded warm-up run, in 3 alternated rounds.

``python -m benchmarks.online_served [--requests 200] [--out docs/online.md]``; ``make bench-online-served``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, small_build_main
from builders.repository.pipeline import InProcessPipeline
from loadtest.run import locust_rows, scrape, writes_per_s
from loadtest.run import main as locust_run
from online.writer import ItemUpdate, OnlineWriter
from runtime.online_store import OnlineSettings, connect
from server.launcher import ServerOptions, TritonServer
from server.redis_server import RedisServer
from shoprank_client import RankingClient

SIZES = (100, 1000)
USERS = 10
SOAK_S = 20


def store_reads(server) -> dict[str, float]:
    """The online server's ``shoprank_online_reads_total`` by outcome, both feature models together."""

    by_outcome = scrape(server.metrics_url, label="outcome")
    return {outcome: v for (name, outcome), v in by_outcome.items() if name == "shoprank_online_reads_total"}


def fallbacks(before: dict[str, float], after: dict[str, float]) -> str:
    """``failed + skipped`` reads (the build's values used) out of all, between two scrapes."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return f"{d.get('failed', 0) + d.get('skipped', 0):.0f} of {sum(d.values()):.0f}"


def locust_row(repo: Path, server, redis_url: str, round_: int, with_writes: bool) -> str:
    """One headless Locust run (``loadtest.run``) against ``server``; its table row."""

    out = Path("build/bench-online-served") / f"round{round_}-{'writes' if with_writes else 'plain'}"
    args = ["--repo", str(repo), "--shop", "build/small/data", "--host", server.grpc_url]
    args += ["--metrics-url", server.metrics_url, "--shape", "soak", "--soak-users", str(USERS)]
    args += ["--soak-s", str(SOAK_S), "--rate-per-user", "5", "--out", str(out)]
    if with_writes:
        args += ["--", "--online-url", redis_url, "--online-prefix", "bench", "--update-rate", "1000"]
    before = store_reads(server)
    locust_run(args)
    after = store_reads(server)
    rows = locust_rows(out / "locust_stats.csv")
    ranking = [rows[n] for n in ("search", "recommend") if n in rows]
    writes = [rows[n] for n in ("update", "click") if n in rows]
    rate = sum(writes_per_s(r) for r in writes)
    return (
        f"| {round_} | {'1,000/s' if with_writes else 'none'} | {sum(int(r['Request Count']) for r in ranking)} "
        f"| {sum(int(r['Failure Count']) for r in ranking)} | {rows['search']['50%']} ms | {rows['search']['99%']} ms "
        f"| {rows['recommend']['99%'] if 'recommend' in rows else '-'} ms "
        f"| {f'{rate:.0f}' if writes else '-'} | {sum(int(r['Failure Count']) for r in writes) if writes else '-'} "
        f"| {fallbacks(before, after)} |"
    )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def progress(text: str) -> None:
    print(f"[online_served] {text}", file=sys.stderr, flush=True)


def measure(repo: Path, n_requests: int) -> list[str]:

    tables = InProcessPipeline(repo).search_store.tables
    items, users = tables.item_ids_sorted, tables.user_ids_sorted
    rng = np.random.default_rng(0)
    lines = [f"Machine: {machine()}.", ""]
    with RedisServer() as redis_server:
        writer = OnlineWriter(connect(OnlineSettings(url=redis_server.url, timeout_s=5)), prefix="bench")
        writer.seed(repo)
        env = {"SHOPRANK_ONLINE_URL": redis_server.url, "SHOPRANK_ONLINE_PREFIX": "bench"}
        plain = TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=300))
        online = TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=300, env=env))
        fast = TritonServer(
            ServerOptions(
                model_repository=repo, ready_timeout_s=300, env={**env, "SHOPRANK_ONLINE_STALENESS_MS": "100"}
            )
        )
        with plain, online, fast:
            clients = [RankingClient(s.grpc_url, timeout_s=10) for s in (plain, online, fast)]

            # 1. Served search, same requests, interleaved.
            lines += [
                f"**Served search** ({n_requests} sequential requests per size, the same to both servers):",
                "",
                "| candidates | build values p50 / p99 | online store p50 / p99 | the store adds (p50) | "
                "store reads that fell back (timeout) |",
                "|---|---|---|---|---|",
            ]
            for n in SIZES:
                reqs = [
                    (int(users[i % len(users)]), [int(x) for x in rng.choice(items, n, replace=False)])
                    for i in range(n_requests)
                ]
                for c in clients[:2]:
                    for user, cands in reqs[:20]:
                        c.search(user, "running shoes", cands, k=10)
                times: list[list[float]] = [[], []]
                before = store_reads(online)
                for user, cands in reqs:
                    for i, c in enumerate(clients[:2]):
                        start = time.perf_counter()
                        c.search(user, "running shoes", cands, k=10)
                        times[i].append((time.perf_counter() - start) * 1e3)
                p50 = [statistics.median(t) for t in times]
                cells = " | ".join(f"{statistics.median(t):.2f} / {pct(t, 99):.2f} ms" for t in times)
                lines.append(
                    f"| {n} | {cells} | +{p50[1] - p50[0]:.2f} ms | {fallbacks(before, store_reads(online))} |"
                )

            progress("served search measured")
            # 2. Update to visible.
            lines += [
                "",
                "**Update to visible** (4 searches cache the top item in both feature-model instances; a random "
                "wait within the staleness bound; push stock 0 for it; poll the same search every 5 ms. *First*: the "
                "first ranking without it; *every instance*: from when it stays gone, 6 rankings in a row; then "
                "restock):",
                "",
                "| staleness bound | trials | first p50 / p99 | every instance p50 / p99 / max |",
                "|---|---|---|---|",
            ]
            for client, bound in ((clients[1], 1000), (clients[2], 100)):
                first: list[float] = []
                every: list[float] = []
                for trial in range(30):
                    user, cands = int(users[trial]), [int(x) for x in rng.choice(items, 100, replace=False)]
                    top = client.search(user, "gift", cands, k=3).item_ids[0]
                    for _ in range(3):
                        client.search(user, "gift", cands, k=3)
                    time.sleep(rng.uniform(0, bound / 1e3))  # a push lands at any point of the cache's life
                    pushed = time.perf_counter()
                    writer.apply([ItemUpdate(int(top), {"stock": 0})])
                    seen_first, gone_since, gone_in_a_row = None, None, 0
                    while gone_in_a_row < 6:
                        answered = time.perf_counter()
                        if top in client.search(user, "gift", cands, k=3).item_ids:
                            gone_since, gone_in_a_row = None, 0
                        else:
                            seen_first = answered if seen_first is None else seen_first
                            gone_since = answered if gone_since is None else gone_since
                            gone_in_a_row += 1
                        if time.perf_counter() - pushed > 10:
                            raise RuntimeError(f"item {top}: still ranked 10 s after it sold out")
                        time.sleep(0.005)
                    assert seen_first is not None and gone_since is not None
                    first.append((seen_first - pushed) * 1e3)
                    every.append((gone_since - pushed) * 1e3)
                    writer.apply([ItemUpdate(int(top), {"stock": 5})])
                lines.append(
                    f"| {bound} ms | {len(first)} | {statistics.median(first):.0f} / {pct(first, 99):.0f} ms "
                    f"| {statistics.median(every):.0f} / {pct(every, 99):.0f} / {max(every):.0f} ms |"
                )

            progress("update-to-visible measured")
            # 3. A Locust run at a steady rate, with and without 1,000 online writes/s, alternated.
            lines += [
                "",
                f"**Locust at a steady rate with and without 1,000 online writes/s** (`loadtest.run`, soak shape, "
                f"{USERS} users pacing to 5 req/s each, the prepared search/recommend mix, {SOAK_S} s per run, "
                "alternated; writes: 80% price+stock updates of the requests' candidates, 20% session clicks "
                "of the requests' users, 50 pipelined batches/s; the online server reads the same Redis):",
                "",
                "| run | writes | ranking requests | failed | search p50 | search p99 | recommend p99 | "
                "writes/s achieved | failed write batches | store reads that fell back |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            writer.clear()
            writer.seed(repo)
            locust_row(repo, online, redis_server.url, 0, True)  # warm-up, not recorded
            for round_ in (1, 2, 3):
                for with_writes in (False, True):
                    writer.clear()  # every run starts from the build's snapshot, with no recent activity
                    writer.seed(repo)
                    lines.append(locust_row(repo, online, redis_server.url, round_, with_writes))
            for c in clients:
                c.close()
    return lines


def main(argv: list[str] | None = None) -> int:

    return small_build_main(argv, __doc__, "bench-online-served", 200, measure)


if __name__ == "__main__":
    sys.exit(main())

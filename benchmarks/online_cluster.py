"""The online store on one Redis against a 3-master Redis Cluster (a replica each), measured side by side
(``make bench-online-cluster``; results in docs/online.md).

1. **Served read cost**: two real tritonservers on the small build, one reading a single redis-server, one the
   cluster, both with the cache off (staleness 0: every request reads the store); the same search requests
   to both in alternating order, at 100 and 1,000 candidates: p50/p99 ms.
2. **Capacity**: reader processes (``OnlineItems.read`` in a loop, cache off, 300 candidates a read) against
   the single node and against the cluster, one after the other: reads/s and keys/s summed over the processes.
3. **Failover**: a master SIGKILLed while a reader reads in a loop: seconds until every value reads again
   (the replica promoted), over several kills, p50/p99; and how many reads saw the lost slots as the build's.
4. **Write throughput during a reshard**: updates/s of a writer streaming batches of 50, before and while
   ``redis-cli --cluster reshard`` moves 1,000 slots.

``python -m benchmarks.online_cluster --repo build/small/bench_repo [--requests 200] [--kills 5]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pipeline import machine
from online.writer import ItemUpdate, OnlineWriter
from runtime.features import FeatureStore
from runtime.online import OnlineItems
from runtime.online_store import OnlineSettings, connect
from server.launcher import ServerOptions, TritonServer
from server.redis_cluster import RedisCluster
from server.redis_server import RedisServer

PREFIX = "benchc"
SIZES = (100, 1000)


def percentiles(ms: list[float]) -> str:
    return f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"


def served_cost(repo: Path, requests: int) -> list[str]:
    import tritonclient.grpc as grpcclient

    items = FeatureStore.load(repo / "search_features" / "1", with_tokenizer=False).tables.item_ids_sorted
    rng = np.random.default_rng(0)
    lines = ["| candidates | one Redis p50 / p99 ms | 3-master cluster p50 / p99 ms |", "|---|---|---|"]
    with RedisServer() as single, RedisCluster() as cluster:
        OnlineWriter(connect(OnlineSettings(url=single.url, timeout_s=5)), prefix=PREFIX).seed(repo)
        seeds = tuple(cluster.nodes)
        cs = OnlineSettings(url=cluster.url, timeout_s=5, cluster=True, seeds=seeds)
        OnlineWriter(connect(cs), prefix=PREFIX, cluster=True).seed(repo)
        common = {
            "SHOPRANK_ONLINE_PREFIX": PREFIX,
            "SHOPRANK_ONLINE_STALENESS_MS": "0",
            "SHOPRANK_ONLINE_TIMEOUT_MS": "100",
        }
        envs = {
            "single": {**common, "SHOPRANK_ONLINE_URL": single.url},
            "cluster": {
                **common,
                "SHOPRANK_ONLINE_URL": cluster.url,
                "SHOPRANK_ONLINE_CLUSTER": "1",
                "SHOPRANK_ONLINE_SEEDS": cluster.seeds,
            },
        }
        servers = {
            name: TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=240, env=env))
            for name, env in envs.items()
        }
        try:
            for s in servers.values():
                s.start()
            clients = {name: grpcclient.InferenceServerClient(s.grpc_url) for name, s in servers.items()}
            for n in SIZES:
                n = min(n, len(items))
                times: dict[str, list[float]] = {name: [] for name in clients}
                for i in range(requests + 20):
                    cands = rng.choice(items, n, replace=False).astype(np.int64)
                    inputs = [
                        grpcclient.InferInput("USER_ID", [1], "INT64"),
                        grpcclient.InferInput("QUERY", [1], "BYTES"),
                        grpcclient.InferInput("ITEM_IDS", [n], "INT64"),
                        grpcclient.InferInput("TOP_K", [1], "INT32"),
                    ]
                    inputs[0].set_data_from_numpy(np.array([-1], np.int64))
                    inputs[1].set_data_from_numpy(np.array([b"shoes"], object))
                    inputs[2].set_data_from_numpy(cands)
                    inputs[3].set_data_from_numpy(np.array([10], np.int32))
                    for name in list(clients) if i % 2 == 0 else list(clients)[::-1]:
                        start = time.perf_counter()
                        clients[name].infer("search", inputs)
                        if i >= 20:
                            times[name].append((time.perf_counter() - start) * 1e3)
                lines.append(f"| {n} | {percentiles(times['single'])} | {percentiles(times['cluster'])} |")
        finally:
            for s in servers.values():
                s.stop()
    return lines


def _reader(settings_kwargs: dict, ids: np.ndarray, seconds: float, out: mp.Queue) -> None:

    reader = OnlineItems(OnlineSettings(**settings_kwargs), log=lambda _: None)
    rng = np.random.default_rng(os.getpid())
    reads = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reader.read(rng.choice(ids, 300, replace=False), user_id=7)
        reads += 1
    out.put((reads, reader.failures + reader.partial_failures))


def capacity(processes: int, seconds: float) -> list[str]:

    ids = np.arange(1, 20_001, dtype=np.int64)
    lines = ["| store | reader processes | reads/s | keys/s | failed reads |", "|---|---|---|---|---|"]
    with RedisServer() as single, RedisCluster() as cluster:
        targets: dict[str, dict[str, Any]] = {
            "one Redis": dict(url=single.url, prefix=PREFIX, max_staleness_s=0.0, timeout_s=1.0),
            "3-master cluster": dict(
                url=cluster.url,
                prefix=PREFIX,
                max_staleness_s=0.0,
                timeout_s=1.0,
                cluster=True,
                seeds=tuple(cluster.nodes),
            ),
        }
        for kw in targets.values():
            writer = OnlineWriter(
                connect(OnlineSettings(**{**kw, "timeout_s": 5})), prefix=PREFIX, cluster=kw.get("cluster", False)
            )
            writer.set_items(ids.tolist(), price=[1.0] * len(ids), stock=[1.0] * len(ids))
        ctx = mp.get_context("spawn")
        for name, kw in targets.items():
            queue = ctx.Queue()
            procs = [ctx.Process(target=_reader, args=(kw, ids, seconds, queue)) for _ in range(processes)]
            for p in procs:
                p.start()
            results = [queue.get(timeout=seconds + 60) for _ in procs]
            for p in procs:
                p.join()
            reads, failed = sum(r for r, _ in results), sum(f for _, f in results)
            lines.append(f"| {name} | {processes} | {reads / seconds:,.0f} | {reads * 301 / seconds:,.0f} | {failed} |")
    return lines


def failover(kills: int) -> list[str]:

    ids = np.arange(1, 3001, dtype=np.int64) * 7919
    took, lost_reads = [], []
    for _ in range(kills):
        with RedisCluster() as cluster:
            kw: dict[str, Any] = dict(url=cluster.url, prefix=PREFIX, cluster=True, seeds=tuple(cluster.nodes))
            OnlineWriter(connect(OnlineSettings(**kw, timeout_s=5)), prefix=PREFIX, cluster=True).set_items(
                ids.tolist(), price=[1.0] * len(ids)
            )
            time.sleep(0.3)
            reader = OnlineItems(
                OnlineSettings(**kw, timeout_s=0.05, retry_after_s=0.1, max_staleness_s=0.0), log=lambda _: None
            )
            cluster.kill(cluster.master_ports()[0])
            start, n_lost = time.monotonic(), 0
            while time.monotonic() - start < 30:
                if np.isnan(reader.fetch(ids)[:, 0]).any():
                    n_lost += 1
                    time.sleep(0.01)
                    continue
                break
            took.append(time.monotonic() - start)
            lost_reads.append(n_lost)
    return [
        f"{kills} kills: the lost slots read as the build's values for {np.percentile(took, 50):.2f} s p50, "
        f"{np.percentile(took, 99):.2f} s p99 (min {min(took):.2f}, max {max(took):.2f}); reads that saw them: "
        f"{int(np.median(lost_reads))} median; the other masters' slots were read throughout"
    ]


def reshard_writes(seconds: float) -> list[str]:

    ids = np.arange(1, 20_001, dtype=np.int64)
    with RedisCluster() as cluster:
        kw: dict[str, Any] = dict(url=cluster.url, prefix=PREFIX, cluster=True, seeds=tuple(cluster.nodes), timeout_s=5)
        writer = OnlineWriter(connect(OnlineSettings(**kw)), prefix=PREFIX, cluster=True)
        writer.set_items(ids.tolist(), price=[1.0] * len(ids))
        counts: list[tuple[float, int]] = []
        stop = threading.Event()

        def stream() -> None:
            rng = np.random.default_rng(1)
            while not stop.is_set():
                batch = rng.choice(ids, 50, replace=False).tolist()
                writer.apply([ItemUpdate(int(i), {"price": 2.0}) for i in batch])
                counts.append((time.monotonic(), 50))

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        time.sleep(seconds)
        masters = cluster.master_ports()
        r0 = time.monotonic()
        cluster.reshard(1000, max(masters, key=cluster.slots_of), min(masters, key=cluster.slots_of))
        r1 = time.monotonic()
        stop.set()
        t.join(timeout=30)
    before = sum(n for at, n in counts if at < r0) / max(r0 - counts[0][0], 1e-9)
    during = sum(n for at, n in counts if r0 <= at < r1) / max(r1 - r0, 1e-9)
    return [f"updates/s: {before:,.0f} before the reshard, {during:,.0f} while it moved 1,000 slots ({r1 - r0:.1f} s)"]


def main() -> None:

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path("build/small/bench_repo"))
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--kills", type=int, default=5)
    args = p.parse_args()
    print(f"Machine: {machine()}")
    print("\nServed search, cache off, the same requests alternating:")
    print("\n".join(served_cost(args.repo, args.requests)))
    print(f"\nRead capacity, cache off, {args.processes} reader processes of 300 candidates + the recent list:")
    print("\n".join(capacity(args.processes, args.seconds)))
    print("\nFailover:")
    print("\n".join(failover(args.kills)))
    print("\nWrites during a live reshard:")
    print("\n".join(reshard_writes(2.0)))


if __name__ == "__main__":
    main()

"""The real tritonserver reading the online store on a real Redis Cluster (3 masters with a replica each), under
steady SDK load: a master killed, a live reshard while the writer streams updates, the whole cluster down and
back. Every case: 0 failed ranking requests."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from loadtest.run import scrape
from online.writer import ItemUpdate, OnlineWriter
from runtime.online import OnlineItems
from runtime.online_store import OnlineSettings, connect
from server.redis_cluster import RedisCluster
from shoprank_client import RankingClient

pytestmark = [pytest.mark.triton, pytest.mark.redis, pytest.mark.slow]
PREFIX = "cserved"


@pytest.fixture(scope="module")
def cluster():

    with RedisCluster(masters=3, replicas=1) as c:
        yield c


@pytest.fixture(scope="module")
def served(small_repo, cluster, tmp_path_factory):
    from tests.conftest import online_tritonserver

    settings = OnlineSettings(url=cluster.url, timeout_s=5, cluster=True, seeds=tuple(cluster.nodes))
    writer = OnlineWriter(connect(settings), prefix=PREFIX, cluster=True)
    writer.seed(small_repo)
    env = {
        "SHOPRANK_ONLINE_URL": cluster.url,
        "SHOPRANK_ONLINE_CLUSTER": "1",
        "SHOPRANK_ONLINE_SEEDS": cluster.seeds,
        "SHOPRANK_ONLINE_PREFIX": PREFIX,
        "SHOPRANK_ONLINE_STALENESS_MS": "100",
        "SHOPRANK_ONLINE_TIMEOUT_MS": "50",
        "SHOPRANK_ONLINE_RETRY_MS": "200",
    }
    with online_tritonserver(small_repo, env, tmp_path_factory.mktemp("cluster-logs")) as server:
        yield server, writer


class Load:
    """Searches from a thread, one after another, until stopped: how many, and every failure."""

    def __init__(self, url: str, user: int, cands: list[int]):

        self.client = RankingClient(url, timeout_s=10)
        self.user, self.cands = user, cands
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.search(self.user, "shoes", self.cands, k=5)
                self.done += 1
            except Exception as err:  # a failed ranking request: what the test counts
                self.failures.append(repr(err))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


def metric(server, name: str, value: str, label: str = "model") -> float:
    """``name`` where ``label`` is ``value`` on the server's metrics port (summed over the other labels)."""

    return scrape(server.metrics_url, label).get((name, value), 0.0)


def test_a_killed_master_under_load_fails_no_request_and_reads_recover(served, cluster, known_ids):
    server, writer = served
    users, items = known_ids
    cands = [int(i) for i in items[:200]]
    partial_before = metric(server, "shoprank_online_reads_total", "partial", "outcome")
    with Load(server.grpc_url, int(users[2]), cands) as load:
        time.sleep(1.0)
        cluster.kill(cluster.master_ports()[-1])
        cluster.wait_ok(timeout_s=30)  # the replica promoted
        time.sleep(1.0)
        started = load.done
        time.sleep(1.0)
        assert load.done > started  # still answering after the failover
    assert load.failures == [] and load.done > 20
    # the lost slots read as the build's values during the failover, and it shows (the counts reach the metrics
    # port in the background, runtime/counters.py)
    deadline = time.monotonic() + 5
    while metric(server, "shoprank_online_reads_total", "partial", "outcome") <= partial_before:
        assert time.monotonic() < deadline, "no partial read counted"
        time.sleep(0.1)
    assert metric(server, "shoprank_online_up", "search_features") == 1  # back by itself
    # a value pushed after the failover is read: the reads follow the promoted replica
    reader = OnlineItems(
        OnlineSettings(url=cluster.url, prefix=PREFIX, cluster=True, timeout_s=1, seeds=tuple(cluster.nodes)),
        log=lambda _: None,
    )
    writer.apply([ItemUpdate(cands[0], {"price": 123.5})])
    assert reader.fetch(np.array(cands[:1]))[0, 0] == 123.5


def test_a_live_reshard_while_the_writer_streams_loses_no_update_and_fails_no_request(served, cluster, known_ids):
    server, writer = served
    users, items = known_ids
    cands = [int(i) for i in items[:200]]
    ids = [int(i) for i in items[:600]]
    last: dict[int, float] = {}
    errors: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        rng = np.random.default_rng(3)
        n = 0
        while not stop.is_set():
            batch = [int(i) for i in rng.choice(ids, 50, replace=False)]
            prices = [round(10 + float(n % 1000) + k / 100, 2) for k in range(len(batch))]
            try:
                writer.apply([ItemUpdate(i, {"price": p}) for i, p in zip(batch, prices, strict=True)])
            except Exception as err:
                errors.append(repr(err))
                continue
            last.update(zip(batch, prices, strict=True))
            n += 1

    masters = cluster.master_ports()
    moved_from = max(masters, key=cluster.slots_of)
    moved_to = min(masters, key=cluster.slots_of)
    before = cluster.slots_of(moved_to)
    writer_thread = threading.Thread(target=stream, daemon=True)
    with Load(server.grpc_url, int(users[3]), cands) as load:
        writer_thread.start()
        cluster.reshard(1000, moved_from, moved_to)
        time.sleep(0.5)
        stop.set()
        writer_thread.join(timeout=30)
    assert cluster.slots_of(moved_to) == before + 1000  # the slots moved
    assert load.failures == [] and load.done > 10
    assert errors == [], errors[:3]
    reader = OnlineItems(
        OnlineSettings(url=cluster.url, prefix=PREFIX, cluster=True, timeout_s=1, seeds=tuple(cluster.nodes)),
        log=lambda _: None,
    )
    pushed = np.array(sorted(last), np.int64)
    np.testing.assert_allclose(reader.fetch(pushed)[:, 0], [last[i] for i in pushed.tolist()], rtol=1e-6)


def test_the_whole_cluster_down_and_back_under_load(served, cluster, known_ids):
    server, _ = served
    users, items = known_ids
    cands = [int(i) for i in items[:100]]
    with Load(server.grpc_url, int(users[4]), cands) as load:
        time.sleep(0.5)
        cluster.pause()
        try:
            time.sleep(1.5)
            assert metric(server, "shoprank_online_up", "search_features") == 0
            during = load.done
            time.sleep(1.0)
            assert load.done > during  # ranking with the build's values
        finally:
            cluster.resume()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and metric(server, "shoprank_online_up", "search_features") != 1:
            time.sleep(0.2)
    assert load.failures == []
    assert metric(server, "shoprank_online_up", "search_features") == 1

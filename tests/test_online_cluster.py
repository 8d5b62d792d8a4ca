"""The online store on a real Redis Cluster (3 masters with a replica each, Debian's redis-server 7.0 with
cluster-enabled, created by redis-cli --cluster create): the bucket layout, reads and writes across every
slot, a master killed, the whole cluster unreachable and back."""

from __future__ import annotations

import time

import numpy as np
import pytest

from online.writer import Interaction, OnlineWriter
from runtime.online import OnlineItems
from runtime.online_store import DEFAULT_BUCKETS, OnlineConfigError, OnlineSettings, bucket_key, bucket_of, connect
from server.redis_cluster import RedisCluster

pytestmark = pytest.mark.redis
PREFIX = "clu"
N_ITEMS = 3000


@pytest.fixture(scope="module")
def cluster():

    with RedisCluster(masters=3, replicas=1) as c:
        yield c


def settings(cluster, **changes) -> OnlineSettings:
    base = dict(
        url=cluster.url, prefix=PREFIX, cluster=True, timeout_s=0.2, retry_after_s=0.2, seeds=tuple(cluster.nodes)
    )
    return OnlineSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def seeded(cluster):
    writer = OnlineWriter(connect(settings(cluster, timeout_s=5)), prefix=PREFIX, cluster=True)
    ids = np.arange(1, N_ITEMS + 1, dtype=np.int64) * 7919  # spread over every bucket
    price = (ids % 997).astype(np.float64) + 0.5
    writer.set_items(ids.tolist(), price=price, stock=(ids % 5).astype(np.float64))
    writer.apply([])  # nothing: no error
    time.sleep(0.5)  # the replicas catch up (replication is asynchronous)
    return writer, ids, price


@pytest.mark.unit
def test_cluster_settings_are_read_and_checked():
    s = OnlineSettings.from_env(
        {"SHOPRANK_ONLINE_URL": "redis://h:1/0", "SHOPRANK_ONLINE_CLUSTER": "1", "SHOPRANK_ONLINE_REPLICAS": "1"}
    )
    assert s.cluster and s.read_from_replicas and s.buckets == DEFAULT_BUCKETS
    assert not OnlineSettings.from_env({"SHOPRANK_ONLINE_URL": "redis://h:1/0"}).cluster
    for env, field in (
        ({"SHOPRANK_ONLINE_CLUSTER": "yes"}, "SHOPRANK_ONLINE_CLUSTER"),
        ({"SHOPRANK_ONLINE_BUCKETS": "0"}, "SHOPRANK_ONLINE_BUCKETS"),
        ({"SHOPRANK_ONLINE_CLUSTER": "1", "SHOPRANK_ONLINE_URL": "unix:///tmp/r.sock"}, "SHOPRANK_ONLINE_CLUSTER"),
    ):
        with pytest.raises(OnlineConfigError, match=f"^{field}"):
            OnlineSettings.from_env({"SHOPRANK_ONLINE_URL": "redis://h:1/0", **env})


@pytest.mark.unit
def test_a_bucket_is_one_slot_and_the_buckets_spread_over_the_slots():
    from redis.cluster import key_slot

    assert bucket_key("p", "items", 7) == b"p:items:{p:7}" and bucket_of(-3, 48) == 45
    slots = {key_slot(bucket_key("shoprank", "items", b)) for b in range(DEFAULT_BUCKETS)}
    assert len(slots) == DEFAULT_BUCKETS  # a slot per bucket
    # items and embeddings of a bucket share its slot
    assert key_slot(bucket_key("shoprank", "embs", 5)) == key_slot(b"{shoprank:5}")
    assert key_slot(bucket_key("shoprank", "items", 5)) == key_slot(b"{shoprank:5}")


def test_reads_across_every_master_return_what_was_written(cluster, seeded):
    writer, ids, price = seeded
    reader = OnlineItems(settings(cluster), log=lambda _: None)
    pick = np.random.default_rng(0).choice(ids, 1000, replace=False)
    got = reader.read(pick, user_id=5)
    np.testing.assert_allclose(got.values[:, 0], (pick % 997) + 0.5)
    np.testing.assert_array_equal(got.values[:, 1], pick % 5)
    assert reader.up and reader.failures == 0
    unknown = reader.fetch(np.array([1, 2, 3], np.int64))  # never written: the build's values
    assert np.isnan(unknown).all()
    # a partial update keeps the other field, and is read whole
    writer.apply([__import__("online.writer", fromlist=["ItemUpdate"]).ItemUpdate(int(ids[0]), {"stock": 42.0})])
    fresh = OnlineItems(settings(cluster), log=lambda _: None).fetch(ids[:1])
    assert fresh[0, 1] == 42.0 and fresh[0, 0] == pytest.approx(price[0])


def test_recent_interactions_and_new_items_in_cluster_mode(cluster, seeded):

    writer, ids, _ = seeded
    writer.record([Interaction(77, int(ids[3])), Interaction(77, int(ids[4]), "cart")])
    assert writer.recent(77)[:2] == [int(ids[4]), int(ids[3])]
    vectors = np.eye(2, 8, dtype=np.float32)
    writer.add_items([(900001, "a new lamp"), (900002, "a new sofa")], lambda titles: vectors, price=[9.5, 19.5])
    reader = OnlineItems(settings(cluster, read_from_replicas=False), log=lambda _: None)
    got = reader.read(np.array([900001, 900002, int(ids[5])], np.int64), user_id=77, new=np.array([0, 1]))
    assert got.recent[:2].tolist() == [int(ids[4]), int(ids[3])]
    np.testing.assert_array_equal(got.embeddings[0], vectors[0])
    np.testing.assert_array_equal(got.embeddings[1], vectors[1])
    assert got.values[0, 0] == 9.5 and np.isnan(got.values[0, 1])
    added = reader.new_items(known=0)
    assert added is not None and {900001, 900002} <= set(added[0].tolist())


def test_reads_from_replicas(cluster, seeded):
    _, ids, _ = seeded
    reader = OnlineItems(settings(cluster, read_from_replicas=True), log=lambda _: None)
    got = reader.fetch(ids[:500])
    np.testing.assert_allclose(got[:, 0], (ids[:500] % 997) + 0.5)


def test_the_whole_cluster_unreachable_falls_back_and_comes_back(cluster, seeded):
    _, ids, _ = seeded
    logs: list[str] = []
    reader = OnlineItems(settings(cluster, max_staleness_s=0.0), log=logs.append)
    assert not np.isnan(reader.fetch(ids[:50])).any()
    cluster.pause()
    try:
        down = reader.fetch(ids[:50])
        assert np.isnan(down).all() and not reader.up  # the build's values; no exception
        assert any("online store unreachable" in line for line in logs)
    finally:
        cluster.resume()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (np.isnan(reader.fetch(ids[:50])).any() or not reader.up):
        time.sleep(0.1)
    assert reader.up and not np.isnan(reader.fetch(ids[:50])).any()
    assert any("reachable again" in line for line in logs)


def test_a_killed_master_falls_back_for_its_slots_then_recovers_by_itself(cluster, seeded):
    """SIGKILL one master while reading: no read raises; only the lost slots read as the build's values (the
    other masters keep answering) until its replica is promoted; then every value reads again, from the
    promoted replica, without a restart."""
    _, ids, _ = seeded
    outcomes: list[str] = []
    reader = OnlineItems(settings(cluster, max_staleness_s=0.0), log=lambda _: None, on_read=outcomes.append)
    victim = cluster.master_ports()[0]
    cluster.kill(victim)
    killed_at = time.monotonic()
    lost_shares, recovered_after = [], None
    while time.monotonic() - killed_at < 30:
        values = reader.fetch(ids)
        lost = float(np.isnan(values[:, 0]).mean())
        if lost == 0:
            recovered_after = time.monotonic() - killed_at
            break
        lost_shares.append(lost)
        time.sleep(0.05)
    assert recovered_after is not None, "reads did not recover after the failover"
    assert lost_shares and max(lost_shares) < 0.6  # a third of the buckets, not all: the others kept answering
    assert "partial" in outcomes and reader.partial_failures >= 1
    # the reads follow the promoted replica as soon as it answers; the node master_ports() asks may learn of
    # the promotion a moment later (gossip), so wait until every node sees all slots served
    cluster.wait_ok(timeout_s=30)
    assert victim not in cluster.master_ports() and len(cluster.master_ports()) == 3  # a replica was promoted
    np.testing.assert_allclose(reader.fetch(ids)[:, 0], (ids % 997) + 0.5)

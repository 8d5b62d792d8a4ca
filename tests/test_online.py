"""The online feature store on a real redis-server: writer, reader, cache, failures, and the features it changes."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from online.__main__ import main as online_cli
from online.__main__ import stream
from online.writer import ItemUpdate, OnlineWriter, UpdateError
from runtime.online import OnlineConfigError, OnlineItems, OnlineSettings, connect

pytestmark = pytest.mark.redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def store(redis_server, request):
    """A writer and settings with a prefix of this test's own."""
    prefix = f"t-{request.node.name}"
    settings = OnlineSettings(url=redis_server.url, prefix=prefix, timeout_s=0.05, retry_after_s=0.5)
    writer = OnlineWriter(connect(OnlineSettings(url=redis_server.url, timeout_s=2)), prefix=prefix)
    yield writer, settings
    writer.clear()


def test_partial_updates_keep_the_other_field_and_unset_means_build_value(store):
    writer, settings = store
    writer.apply([ItemUpdate(1, {"price": 9.5})])  # an item the store never saw: stock stays unset
    reader = OnlineItems(settings)
    got = reader.fetch(np.array([1, 2], np.int64))
    assert got[0, 0] == pytest.approx(9.5) and np.isnan(got[0, 1])
    assert np.isnan(got[1]).all()  # never pushed
    writer.apply([ItemUpdate(1, {"stock": 0})])
    got = OnlineItems(settings).fetch(np.array([1], np.int64))
    assert got[0].tolist() == [pytest.approx(9.5), 0.0]


def test_bad_updates_name_the_item_and_field_and_write_nothing(store):
    writer, settings = store
    for update, words in (
        (ItemUpdate(5, {"price": -1.0}), ("item 5", "price", "> 0")),
        (ItemUpdate(5, {"stock": float("nan")}), ("item 5", "stock", "finite")),
        (ItemUpdate(5, {"colour": 1.0}), ("item 5", "colour", "unknown field")),
        (ItemUpdate(5, {}), ("item 5", "no field")),
    ):
        with pytest.raises(UpdateError) as err:
            writer.apply([ItemUpdate(4, {"price": 3.0}), update])
        assert all(w in str(err.value) for w in words), err.value
    assert np.isnan(OnlineItems(settings).fetch(np.array([4], np.int64))).all()  # the valid one was not written


def test_settings_from_env_name_the_variable():
    assert not OnlineSettings.from_env({}).enabled
    s = OnlineSettings.from_env({"SHOPRANK_ONLINE_URL": "redis://h:1/0", "SHOPRANK_ONLINE_STALENESS_MS": "250"})
    assert s.enabled and s.max_staleness_s == 0.25 and s.sold_out == "filter"
    for env, name in (
        ({"SHOPRANK_ONLINE_URL": "http://h"}, "SHOPRANK_ONLINE_URL"),
        ({"SHOPRANK_ONLINE_TIMEOUT_MS": "fast"}, "SHOPRANK_ONLINE_TIMEOUT_MS"),
        ({"SHOPRANK_ONLINE_TIMEOUT_MS": "0"}, "SHOPRANK_ONLINE_TIMEOUT_MS"),
        ({"SHOPRANK_SOLD_OUT": "hide"}, "SHOPRANK_SOLD_OUT"),
    ):
        with pytest.raises(OnlineConfigError, match=name):
            OnlineSettings.from_env(env)


def test_cache_serves_values_until_they_are_stale(store):
    writer, settings = store
    writer.apply([ItemUpdate(7, {"price": 1.0})])
    clock = Clock()
    reads = []  # outcomes, in order
    reader = OnlineItems(settings, clock=clock, on_read=reads.append)
    ids = np.array([7], np.int64)
    assert reader.fetch(ids)[0, 0] == 1.0
    writer.apply([ItemUpdate(7, {"price": 2.0})])
    clock.now += settings.max_staleness_s * 0.9
    assert reader.fetch(ids)[0, 0] == 1.0  # within the staleness bound: the cached value
    clock.now += settings.max_staleness_s * 0.2
    assert reader.fetch(ids)[0, 0] == 2.0  # past it: read again
    assert reads == ["ok", "cached", "ok"]


def test_paused_redis_falls_back_within_the_timeout_logs_once_and_recovers(store, redis_server):
    writer, settings = store
    writer.apply([ItemUpdate(3, {"stock": 5})])
    logs = []
    states = []
    reader = OnlineItems(settings, log=logs.append, on_state=states.append)
    ids = np.array([3], np.int64)
    assert reader.fetch(ids)[0, 1] == 5
    redis_server.pause()
    try:
        started = time.monotonic()
        reader._cache.clear()
        assert np.isnan(reader.fetch(ids)).all()  # build values from here on
        assert time.monotonic() - started < 1.0  # the 50 ms timeout, not a hang
        assert np.isnan(reader.fetch(ids)).all()  # skipped until the retry: no second wait
        assert not reader.up and reader.failures == 1 and len(logs) == 1 and states == [False]
        assert "unreachable" in logs[0]
    finally:
        redis_server.resume()
    time.sleep(settings.retry_after_s + 0.1)
    assert reader.fetch(ids)[0, 1] == 5
    assert reader.up and states == [False, True] and len(logs) == 2 and "reachable again" in logs[1]


def test_stopped_redis_falls_back():
    from server.launcher import free_port

    settings = OnlineSettings(url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05)
    reader = OnlineItems(settings, log=lambda _: None)
    assert np.isnan(reader.fetch(np.array([1, 2], np.int64))).all() and not reader.up


def test_fresh_price_and_stock_change_the_served_features(store, small_repo, known_ids):
    from runtime import contract as c
    from runtime.features import FeatureStore

    writer, settings = store
    folder = small_repo / c.SEARCH_FEATURES / "1"
    offline = FeatureStore.load(folder)
    users, items = known_ids
    user, cands = users[:1], items[:6].copy()
    query = np.array([b"shoes"], object)
    before = offline.search(user, query, cands)
    writer.seed(small_repo)
    online = FeatureStore.load(folder, online=OnlineItems(settings))
    seeded = online.search(user, query, cands)
    in_stock = before[c.DENSE_FEATURES][:, 8] > 0
    np.testing.assert_allclose(seeded[c.DENSE_FEATURES], before[c.DENSE_FEATURES], atol=1e-5)  # the same values
    np.testing.assert_array_equal(seeded[c.CAT_FEATURES], before[c.CAT_FEATURES])
    assert seeded[c.AVAILABLE].tolist() == in_stock.tolist()

    target = int(np.flatnonzero(in_stock)[0])
    price = float(np.exp(offline.tables.item_log_price[offline.tables.item_rows(cands[target : target + 1])[0]]))
    writer.apply([ItemUpdate(int(cands[target]), {"price": price * 20, "stock": 0})])
    fresh = FeatureStore.load(folder, online=OnlineItems(settings)).search(user, query, cands)
    assert fresh[c.AVAILABLE][target] == False  # noqa: E712  (sold out: filtered)
    assert fresh[c.DENSE_FEATURES][target, 8] == 0
    assert fresh[c.DENSE_FEATURES][target, 9] == pytest.approx(before[c.DENSE_FEATURES][target, 9] + np.log(20), 1e-4)
    assert fresh[c.CAT_FEATURES][target, 4] >= before[c.CAT_FEATURES][target, 4]
    others = np.arange(len(cands)) != target
    np.testing.assert_allclose(fresh[c.DENSE_FEATURES][others], before[c.DENSE_FEATURES][others], atol=1e-5)

    demote = OnlineItems(OnlineSettings(**{**settings.__dict__, "sold_out": "demote"}))
    kept = FeatureStore.load(folder, online=demote).search(user, query, cands)
    assert kept[c.AVAILABLE].all() and kept[c.DENSE_FEATURES][target, 8] == 0


def test_cli_push_one_item_a_file_and_a_stream(store, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    writer, settings = store
    base = ["--url", settings.url or "", "--prefix", settings.prefix]
    assert online_cli([*base, "push", "--item", "SKU-1", "--price", "4.5"]) == 0
    pacsv.write_csv(pa.table({"item_id": [11, 12], "stock": [0, 3]}), tmp_path / "u.csv")
    assert online_cli([*base, "push", "--file", str(tmp_path / "u.csv")]) == 0
    lines = [json.dumps({"item_id": 13, "price": 2.0}), "{not json", json.dumps({"item_id": 14, "stock": -1}), ""]
    applied, rejected = stream(writer, io.StringIO("\n".join(lines)))
    assert (applied, rejected) == (1, 2)
    err = capsys.readouterr().err
    assert "line 2" in err and "line 3: item 14: stock must be >= 0" in err
    from shoprank_client.ids import stable_id

    got = OnlineItems(settings).fetch(np.array([stable_id("SKU-1"), 11, 12, 13, 14], np.int64))
    assert got[0, 0] == 4.5 and got[1, 1] == 0 and got[2, 1] == 3 and got[3, 0] == 2.0 and np.isnan(got[4]).all()
    assert online_cli([*base, "push", "--item", "5", "--price", "-2"]) == 2
    assert "price must be > 0" in capsys.readouterr().err

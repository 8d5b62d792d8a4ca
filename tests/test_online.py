"""The online feature store on a real redis-server: writer, reader, cache, failures, and the features it changes."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from online.__main__ import main as online_cli
from online.__main__ import stream
from online.embed import RepositoryEncoder
from online.writer import Interaction, ItemUpdate, OnlineWriter, UpdateError
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.online import OnlineItems
from runtime.online_store import OnlineConfigError, OnlineSettings, connect
from runtime.scoring import TopK
from server.launcher import free_port
from shoprank_client.ids import stable_id

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
    # Unset variables take the documented defaults, in seconds (1,000 ms staleness, 20 ms timeout, 1 s retry).
    d = OnlineSettings.from_env({"SHOPRANK_ONLINE_URL": "redis://h:1/0"})
    assert (d.max_staleness_s, d.timeout_s, d.retry_after_s, d.recent) == (1.0, 0.02, 1.0, 20)
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

    settings = OnlineSettings(url=f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05)
    reader = OnlineItems(settings, log=lambda _: None)
    assert np.isnan(reader.fetch(np.array([1, 2], np.int64))).all() and not reader.up


def test_fresh_price_and_stock_change_the_served_features(store, small_repo, known_ids):

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

    got = OnlineItems(settings).fetch(np.array([stable_id("SKU-1"), 11, 12, 13, 14], np.int64))
    assert got[0, 0] == 4.5 and got[1, 1] == 0 and got[2, 1] == 3 and got[3, 0] == 2.0 and np.isnan(got[4]).all()
    assert online_cli([*base, "push", "--item", "5", "--price", "-2"]) == 2
    assert "price must be > 0" in capsys.readouterr().err


def test_recent_clicks_enter_the_affinities_as_the_build_counts_them(store, small_repo, known_ids):

    writer, settings = store
    folder = small_repo / c.SEARCH_FEATURES / "1"
    offline = FeatureStore.load(folder)
    t = offline.tables
    users, items = known_ids
    user = int(users[3])
    cands = items[:40].copy()
    cand_cat = t.item_category[t.item_rows(cands)]
    category = int(np.bincount(cand_cat[cand_cat >= 0]).argmax())  # a category among the candidates
    clicked = [int(i) for i in items if t.item_category[t.item_rows(np.array([i]))[0]] == category][:5]
    args = (np.array([user]), np.array([b"gift"], object), cands)
    before = offline.search(*args)[c.DENSE_FEATURES]
    online = FeatureStore.load(folder, online=OnlineItems(settings))
    np.testing.assert_allclose(online.search(*args)[c.DENSE_FEATURES], before, atol=1e-6)  # nothing recent yet

    assert writer.record([Interaction(user, i, "click") for i in clicked]) == 5
    assert writer.recent(user) == clicked[::-1]  # newest first
    after = online.search(*args)[c.DENSE_FEATURES]  # the next request: not cached
    row = int(t.user_rows(np.array([user]))[0])
    n = float(t.user_clicks[row])
    in_cat = cand_cat == category
    expected = (before[in_cat, 4] * (n + 1) + 5) / (n + 1 + 5)  # (count + 1/k) / (clicks + 1), 5 clicks more
    np.testing.assert_allclose(after[in_cat, 4], expected, rtol=1e-5)
    assert (after[in_cat, 4] > before[in_cat, 4]).all()
    other = (cand_cat >= 0) & ~in_cat
    assert (after[other, 4] < before[other, 4]).all()  # the same clicks dilute the other categories
    np.testing.assert_allclose(np.delete(after, [4, 5], axis=1), np.delete(before, [4, 5], axis=1), atol=1e-6)

    with pytest.raises(UpdateError, match="event: expected one of click, cart, purchase, got 'view'"):
        writer.record([Interaction(user, clicked[0], "view")])
    writer.record([Interaction(991, clicked[0], "cart", session=True)])
    assert 0 < writer.client.ttl(f"{writer.prefix}:recent:991") <= 1800  # an anonymous session expires soon


def test_a_new_item_is_embedded_by_the_repository_encoder_and_ranked_by_its_text(store, small_repo, known_ids):

    writer, settings = store
    folder = small_repo / c.SEARCH_FEATURES / "1"
    topk = TopK.load(small_repo / c.TOPK / "1")
    users, items = known_ids
    twin = int(items[7])  # a catalogue item: the new item gets its title, so it must get its vector
    title = _title_of(small_repo, twin)
    new_id = 10**12 + 7
    encoder = RepositoryEncoder(small_repo)
    assert writer.add_items([(new_id, title)], encoder, price=[19.9], stock=[3]) == 1
    with pytest.raises(UpdateError, match="title must be a non-empty string"):
        writer.add_items([(new_id + 1, " ")], encoder)

    online = FeatureStore.load(folder, online=OnlineItems(settings))
    cands = np.array([*items[20:30], new_id], np.int64)
    feats = online.search(np.array([users[0]]), np.array([title.encode()], object), cands)
    assert feats[c.ITEM_ROWS][-1] == -2 and (feats[c.ITEM_ROWS][:-1] >= 0).all()
    assert feats[c.NEW_EMBEDDINGS].shape == (2, topk.item_embeddings.shape[1])
    row = int(online.tables.item_rows(np.array([twin]))[0])
    # the same vector, up to the served table's float16 rounding
    np.testing.assert_allclose(feats[c.NEW_EMBEDDINGS][1], topk.item_embeddings[row], atol=1e-4)
    assert not feats[c.NEW_EMBEDDINGS][0].any()

    # Ranked by its text: with the query's own embedding as context, the new item has the top similarity.
    context = topk.item_embeddings[row][None, :]
    flat = np.zeros((len(cands), 1), np.float32)
    ranked = topk.rank(
        context, flat, flat + 1, feats[c.ITEM_ROWS], cands, np.array([3], np.int32), None, feats[c.NEW_EMBEDDINGS]
    )
    assert ranked[c.TOP_ITEM_IDS][0] == new_id
    anonymous = topk.rank(context, flat, flat + 1, np.maximum(feats[c.ITEM_ROWS], -1), cands, np.array([11], np.int32))
    assert anonymous[c.TOP_ITEM_IDS][0] != new_id  # the same item without its embedding: a zero vector


def _title_of(repo, item_id: int) -> str:
    import json as _json

    import pyarrow.parquet as pq

    manifest = _json.loads((repo / "search_features" / "1" / "manifest.json").read_text())
    assert manifest["title_tokens"] > 0
    root = Path(__file__).resolve().parent.parent
    table = pq.read_table(root / "build" / "small" / "demo_data" / "items.parquet", columns=["item_id", "title"])
    ids = table.column("item_id").to_pylist()
    return table.column("title").to_pylist()[ids.index(item_id)]


def test_cli_stream_takes_interactions_and_names_bad_events(store, capsys):
    writer, settings = store
    lines = io.StringIO(
        "\n".join(
            [
                json.dumps({"event": "click", "user_id": 5, "item_id": 11}),
                json.dumps({"event": "purchase", "session_id": "s-abc", "item_id": 12}),
                json.dumps({"event": "click", "item_id": 12}),
                json.dumps({"event": "like", "user_id": 5, "item_id": 11}),
                json.dumps({"item_id": 13, "title": "a new lamp"}),
            ]
        )
    )
    applied, rejected = stream(writer, lines)
    assert (applied, rejected) == (2, 3)

    assert writer.recent(5) == [11] and writer.recent(stable_id("s-abc")) == [12]
    err = capsys.readouterr().err
    assert "line 3: an event needs user_id (or session_id for an anonymous session)" in err
    assert "line 4: event: expected one of click, cart, purchase, got 'like'" in err
    assert "line 5: a new item (with a title) needs --repo" in err

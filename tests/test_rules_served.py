"""Merchandising rules on a real tritonserver reading a real redis-server: set with the CLI, live within
seconds on every model, with no failed request under load; bad rules are refused naming the rule and field."""

from __future__ import annotations

import json
import threading
import time

import pytest

from online.__main__ import main as online_main
from online.writer import ItemUpdate, OnlineWriter
from runtime.online_store import OnlineSettings, connect
from shoprank_client import RankingClient, RankingError

pytestmark = [pytest.mark.triton, pytest.mark.redis, pytest.mark.slow]
PREFIX = "rules"
ANONYMOUS = 0


@pytest.fixture(scope="module")
def served(fashion_build, redis_server, tmp_path_factory):
    from tests.conftest import online_tritonserver

    repo, items = fashion_build
    writer = OnlineWriter(connect(OnlineSettings(url=redis_server.url, timeout_s=2)), prefix=PREFIX)
    writer.seed(repo)
    env = {"SHOPRANK_ONLINE_URL": redis_server.url, "SHOPRANK_ONLINE_PREFIX": PREFIX}
    try:
        with online_tritonserver(repo, env, tmp_path_factory.mktemp("rules-logs")) as server:
            with RankingClient(server.grpc_url, timeout_s=10) as client:
                yield server, client, writer, repo, {it["sku"]: it for it in items}
    finally:
        writer.clear()


def set_rules(served, tmp_path, rules: list[dict]) -> int:
    server, client, writer, repo, shop = served
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": rules}))
    return online_main(
        ["--url", writer_url(writer), "--prefix", PREFIX, "rules", "set", str(path), "--repo", str(repo)]
    )


def writer_url(writer: OnlineWriter) -> str:
    kwargs = writer.client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}"


def wait_for(check, timeout_s: float):
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


class Load:
    """Requests in a loop on two threads (search_catalog and recommend_catalog) while rules change."""

    def __init__(self, client: RankingClient):
        self.client, self.stop, self.done = client, threading.Event(), 0
        self.failed: list[RankingError] = []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(2)]

    def run(self, i: int) -> None:
        while not self.stop.is_set():
            try:
                if i == 0:
                    self.client.search_catalog(ANONYMOUS, "dress", k=10)
                else:
                    self.client.recommend_catalog(ANONYMOUS, k=10, filters={"category": "Women > Dresses"})
                self.done += 1
            except RankingError as err:
                self.failed.append(err)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_pin_hide_and_bury_apply_within_seconds_under_load(served, tmp_path):
    server, client, writer, repo, shop = served
    before = client.search_catalog(ANONYMOUS, "dress", k=10)
    pinned, hidden = before.item_ids[6], before.item_ids[0]
    black = [s for s in before.item_ids if "colour:black" in shop[s]["attributes"]]
    rules = [
        {"id": "pin-dress", "kind": "pin", "items": [pinned], "position": 1, "query": "dress"},
        {"id": "recall", "kind": "hide", "items": [hidden]},
        {"id": "bury-black", "kind": "boost", "weight": -20, "match": {"colour": "black"}},
        {"id": "not-yet", "kind": "hide", "match": {"brand": shop[pinned]["brand"]}, "start": "2099-01-01"},
    ]
    with Load(client) as load:
        time.sleep(0.5)
        assert set_rules(served, tmp_path, rules) == 0
        took = wait_for(lambda: client.search_catalog(ANONYMOUS, "dress", k=10).item_ids[0] == pinned, 10)
        assert took is not None and took < 5, took
        time.sleep(1.5)  # every instance of every model has polled by now
        for _ in range(10):
            after = client.search_catalog(ANONYMOUS, "dress", k=10)
            assert after.item_ids[0] == pinned and hidden not in after.item_ids
            assert not set(black) & set(after.item_ids[1:])  # buried below the page
            assert after.info["rules"] == ["pin-dress", "recall", "bury-black"]  # the future rule is not in force
        other = client.search_catalog(ANONYMOUS, "coat", k=10)
        assert "pin-dress" not in other.info.get("rules", [])  # the pin is for its query only
        assert online_main(["--url", writer_url(writer), "--prefix", PREFIX, "rules", "clear"]) == 0
        back = wait_for(lambda: client.search_catalog(ANONYMOUS, "dress", k=10).item_ids == before.item_ids, 10)
        assert back is not None and back < 5
    assert load.failed == [] and load.done > 20


def test_a_category_page_pin_and_a_sold_out_pin(served, tmp_path):
    server, client, writer, repo, shop = served
    page = client.recommend_catalog(ANONYMOUS, k=10, filters={"category": "Women > Dresses"})
    pinned = page.item_ids[8]
    rules = [{"id": "dress-page", "kind": "pin", "items": [pinned], "position": 2, "category": "Women > Dresses"}]
    assert set_rules(served, tmp_path, rules) == 0
    assert wait_for(
        lambda: (
            client.recommend_catalog(ANONYMOUS, k=10, filters={"category": "Women > Dresses"}).item_ids[1] == pinned
        ),
        10,
    )
    elsewhere = client.recommend_catalog(ANONYMOUS, k=10, filters={"category": "Women"})
    assert "dress-page" not in elsewhere.info.get("rules", [])
    writer.apply([ItemUpdate(int(_served_id(pinned)), {"stock": 0})])  # sold out: a pin does not show it
    gone = wait_for(
        lambda: (
            pinned not in client.recommend_catalog(ANONYMOUS, k=10, filters={"category": "Women > Dresses"}).item_ids
        ),
        10,
    )
    writer.apply([ItemUpdate(int(_served_id(pinned)), {"stock": 5})])
    online_main(["--url", writer_url(writer), "--prefix", PREFIX, "rules", "clear"])
    assert gone is not None


def _served_id(sku: str) -> int:
    from shoprank_client.ids import stable_id

    return stable_id(sku)


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        ({"id": "p", "kind": "pin", "items": ["ST00001-GREEN"], "position": 0}, "rules[0] (id 'p').position"),
        ({"id": "b", "kind": "boost", "match": {"fabric": "silk"}, "weight": 1}, "rules[0] (id 'b').match.fabric"),
        ({"id": "h", "kind": "hide"}, "rules[0] (id 'h')"),
        ({"id": "w", "kind": "boost", "items": [1], "weight": 0}, "rules[0] (id 'w').weight"),
        ({"id": "t", "kind": "hide", "items": [1], "start": "2027-01-01", "end": "2026-01-01"}, "(id 't').end"),
        ({"kind": "hide", "items": [1]}, "rules[0].id"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(served, tmp_path, capsys, rule, named):
    server, client, writer, repo, shop = served
    good = [{"id": "keep", "kind": "hide", "items": ["ST00001-GREEN"]}]
    assert set_rules(served, tmp_path, good) == 0
    capsys.readouterr()
    assert set_rules(served, tmp_path, [rule]) == 2
    assert named in capsys.readouterr().err
    assert json.loads(writer.rules())["rules"][0]["id"] == "keep"  # nothing wrong reached the store
    online_main(["--url", writer_url(writer), "--prefix", PREFIX, "rules", "clear"])


def test_a_price_change_moves_an_item_into_and_out_of_a_price_filter(served):
    """The catalogue calls' price filter reads the prices pushed to the online store (its price-change log):
    an item whose price drops into the range is found, and leaves again when the price goes back."""
    server, client, writer, repo, shop = served
    sku, item = next(
        (s, it)
        for s, it in sorted(shop.items())
        if it["category"] == "Women > Coats" and it["price"] > 100 and it["stock"]
    )
    tree = {"category": "Women > Coats", "price": {"max": 12}}
    assert sku not in client.recommend_catalog(ANONYMOUS, k=100, per_group=0, filters=tree).item_ids
    writer.apply([ItemUpdate(_served_id(sku), {"price": 9.99})])
    came = wait_for(lambda: sku in client.recommend_catalog(ANONYMOUS, k=100, per_group=0, filters=tree).item_ids, 10)
    assert came is not None and came < 5, came
    found = client.search_catalog(ANONYMOUS, "coat", k=100, per_group=0, filters=tree, understand="off")
    assert sku in found.item_ids
    writer.apply([ItemUpdate(_served_id(sku), {"price": item["price"]})])
    left = wait_for(
        lambda: sku not in client.recommend_catalog(ANONYMOUS, k=100, per_group=0, filters=tree).item_ids, 10
    )
    assert left is not None and left < 5, left


def test_verify_ranks_as_the_build_while_rules_are_live(served, tmp_path):
    """``rollout verify`` (the release gate) asks for the build's values: live merchandising rules, which the
    build never saw, must not make a release fail it. Ordinary requests meanwhile get the rules."""
    from rollout.golden import load
    from rollout.triton_http import direct
    from rollout.verify import verify

    server, client, writer, repo, shop = served
    golden = load(repo)
    sku_of = {_served_id(s): s for s in shop}
    answered = [r for r in golden.requests if r.error is None and r.top_ids and r.catalogue and r.query]
    first = answered[0]
    hidden, pinned = sku_of[first.top_ids[0]], sku_of[first.retrieved_ids[-1]]
    rules = [
        {"id": "recall", "kind": "hide", "items": [hidden]},
        {"id": "push", "kind": "pin", "items": [pinned], "position": 1},
        {"id": "bury", "kind": "boost", "weight": -5, "match": {"brand": shop[hidden]["brand"]}},
    ]
    assert set_rules(served, tmp_path, rules) == 0
    try:
        live = wait_for(lambda: client.search_catalog(first.user_id, first.query, k=first.k).item_ids[0] == pinned, 10)
        assert live is not None  # the rules are in force for ordinary requests
        time.sleep(1.5)  # every instance of every model has polled by now
        verdict = verify(golden, {"pod": direct(server.http_url)})
        assert verdict.ok, verdict.text()
        assert verdict.pods[0].checked == len(golden.requests)
    finally:
        online_main(["--url", writer_url(writer), "--prefix", PREFIX, "rules", "clear"])

"""The readers of the formats shops have: GA4's BigQuery export (builders/data/ga4.py) and a Merchant Center
feed (builders/data/merchant_center.py), on samples written in those formats' own schemas (tests/exports.py).

The end-to-end test builds the grocery shop twice, once from a GA4 export and a Merchant Center feed and once
from the same shop in the contract's own files, and serves the first: it answers the second's golden set.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from builders.build import build
from builders.data import config as cfg_mod
from builders.data import ga4, merchant_center
from builders.data.config import Ga4Config
from builders.data.report import ValidationReport
from rollout.__main__ import main as rollout
from server.launcher import ServerOptions, TritonServer
from tests import exports, odd_shops

T0 = 1_790_000_000_000_000  # microseconds


def _write(folder: Path, rows: list[dict], json_days: int = 0) -> None:
    exports.write_ga4(folder, rows, json_days=json_days)


def small_export() -> list[dict]:
    """Two visits of one device, one of a signed-in user, one cookieless ping."""
    a, b = ("dev-a", 11), ("dev-b", 22)
    it = exports._item
    row = exports._row
    p = exports._param
    s = 1_000_000
    return [
        row(
            T0,
            "view_search_results",
            a,
            None,
            [p("search_term", "fromages")],
            [
                it("X", None, "search_results", 1),
                it("Y", None, "search_results", 2),
                it("Z", None, "search_results", 3),
            ],
        ),
        row(T0 + 5 * s, "select_item", a, None, [], [it("Y", None, "search_results", 2)]),
        row(T0 + 6 * s, "view_item", a, None, [], [it("Y")]),
        row(T0 + 9 * s, "add_to_cart", a, None, [], [it("Y")]),
        row(T0 + 60 * s, "view_item", a, None, [], [it("P")]),
        row(
            T0 + 61 * s,
            "view_item_list",
            a,
            None,
            [p("item_list_name", "related_products")],
            [it("Q", None, None, 1), it("R", None, None, 2)],
        ),
        row(T0 + 70 * s, "select_item", a, None, [], [it("R", None, "related_products", 2)]),
        row(T0 + 90 * s, "purchase", a, None, [], [it("Y")]),
        row(
            T0 + 86_400 * s, "view_item_list", b, "u1", [], [it("X", None, "homepage", 1), it("Q", None, "homepage", 2)]
        ),
        row(T0 + 86_401 * s, "purchase", b, "u1", [], [it("W")]),  # W was never in a logged list
        row(T0 + 86_402 * s, "select_item", b, "u1", [], [it("V", None, "newsletter", 4)]),
        row(T0 + 86_403 * s, "page_view", (None, 33), None, [], []),  # consent mode: no user_pseudo_id
    ]


@pytest.mark.unit
def test_the_ga4_reader_maps_lists_clicks_pages_and_purchases(tmp_path):
    _write(tmp_path, small_export(), json_days=1)  # the second day as BigQuery's JSON (INT64 as text)
    assert sorted(p.suffix for p in ga4.files(tmp_path, "events")) == [".json", ".parquet"]
    rep = ValidationReport()
    got = ga4.read(tmp_path, "events", Ga4Config(product_page_lists=("related_products",)), rep)
    assert got is not None and rep.errors == []
    rows = got.table.to_pylist()
    by = {(r["item_id"], r["event"]): r for r in rows}
    session_a = "dev-a:11"
    # a search list: its items at their 1-based index, its query the event's search_term
    assert [(r["item_id"], r["position"]) for r in rows if r["event"] == "impression" and r["query"]] == [
        ("X", 1),
        ("Y", 2),
        ("Z", 3),
    ]
    # select_item and the view_item it opens are clicks on the search list's Y; so are the cart and the purchase
    for kind in ("click", "add_to_cart", "purchase"):
        r = by[("Y", kind)]
        assert (r["query"], r["position"], r["session_id"], r["context_item_id"]) == ("fromages", 2, session_a, None)
    assert sum(1 for r in rows if r["item_id"] == "Y" and r["event"] == "click") == 2
    # a product page's shelf: its context is the session's latest view_item (P)
    page = [r for r in rows if r["context_item_id"] == "P"]
    assert {(r["item_id"], r["event"]) for r in page} == {("Q", "impression"), ("R", "impression"), ("R", "click")}
    # the other visit: a signed-in user's homepage list; a purchase of an item no list showed is dropped; a
    # select_item of a list that was not logged is a click of its own; the cookieless ping is dropped
    home = [r for r in rows if r["session_id"] == "dev-b:22" and r["event"] == "impression"]
    assert [(r["item_id"], r["user_id"], r["query"], r["context_item_id"]) for r in home] == [
        ("X", "u1", None, None),
        ("Q", "u1", None, None),
    ]
    assert ("W", "purchase") not in by and by[("V", "click")]["position"] == 4
    assert got.said["dropped_not_from_a_logged_list"] == {"purchase": 1, "view_item": 1}  # P's page view too
    warnings = " | ".join(str(w) for w in rep.warnings)
    assert "consent mode" in warnings and "1 purchase, 1 view_item dropped" in warnings
    assert got.table.column("timestamp").to_pylist()[0] == T0 // 1_000_000


@pytest.mark.unit
def test_a_ga4_export_without_list_events_is_refused_saying_what_ga4_lacks(tmp_path):
    rows = [r for r in small_export() if r["event_name"] not in ("view_item_list", "view_search_results")]
    _write(tmp_path, rows)
    rep = ValidationReport()
    ga4.read(tmp_path, "events", Ga4Config(), rep)
    assert any("no view_item_list or view_search_results event with items" in e.message for e in rep.errors)
    empty = ValidationReport()
    assert ga4.read(tmp_path / "nowhere", "events", Ga4Config(), empty) is None
    assert "no GA4 export in" in str(empty.errors[0])


@pytest.mark.unit
def test_the_merchant_center_feed_reads_alike_from_tsv_and_xml(tmp_path):
    catalogue = odd_shops.base()[0].slice(0, 30)
    rows = exports.feed_rows(catalogue)
    rows[0]["sale_price"] = "1.50 EUR"  # on sale, no dates: the sale price
    rows[1]["sale_price"], rows[1]["sale_price_effective_date"] = "0.99 EUR", "2020-01-01T00:00Z/2020-01-31T23:59Z"
    rows[2]["availability"] = "preorder"
    columns = (*exports.FEED_COLUMNS, "sale_price", "sale_price_effective_date")
    for r in rows:
        r.setdefault("sale_price", "")
        r.setdefault("sale_price_effective_date", "")
    tsv = tmp_path / "feed.tsv"
    tsv.write_text("\n".join(["\t".join(columns)] + ["\t".join(r[c] for c in columns) for r in rows]) + "\n")
    xml = exports.write_feed_xml(tmp_path / "feed.xml", rows)
    rep = ValidationReport()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    a, b = merchant_center.read(tsv, rep, now), merchant_center.read(xml, rep, now)
    assert rep.problems == [] and a is not None and b is not None
    assert a.to_pylist() == b.to_pylist()
    got = a.to_pylist()
    price = catalogue.column("unit_price").to_pylist()
    assert got[0]["price"] == 1.50 and got[1]["price"] == price[1] and got[3]["price"] == price[3]
    assert got[2]["stock"] == 1 and got[0]["category"] == catalogue.column("category")[0].as_py()
    assert got[0]["attributes"] == ["size:" + got[0]["item_id"].rsplit("-", 1)[-1]]
    qty = catalogue.column("qty").to_pylist()
    assert [g["stock"] for g in got[3:]] == [int(q > 0) for q in qty[3:]]


@pytest.mark.unit
def test_a_feed_with_wrong_prices_or_availability_names_the_attribute_and_rows(tmp_path):
    rows = exports.feed_rows(odd_shops.base()[0].slice(0, 5))
    rows[1]["price"], rows[3]["availability"] = "cheap", "sold out"
    rep = ValidationReport()
    merchant_center.read(exports.write_feed_tsv(tmp_path / "feed.tsv", rows), rep)
    said = [str(e) for e in rep.errors]
    assert "error: feed.tsv, column 'price', row 2: expected a price like '29.99 EUR', got 'cheap'" in said
    assert any("'availability', row 4: expected in_stock, out_of_stock, preorder or backorder" in s for s in said)


@pytest.mark.unit
def test_the_config_refuses_a_column_mapping_for_a_format_with_its_own_columns(tmp_path):
    raw = {"name": "x", "data": {"folder": ".", "events_format": "ga4", "columns": {"events": {"query": "q"}}}}
    with pytest.raises(cfg_mod.ConfigError, match="columns.events maps the contract's own files"):
        cfg_mod.parse(raw)


def write_both(root: Path) -> tuple[Path, Path]:
    """The grocery shop as a GA4 export + Merchant Center feed, and as the contract's own files."""
    catalogue, customers, events, config = odd_shops.base()
    ga_config = exports.write_ga4_shop(root / "ga4", catalogue, customers, events, config, feed="xml")
    twin = root / "contract"
    twin.mkdir()
    twin_catalogue, twin_events = exports.contract_twin(catalogue, events)
    pacsv.write_csv(twin_catalogue, twin / "catalogue.csv")
    pq.write_table(customers, twin / "customers.parquet")
    pacsv.write_csv(twin_events, twin / "events.csv")
    (twin / "shoprank.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return ga_config, twin / "shoprank.yaml"


@pytest.mark.slow
@pytest.mark.triton
def test_a_ga4_export_and_a_feed_serve_what_the_same_shop_in_contract_files_serves(tmp_path):
    ga_config, twin_config = write_both(tmp_path)
    reports = {}
    for name, path in (("ga4", ga_config), ("contract", twin_config)):
        reports[name] = build(
            config=path, out=tmp_path / f"{name}_repo", work=tmp_path / f"{name}_work", progress=False, golden_size=80
        )
    data = {name: r["data"] for name, r in reports.items()}
    for key in ("lists", "search_lists", "product_page_lists", "impressions", "clicks", "purchases"):
        assert data["ga4"][key] == data["contract"][key] > 0, key
    assert data["ga4"]["position_base"].startswith("1 = top") and data["contract"]["position_base"].startswith("0")
    sources = data["ga4"]["sources"]
    assert sources["items"] == {"format": "merchant_center", "file": "products.xml", "products": 400}
    assert sources["events"]["format"] == "ga4" and sources["events"]["dropped_not_from_a_logged_list"]["view_item"] > 0
    golden = {n: json.loads((tmp_path / f"{n}_repo" / "golden.json").read_text())["requests"] for n in reports}
    assert golden["ga4"] == golden["contract"]
    assert np.isfinite(reports["ga4"]["ranker"]["test"]["ranker"]["ndcg@10_ips"])
    server = TritonServer(
        ServerOptions(model_repository=tmp_path / "ga4_repo", log_file=tmp_path / "triton.log", ready_timeout_s=180)
    )
    server.start()
    try:
        lines: list[str] = []
        code = rollout(["verify", "--golden", str(tmp_path / "contract_repo"), "--url", server.http_url], lines.append)
        assert code == 0 and "verify: PASSED" in "\n".join(lines)
    finally:
        server.stop()

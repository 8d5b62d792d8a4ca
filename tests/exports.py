"""A shop written as a real shop's tools export it: GA4's BigQuery export (one ``events_YYYYMMDD`` table a day,
Parquet, the last days as BigQuery's newline-delimited JSON) and a Google Merchant Center feed (TSV or XML).

The GA4 tables follow the published export schema (``SCHEMA``: every top-level column; the ones the reader does
not use are written empty). ``from_contract`` turns the grocery shop of ``tests/odd_shops.py`` into both formats,
and ``contract_twin`` writes the same shop in the contract's own files, as the readers should map it, so a test
can build both and compare what they serve.

The GA4 side is written as a site's gtag would send it: a search results page is a ``view_search_results``
event with a ``search_term`` and its items, a homepage shelf a ``view_item_list`` named ``homepage``, a product
page's shelf a ``view_item`` of the page's product and then a ``view_item_list`` named ``related_products``; a
click is a ``select_item`` and the ``view_item`` of the product page it opens; then ``add_to_cart`` and
``purchase``. ``item_list_index`` counts from 1, as text, as the export has it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_VALUE = pa.struct(
    [
        ("string_value", pa.string()),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("double_value", pa.float64()),
    ]
)
_PARAMS = pa.list_(pa.struct([("key", pa.string()), ("value", _VALUE)]))
_USER_VALUE = pa.struct([*[(f.name, f.type) for f in _VALUE], ("set_timestamp_micros", pa.int64())])
_S = pa.string()
_ITEM = pa.struct(
    [
        ("item_id", _S),
        ("item_name", _S),
        ("item_brand", _S),
        ("item_variant", _S),
        ("item_category", _S),
        ("item_category2", _S),
        ("item_category3", _S),
        ("item_category4", _S),
        ("item_category5", _S),
        ("price_in_usd", pa.float64()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
        ("item_revenue_in_usd", pa.float64()),
        ("item_revenue", pa.float64()),
        ("item_refund_in_usd", pa.float64()),
        ("item_refund", pa.float64()),
        ("coupon", _S),
        ("affiliation", _S),
        ("location_id", _S),
        ("item_list_id", _S),
        ("item_list_name", _S),
        ("item_list_index", _S),
        ("promotion_id", _S),
        ("promotion_name", _S),
        ("creative_name", _S),
        ("creative_slot", _S),
        ("item_params", _PARAMS),
    ]
)
_SOURCE = pa.struct([("name", _S), ("medium", _S), ("source", _S)])
SCHEMA = pa.schema(
    [
        ("event_date", _S),
        ("event_timestamp", pa.int64()),
        ("event_name", _S),
        ("event_params", _PARAMS),
        ("event_previous_timestamp", pa.int64()),
        ("event_value_in_usd", pa.float64()),
        ("event_bundle_sequence_id", pa.int64()),
        ("event_server_timestamp_offset", pa.int64()),
        ("user_id", _S),
        ("user_pseudo_id", _S),
        ("privacy_info", pa.struct([("analytics_storage", _S), ("ads_storage", _S), ("uses_transient_token", _S)])),
        ("user_properties", pa.list_(pa.struct([("key", _S), ("value", _USER_VALUE)]))),
        ("user_first_touch_timestamp", pa.int64()),
        ("user_ltv", pa.struct([("revenue", pa.float64()), ("currency", _S)])),
        (
            "device",
            pa.struct(
                [
                    ("category", _S),
                    ("mobile_brand_name", _S),
                    ("mobile_model_name", _S),
                    ("mobile_marketing_name", _S),
                    ("mobile_os_hardware_model", _S),
                    ("operating_system", _S),
                    ("operating_system_version", _S),
                    ("vendor_id", _S),
                    ("advertising_id", _S),
                    ("language", _S),
                    ("is_limited_ad_tracking", _S),
                    ("time_zone_offset_seconds", pa.int64()),
                    ("browser", _S),
                    ("browser_version", _S),
                    ("web_info", pa.struct([("browser", _S), ("browser_version", _S), ("hostname", _S)])),
                ]
            ),
        ),
        (
            "geo",
            pa.struct(
                [("city", _S), ("country", _S), ("continent", _S), ("region", _S), ("sub_continent", _S), ("metro", _S)]
            ),
        ),
        (
            "app_info",
            pa.struct(
                [("id", _S), ("version", _S), ("install_store", _S), ("firebase_app_id", _S), ("install_source", _S)]
            ),
        ),
        ("traffic_source", _SOURCE),
        ("stream_id", _S),
        ("platform", _S),
        ("event_dimensions", pa.struct([("hostname", _S)])),
        (
            "ecommerce",
            pa.struct(
                [
                    ("total_item_quantity", pa.int64()),
                    ("purchase_revenue_in_usd", pa.float64()),
                    ("purchase_revenue", pa.float64()),
                    ("refund_value_in_usd", pa.float64()),
                    ("refund_value", pa.float64()),
                    ("shipping_value_in_usd", pa.float64()),
                    ("shipping_value", pa.float64()),
                    ("tax_value_in_usd", pa.float64()),
                    ("tax_value", pa.float64()),
                    ("unique_items", pa.int64()),
                    ("transaction_id", _S),
                ]
            ),
        ),
        ("items", pa.list_(_ITEM)),
        (
            "collected_traffic_source",
            pa.struct(
                [
                    ("manual_campaign_id", _S),
                    ("manual_campaign_name", _S),
                    ("manual_source", _S),
                    ("manual_medium", _S),
                    ("manual_term", _S),
                    ("manual_content", _S),
                    ("gclid", _S),
                    ("dclid", _S),
                    ("srsltid", _S),
                ]
            ),
        ),
        ("is_active_user", pa.bool_()),
        ("batch_event_index", pa.int64()),
        ("batch_page_id", pa.int64()),
        ("batch_ordering_id", pa.int64()),
    ]
)
SEARCH, HOME, RELATED = "search_results", "homepage", "related_products"
GA4_CONFIG = {"events_format": "ga4", "ga4": {"product_page_lists": [RELATED]}}


def _param(key: str, value) -> dict:
    v = {"string_value": None, "int_value": None, "float_value": None, "double_value": None}
    v["int_value" if isinstance(value, int) else "string_value"] = value
    return {"key": key, "value": v}


def _item(sku: str, name: str | None = None, list_name: str | None = None, index: int | None = None) -> dict:
    item: dict[str, Any] = {f.name: None for f in _ITEM}
    item.update(item_id=sku, item_name=name, item_list_name=list_name, item_list_id=list_name, quantity=1)
    item["item_list_index"] = None if index is None else str(index)
    item["item_params"] = []
    return item


def _row(micros: int, name: str, session: tuple[str | None, int], user: str | None, params: list, items: list) -> dict:
    row: dict[str, Any] = {f.name: None for f in SCHEMA}
    pseudo, ga_session = session
    row.update(
        event_date=datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y%m%d"),
        event_timestamp=micros,
        event_name=name,
        event_params=[_param("ga_session_id", ga_session), _param("page_location", "https://shop.example/"), *params],
        user_id=user,
        user_pseudo_id=pseudo,
        user_properties=[],
        stream_id="1234567890",
        platform="WEB",
        items=items,
        privacy_info={"analytics_storage": "Yes", "ads_storage": "Yes", "uses_transient_token": "No"},
        is_active_user=True,
    )
    return row


def session_of(contract_session: str) -> tuple[str, int]:
    """The (user_pseudo_id, ga_session_id) a contract session becomes: one device per session here."""
    number = int(contract_session.split("-")[1])
    return f"{1_000_000 + number}.{1_790_000_000 + number}", 1_790_000_000 + number


def ga4_rows(events: pa.Table, titles: dict[str, str]) -> list[dict]:
    """The grocery shop's events (warehouse names: ts, session_id, user_id, query, item_id, position, type,
    context_item_id) as GA4 export rows."""
    cols = {c: events.column(c).to_pylist() for c in events.column_names}
    micros = events.column("ts").cast(pa.int64()).to_numpy()
    context = cols.get("context_item_id", [None] * events.num_rows)
    lists: dict[tuple, list[int]] = {}
    for i in range(events.num_rows):
        lists.setdefault((cols["session_id"][i], cols["query"][i], context[i]), []).append(i)
    out = []
    for (session, query, page), rows in lists.items():
        ga = session_of(session)
        user = cols["user_id"][rows[0]]
        shown = [i for i in rows if cols["type"][i] == "impression"]
        if shown:
            t0 = int(min(micros[i] for i in shown))
            name = SEARCH if query is not None else RELATED if page is not None else HOME
            if page is not None:
                out.append(_row(t0 - 1_000_000, "view_item", ga, user, [], [_item(page, titles.get(page))]))
            items = [
                _item(cols["item_id"][i], titles.get(cols["item_id"][i]), name, cols["position"][i] + 1) for i in shown
            ]
            event = "view_search_results" if query is not None else "view_item_list"
            params = [_param("search_term", query)] if query is not None else [_param("item_list_name", name)]
            out.append(_row(t0, event, ga, user, params, items))
        for i in rows:
            kind, sku, t = cols["type"][i], cols["item_id"][i], int(micros[i])
            name = SEARCH if query is not None else RELATED if page is not None else HOME
            if kind == "click":
                out.append(
                    _row(t, "select_item", ga, user, [], [_item(sku, titles.get(sku), name, cols["position"][i] + 1)])
                )
                out.append(_row(t + 1, "view_item", ga, user, [], [_item(sku, titles.get(sku))]))
            elif kind in ("add_to_cart", "purchase"):
                out.append(_row(t, kind, ga, user, [], [_item(sku, titles.get(sku))]))
    out.sort(key=lambda r: r["event_timestamp"])
    return out


def write_ga4(folder: Path, rows: list[dict], json_days: int = 3) -> list[Path]:
    """One ``events_YYYYMMDD`` file a day: Parquet, the last ``json_days`` days as BigQuery's JSON (INT64 as
    text, one object a line)."""
    folder.mkdir(parents=True, exist_ok=True)
    days = sorted({r["event_date"] for r in rows})
    written = []
    for d in days:
        day_rows = [r for r in rows if r["event_date"] == d]
        if d in days[len(days) - json_days :]:
            path = folder / f"events_{d}.json"
            with path.open("w", encoding="utf-8") as f:
                for r in day_rows:
                    f.write(json.dumps(_bigquery_json(r), ensure_ascii=False) + "\n")
        else:
            path = folder / f"events_{d}.parquet"
            pq.write_table(pa.Table.from_pylist(day_rows, schema=SCHEMA), path)
        written.append(path)
    return written


def _bigquery_json(value):
    """BigQuery's JSON export: INT64 as a string, nulls left out."""
    if isinstance(value, dict):
        return {k: _bigquery_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_bigquery_json(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


FEED_COLUMNS = (
    "id",
    "title",
    "description",
    "link",
    "image_link",
    "availability",
    "price",
    "brand",
    "condition",
    "google_product_category",
    "product_type",
    "item_group_id",
    "size",
    "gtin",
)


def feed_rows(catalogue: pa.Table) -> list[dict[str, str]]:
    """The grocery catalogue (sku, name, category, brand, unit_price, qty) as Merchant Center products; the
    size is the SKU's last part (``SKU-00012-500G``)."""
    cols = {c: catalogue.column(c).to_pylist() for c in catalogue.column_names}
    rows = []
    for i, sku in enumerate(cols["sku"]):
        rows.append(
            {
                "id": sku,
                "title": cols["name"][i],
                "description": cols["name"][i],
                "link": f"https://shop.example/p/{sku}",
                "image_link": f"https://shop.example/img/{sku}.jpg",
                "availability": "in_stock" if cols["qty"][i] > 0 else "out_of_stock",
                "price": f"{cols['unit_price'][i]:.2f} EUR",
                "brand": cols["brand"][i] or "",
                "condition": "new",
                "google_product_category": "Food, Beverages & Tobacco > Food Items",
                "product_type": cols["category"][i] or "",
                "item_group_id": "",
                "size": sku.rsplit("-", 1)[-1],
                "gtin": f"{4_000_000_000_000 + i}",
            }
        )
    return rows


def write_feed_tsv(path: Path, rows: list[dict[str, str]]) -> Path:
    lines = ["\t".join(FEED_COLUMNS)] + ["\t".join(r[c] for c in FEED_COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_feed_xml(path: Path, rows: list[dict[str, str]]) -> Path:
    items = []
    for r in rows:
        fields = "".join(
            f"<title>{escape(v)}</title>" if c == "title" else f"<g:{c}>{escape(v)}</g:{c}>" for c, v in r.items() if v
        )
        items.append(f"<item>{fields}</item>")
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">'
        f"<channel><title>Shop</title><link>https://shop.example</link>{''.join(items)}</channel></rss>\n",
        encoding="utf-8",
    )
    return path


def contract_twin(catalogue: pa.Table, events: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The same shop in the contract's files, as the readers map it: the feed's attributes (size) and stock
    (1 in stock, 0 out), the GA4 sessions' ids (user_pseudo_id:ga_session_id), and the events in time order as
    the reader writes them (a query's first appearance orders the build's query table)."""
    skus = catalogue.column("sku").to_pylist()
    qty = np.array(catalogue.column("qty").to_pylist())
    catalogue = catalogue.set_column(
        catalogue.column_names.index("labels"), "labels", pa.array([f"size:{s.rsplit('-', 1)[-1]}" for s in skus])
    )
    catalogue = catalogue.set_column(catalogue.column_names.index("qty"), "qty", pa.array((qty > 0).astype(np.int64)))
    pseudo = [f"{a}:{b}" for a, b in (session_of(s) for s in events.column("session_id").to_pylist())]
    events = events.set_column(events.column_names.index("session_id"), "session_id", pa.array(pseudo))
    order = np.argsort(events.column("ts").cast(pa.int64()).to_numpy(), kind="stable")
    return catalogue, events.take(pa.array(order))


def write_ga4_shop(
    folder: Path, catalogue: pa.Table, customers: pa.Table, events: pa.Table, config: dict, feed: str
) -> Path:
    """The grocery shop (warehouse names) as a GA4 export, a Merchant Center feed (``feed``: ``tsv`` or ``xml``)
    and the customers file, with the ``shoprank.yaml`` (``config`` with GA4's and the feed's data section)
    that builds them; returns the config's path."""
    import copy

    import yaml

    titles = dict(zip(catalogue.column("sku").to_pylist(), catalogue.column("name").to_pylist(), strict=True))
    write_ga4(folder, ga4_rows(events, titles))
    writer = write_feed_xml if feed == "xml" else write_feed_tsv
    writer(folder / f"products.{feed}", feed_rows(catalogue))
    pq.write_table(customers, folder / "customers.parquet")
    config = copy.deepcopy(config)
    config["data"] = {
        "folder": ".",
        "items": "products",
        "items_format": "merchant_center",
        "users": "customers.parquet",
        "id_type": "string",
        **GA4_CONFIG,
    }
    (folder / "shoprank.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return folder / "shoprank.yaml"

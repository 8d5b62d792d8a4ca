"""A Google Merchant Center product feed as the contract's items table (``data.items_format: merchant_center``).

Both of the feed's file formats are read: a tab-separated text file with a header row (``.tsv``, ``.txt``,
optionally gzipped) and the XML feed (RSS 2.0 ``<item>`` or Atom ``<entry>`` elements, the attributes in the
``g:`` namespace or without one). The mapping, attribute by attribute:

* ``id`` -> ``item_id``; ``title`` -> ``title``; ``brand`` -> ``brand``; ``item_group_id`` -> ``item_group_id``;
* ``price`` ("29.99 EUR") -> ``price``; a ``sale_price`` replaces it while its ``sale_price_effective_date``
  ("start/end", ISO-8601) holds at build time, or always where the feed gives no dates; the currency is
  kept out of the number (one currency a feed: a second is a warning, prices are compared as numbers);
* ``availability`` -> ``stock``: ``in_stock``, ``preorder`` and ``backorder`` are 1 (orderable), ``out_of_stock``
  0 (a feed has no units; the ranker reads only whether an item is in stock);
* ``product_type`` (the first, a "A > B > C" path) -> ``category``, else ``google_product_category`` (its text
  path, or its numeric id as text);
* the variant attributes ``color``, ``size``, ``material``, ``pattern``, ``gender``, ``age_group`` and
  ``size_type`` -> ``attributes`` as ``name:value`` (filters, facets and query understanding use them).

A feed has no listing date (``created_at``), no stock units, and no item the feed leaves out (items only in
the events are cold items, as with any catalogue).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from builders.data.report import ValidationReport

SUFFIXES = (".tsv", ".txt", ".tsv.gz", ".txt.gz", ".xml", ".xml.gz")
VARIANT_ATTRIBUTES = ("color", "size", "material", "pattern", "gender", "age_group", "size_type")
AVAILABILITY = {"in_stock": 1, "in stock": 1, "preorder": 1, "backorder": 1, "out_of_stock": 0, "out of stock": 0}
PRICE = re.compile(r"^\s*(?:([A-Z]{3})\s+)?([0-9]+(?:[.,][0-9]+)?)\s*(?:([A-Z]{3}))?\s*$")


def find(folder: Path, name: str) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    for suffix in SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return None


def _open_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8-sig")


def _rows_tsv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]


def _rows_xml(text: str) -> list[dict[str, str]]:
    root = ET.fromstring(text)
    rows = []
    for element in root.iter():
        if _local(element.tag) not in ("item", "entry"):
            continue
        row: dict[str, str] = {}
        for child in element:
            name = _local(child.tag).lower()
            if name not in row and len(child) == 0:  # the first value of a repeated attribute; no nested ones
                row[name] = (child.text or "").strip()
        rows.append(row)
    return rows


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _price(text: str) -> tuple[float | None, str | None]:
    m = PRICE.match(text or "")
    if not m:
        return None, None
    return float(m.group(2).replace(",", ".")), m.group(1) or m.group(3)


def _on_sale(dates: str, now: datetime) -> bool:
    """Whether ``now`` is within the feed's ``start/end`` (either side may be missing); True without dates."""
    if not dates:
        return True
    parts = dates.split("/")
    try:
        bounds = [datetime.fromisoformat(p.strip().replace("Z", "+00:00")) if p.strip() else None for p in parts]
    except ValueError:
        return True
    bounds = [b.replace(tzinfo=UTC) if b is not None and b.tzinfo is None else b for b in bounds]
    start = bounds[0] if bounds else None
    end = bounds[1] if len(bounds) > 1 else None
    return (start is None or start <= now) and (end is None or now <= end)


def read(path: Path, rep: ValidationReport, now: datetime | None = None) -> pa.Table | None:
    """The feed at ``path`` as the contract's items table (contract column names), or None (reported)."""
    now = now or datetime.now(UTC)
    try:
        text = _open_text(path)
        rows = _rows_xml(text) if ".xml" in path.name else _rows_tsv(text)
    except (OSError, UnicodeDecodeError, ET.ParseError, csv.Error) as err:
        rep.error(path.name, None, f"cannot be read as a Merchant Center feed: {err}")
        return None
    if not rows:
        rep.error(path.name, None, "no product in the feed (a header row and one row a product, or <item> elements)")
        return None
    have = set().union(*rows)
    for needed in ("id", "title", "price", "availability"):
        if needed not in have:
            rep.error(path.name, needed, f"missing required feed attribute; the feed has {', '.join(sorted(have))}")
    if rep.errors:
        return None
    price = np.full(len(rows), np.nan)
    currency: list[str | None] = []
    bad_price, bad_stock = [], []
    stock = np.zeros(len(rows), np.int64)
    for i, row in enumerate(rows):
        value, cur = _price(row.get("price", ""))
        sale, sale_cur = _price(row.get("sale_price", ""))
        if sale is not None and _on_sale(row.get("sale_price_effective_date", ""), now):
            value, cur = sale, sale_cur or cur
        if value is None:
            bad_price.append(i)
        else:
            price[i] = value
        currency.append(cur)
        availability = row.get("availability", "").strip().lower()
        if availability not in AVAILABILITY:
            bad_stock.append(i)
        stock[i] = AVAILABILITY.get(availability, 0)
    if bad_price:
        shown = ", ".join(repr(rows[i].get("price", "")) for i in bad_price[:3])
        rep.error(path.name, "price", f"expected a price like '29.99 EUR', got {shown}", np.array(bad_price))
    if bad_stock:
        shown = ", ".join(repr(rows[i].get("availability", "")) for i in bad_stock[:3])
        rep.error(
            path.name,
            "availability",
            f"expected in_stock, out_of_stock, preorder or backorder, got {shown}",
            np.array(bad_stock),
        )
    currencies = sorted({c for c in currency if c})
    if len(currencies) > 1:
        rep.warning(
            path.name,
            "price",
            f"prices in {len(currencies)} currencies ({', '.join(currencies)}): compared as plain numbers",
        )

    def column(name: str) -> list[str | None]:
        return [row.get(name) or None for row in rows]

    category = [
        (r.get("product_type") or "").split(",")[0].strip() or (r.get("google_product_category") or "").strip() or None
        for r in rows
    ]
    attributes = [[f"{a}:{r[a]}" for a in VARIANT_ATTRIBUTES if r.get(a)] for r in rows]
    return pa.table(
        {
            "item_id": pa.array(column("id"), pa.string()),
            "title": pa.array(column("title"), pa.string()),
            "category": pa.array(category, pa.string()),
            "brand": pa.array(column("brand"), pa.string()),
            "price": pa.array(price, pa.float64()),
            "stock": pa.array(stock, pa.int64()),
            "attributes": pa.array(attributes, pa.list_(pa.string())),
            "item_group_id": pa.array(column("item_group_id"), pa.string()),
        }
    )

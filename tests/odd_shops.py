"""Small shops that are each odd in one way, but valid: the grocery shop of ``tests/shops.py`` (with product
pages) changed in one respect. ``tests/test_odd_data.py`` builds and serves each one, or expects ``check-data``
to refuse it with a message that names what is wrong.

Each variant is a function ``(catalogue, customers, events, config) -> (catalogue, customers, events, config)``
over the warehouse's own column names (``sku``, ``name``, ``ts``, ``type``, ...).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tests import shops

BASE: dict = dict(n_items=400, n_users=80, n_sessions=1200, days=30, seed=11, product_pages=0.5)
Tables = tuple[pa.Table, pa.Table | None, pa.Table, dict]


def base() -> Tables:
    catalogue, customers, events = shops.generate(**BASE)
    config = copy.deepcopy(shops.CONFIG)
    config["name"] = "odd"
    config["encoder"] = {"fine_tune": "off"}  # the bundled MiniLM as it is: one export shared by every build
    config["ranker"] = {"epochs": 2}
    return catalogue, customers, events, config


def _set(table: pa.Table, column: str, values, type_=None) -> pa.Table:
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type_)
    return table.set_column(table.column_names.index(column), column, array)


def positions_from_one(c, u, e, cfg):
    return c, u, _set(e, "position", pc.add(e.column("position"), 1)), cfg


def no_positions(c, u, e, cfg):
    return c, u, e.drop_columns(["position"]), cfg


def one_position(c, u, e, cfg):
    return c, u, _set(e, "position", np.zeros(e.num_rows, np.int64)), cfg


def no_item_at_two_positions(c, u, e, cfg):
    """Each item always at the same position: position bias cannot be told from the item."""
    fixed = [int(hashlib.sha256(s.encode()).hexdigest(), 16) % 12 for s in e.column("item_id").to_pylist()]
    return c, u, _set(e, "position", fixed, pa.int64()), cfg


def recommendation_only(c, u, e, cfg):
    return c, u, _set(e, "query", [None] * e.num_rows, pa.string()), cfg


def search_only(c, u, e, cfg):
    e = e.filter(pc.is_valid(e.column("query")))
    return c, u, e.drop_columns(["context_item_id"]), cfg


def every_visitor_anonymous(c, u, e, cfg):
    cfg = copy.deepcopy(cfg)
    cfg["data"]["users"] = None
    cfg["features"] = {}
    return c, None, _set(e, "user_id", [None] * e.num_rows, pa.string()), cfg


def a_handful_of_searches(c, u, e, cfg):
    """Three search lists in all: every other search's list is logged as a homepage list."""
    query = e.column("query").to_pylist()
    session = e.column("session_id").to_pylist()
    searched = sorted({s for s, q in zip(session, query, strict=True) if q is not None}, key=lambda s: int(s[5:]))
    keep_searches = set(searched[:: max(1, len(searched) // 3)][:3])
    query = [q if s in keep_searches else None for s, q in zip(session, query, strict=True)]
    return c, u, _set(e, "query", query, pa.string()), cfg


def one_category_no_brands(c, u, e, cfg):
    c = _set(c, "category", ["Épicerie"] * c.num_rows)
    return _set(c, "brand", [None] * c.num_rows, pa.string()), u, e, cfg


def extreme_titles(c, u, e, cfg):
    """A 1-character title, a 2,000-character one, emoji, Hebrew and Arabic titles (right to left)."""
    names = c.column("name").to_pylist()
    names[0] = "X"
    names[1] = ("Pâtes fraîches aux œufs " * 100)[:2000]
    for i in range(2, len(names), 7):
        names[i] = f"🍝🧀 {names[i]} 🔥"
    for i in range(3, len(names), 11):
        names[i] = "פסטה איטלקית " + ("מלא" if i % 2 else "לבן")
    for i in range(4, len(names), 13):
        names[i] = "معكرونة إيطالية " + str(i)
    return _set(c, "name", names), u, e, cfg


def identical_titles(c, u, e, cfg):
    return _set(c, "name", ["Produit"] * c.num_rows), u, e, cfg


def time_zones(c, u, e, cfg):
    """ISO-8601 text with a zone offset per row (Paris, New York, UTC as Z): the same instants."""
    zones = [timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), UTC]
    seconds = e.column("ts").cast(pa.int64()).to_numpy() // 1_000_000
    text = [
        datetime.fromtimestamp(int(t), zones[i % 3]).isoformat().replace("+00:00", "Z") for i, t in enumerate(seconds)
    ]
    return c, u, _set(e, "ts", text, pa.string()), cfg


def just_above_the_minimum(c, u, e, cfg):
    """The fewest whole sessions (from the start of each window) that still pass the data check: the train
    window needs 100 clicked and 100 unclicked impressions, validation and test 20 of each."""
    return c, u, _sessions(e, MINIMUM_SESSIONS), cfg


def below_the_minimum(c, u, e, cfg):
    return c, u, _sessions(e, 60), cfg


def untouched_items(c, u, e, cfg):
    """Four times as many items as the events ever touch."""
    extra = shops.generate(n_items=1600, n_users=2, n_sessions=1, days=1, seed=99)[0]
    skus = [f"NEW-{s}" for s in extra.column("sku").to_pylist()]
    extra = _set(extra, "sku", skus)
    return pa.concat_tables([c, extra.cast(c.schema)]), u, e, cfg


def one_hour_of_events(c, u, e, cfg):
    """Every event within one hour (30 days squeezed, sub-second timestamps): the split cuts within the hour."""
    us = e.column("ts").cast(pa.int64()).to_numpy()
    squeezed = us.min() + (us - us.min()) // (30 * 24)
    return c, u, _set(e, "ts", pa.array(squeezed, pa.int64()).cast(pa.timestamp("us"))), cfg


def one_timestamp(c, u, e, cfg):
    """Every event stamped with the same time (an export that wrote its own time): no span to split."""
    return c, u, _set(e, "ts", pa.array([1_790_000_000_000_000] * e.num_rows, pa.timestamp("us"))), cfg


def no_clicks_in_the_validation_days(c, u, e, cfg):
    us = e.column("ts").cast(pa.int64()).to_numpy()
    lo, hi = us.min() + 0.78 * (us.max() - us.min()), us.min() + 0.92 * (us.max() - us.min())
    kind = np.array(e.column("type").to_pylist(), object)
    keep = ~((us >= lo) & (us < hi) & (kind != "impression"))
    return c, u, e.filter(pa.array(keep)), cfg


MINIMUM_SESSIONS = 120


def _sessions(e: pa.Table, n: int) -> pa.Table:
    """The events of ``n`` sessions spread over the whole span (every k-th session)."""
    sessions = np.array(e.column("session_id").to_pylist(), object)
    numbers = np.array([int(s.split("-")[1]) for s in sessions])
    step = max(1, (numbers.max() + 1) // n)
    return e.filter(pa.array(numbers % step == 0))


@dataclass(frozen=True)
class Odd:
    name: str
    change: Callable[..., Tables]
    refused: str | None = None  # a phrase check-data's message must hold, where the shop is refused

    def tables(self) -> Tables:
        return self.change(*base())


SERVED = (
    Odd("positions counted from 1", positions_from_one),
    Odd("no positions", no_positions),
    Odd("every position equal", one_position),
    Odd("no item at two positions", no_item_at_two_positions),
    Odd("recommendations only", recommendation_only),
    Odd("searches only", search_only),
    Odd("three searches in all", a_handful_of_searches),
    Odd("every visitor anonymous", every_visitor_anonymous),
    Odd("one category, no brands", one_category_no_brands),
    Odd("1 and 2,000 characters, emoji, right to left", extreme_titles),
    Odd("identical titles", identical_titles),
    Odd("timestamps with time zones", time_zones),
    Odd("just above the minimum size", just_above_the_minimum),
    Odd("items no event touches", untouched_items),
    Odd("one hour of events", one_hour_of_events),
)
REFUSED = (
    Odd("below the minimum size", below_the_minimum, "too few events to train"),
    Odd("one timestamp on every event", one_timestamp, "too short for the split"),
    Odd("no clicks in the validation days", no_clicks_in_the_validation_days, "the val window"),
)

"""The data contract: which files a shop exports, their columns, types and rules (docs/data.md).

Three tables, each one file in the data folder, Parquet or CSV:

* ``items`` (required): the catalogue, one row per item;
* ``users`` (optional): one row per known user; a shop may have anonymous traffic only;
* ``events`` (required): impressions, clicks, add-to-carts and purchases, one row each.

Column names can be mapped in the build config (``data.columns``); extra columns are ignored
unless the config names them (``features.user_segment``, ``evaluation.true_relevance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runtime.lexicon import CATEGORY_SEPARATOR  # noqa: F401  (paths like "Shoes > Running"; shared with serving)

CONTRACT_VERSION = 1
EVENT_KINDS = ("impression", "click", "add_to_cart", "purchase")
ATTRIBUTE_SEPARATOR = ";"
MAX_ATTRIBUTES = 4  # attributes kept per item (the rest are ignored, counted in the report)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | text | number | count | timestamp | attributes | event | position
    required: bool = True
    nullable: bool = False
    doc: str = ""


ITEMS = (
    Column("item_id", "id", doc="int64, or a string SKU such as 'SKU-00012-XL'; unique"),
    Column("title", "text", doc="UTF-8, any language; not empty"),
    Column("category", "text", nullable=True, doc="a name or a path like 'Shoes > Running'; null = uncategorised"),
    Column("brand", "text", nullable=True, doc="null = no brand"),
    Column("price", "number", doc="> 0"),
    Column("stock", "count", doc="units in stock, >= 0"),
    Column(
        "attributes", "attributes", required=False, nullable=True, doc="a list of strings, or one ';'-separated string"
    ),
    Column("created_at", "timestamp", required=False, nullable=True, doc="when the item was listed"),
    Column(
        "item_group_id",
        "text",
        required=False,
        nullable=True,
        doc="the product whose variant (colour, size) this row is, as in a Merchant Center feed; null = none",
    ),
)
USERS = (Column("user_id", "id", doc="int64 or string; unique"),)
EVENTS = (
    Column("timestamp", "timestamp", doc="a timestamp, an ISO-8601 string, or integer unix seconds"),
    Column("session_id", "id", doc="int64 or string"),
    Column("user_id", "id", nullable=True, doc="null = anonymous"),
    Column("query", "text", nullable=True, doc="UTF-8; null = homepage or browse"),
    Column("item_id", "id", doc="the item's id as in items"),
    Column(
        "context_item_id",
        "id",
        required=False,
        nullable=True,
        doc="the item whose page showed the list (product-page recommendations); null = search or homepage",
    ),
    Column("position", "position", required=False, nullable=True, doc="0 = top; null where unknown"),
    Column("event", "event", doc="one of " + ", ".join(EVENT_KINDS)),
)
TableName = Literal["items", "users", "events"]
TABLES: dict[TableName, tuple[Column, ...]] = {"items": ITEMS, "users": USERS, "events": EVENTS}
CONTRACT_COLUMNS: dict[str, set[str]] = {t: {c.name for c in cols} for t, cols in TABLES.items()}

# Thresholds of the "too few events" check: below these a ranker cannot be trained or judged.
MIN_TRAIN_CLICKS = 100
MIN_EVAL_CLICKS = 20

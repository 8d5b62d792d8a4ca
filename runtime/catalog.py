"""What shoppers narrow, group and count results by: the catalogue's filterable fields, by item row.

The build writes these tables beside the feature tables (``feature_store/catalog_*.npy`` and
``catalog.json``); the retrieval models, the feature models and topk map them read-only. Every table has
one extra last row, the unknown item's, which no filter on a catalogue field accepts (row -1 reads it).

* ``category`` / ``brand``: indices into ``categories`` / ``brands`` (-1 none);
* ``attrs [I+1, W]``: indices into ``attributes`` (every attribute the item has, -1 padding). An
  attribute written ``name:value`` (``colour:black``, ``size:M``) is filtered and counted under its name;
  one without a name (``waterproof``) under ``attribute``;
* ``price``: the build's price (the online store's current price replaces it where it has one);
* ``in_stock``: the build's stock > 0;
* ``created``: unix seconds the item was listed, -1 unknown;
* ``group``: the variant group (the data's ``item_group_id``) as an index into ``group_keys``; an item
  without one is a group of its own (``n_groups + row``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.lexicon import CATEGORY_SEPARATOR, UNNAMED, attribute_parts
from runtime.pages import load_tables, save_tables

CATALOG_FILE = "catalog.json"  # the vocabularies and price buckets, in a version folder
TABLE_PREFIX = "catalog_"  # feature_store/catalog_<name>.npy
GROUP_KEYS = "group_keys"  # feature_store/catalog_group_keys.npy: the shop's item_group_id by group index
TABLES = ("category", "brand", "attrs", "price", "in_stock", "created", "group")
__all__ = ["UNNAMED", "Catalog", "Vocabulary", "attribute_parts", "build_catalog", "category_levels", "price_edges"]


def category_levels(path: str) -> list[str]:
    """The path's segments, lower-cased: ``"Women > Dresses"`` -> ``["women", "dresses"]``."""
    return [p.strip().lower() for p in path.split(CATEGORY_SEPARATOR) if p.strip()]


def price_edges(prices: Array, buckets: int = 5) -> list[float]:
    """Bucket edges for the price facet: the catalogue's price quantiles, rounded to two significant digits
    (a shopper reads "25 - 50", not "23.71 - 48.02"), distinct and ascending."""
    finite = np.asarray(prices, np.float64)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size == 0:
        return []
    edges = []
    for q in np.quantile(finite, np.linspace(0, 1, buckets + 1)[1:-1]):
        digits = 1 - int(np.floor(np.log10(q)))
        edges.append(float(round(q, digits)))
    return sorted(set(e for e in edges if e > 0))


@dataclass(frozen=True)
class Vocabulary:
    """``catalog.json``: the names behind the tables' indices, and the price facet's bucket edges."""

    categories: list[str]
    brands: list[str]
    attributes: list[str]
    price_edges: list[float]
    n_groups: int  # groups from item_group_id; 0: the shop has none

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(**json.loads(text))


class Catalog:
    """The filterable fields by item row (the tables above), with lookups from names to indices."""

    def __init__(self, tables: dict[str, Array], vocabulary: Vocabulary, group_keys: Array | None):
        self.tables = tables
        self.vocabulary = vocabulary
        self.group_keys = group_keys  # [n_groups] fixed-width UTF-8; None without groups
        self.category: Array = tables["category"]
        self.brand: Array = tables["brand"]
        self.attrs: Array = tables["attrs"]
        self.price: Array = tables["price"]
        self.in_stock: Array = tables["in_stock"]
        self.created: Array = tables["created"]
        self.group: Array = tables["group"]
        self.n_items = len(self.category) - 1
        parts = [attribute_parts(a) for a in vocabulary.attributes]
        self.attribute_names = np.array([n for n, _ in parts], object)
        self.attribute_values = np.array([v for _, v in parts], object)
        self.names = sorted({n for n, _ in parts})
        self.category_paths = [category_levels(p) for p in vocabulary.categories]
        self._brand_index = {b.strip().lower(): i for i, b in enumerate(vocabulary.brands)}

    @property
    def has_groups(self) -> bool:
        return self.vocabulary.n_groups > 0

    # lookups: name -> a boolean table over the vocabulary plus one False entry for -1 (none)
    def categories_under(self, prefixes: list[str]) -> Array:
        """``[C+1]``: True for each category whose path starts with one of ``prefixes`` (whole segments)."""
        wanted = [category_levels(p) for p in prefixes]
        table = np.zeros(len(self.category_paths) + 1, bool)
        for i, path in enumerate(self.category_paths):
            table[i] = any(path[: len(w)] == w for w in wanted if w)
        return table

    def brands_named(self, names: list[str]) -> Array:
        table = np.zeros(len(self.vocabulary.brands) + 1, bool)
        for name in names:
            index = self._brand_index.get(name.strip().lower())
            if index is not None:
                table[index] = True
        return table

    def attributes_named(self, name: str, values: list[str]) -> Array:
        """``[V+1]``: True for the attributes ``name:value`` with a value in ``values``."""
        table = np.zeros(len(self.attribute_names) + 1, bool)
        wanted = {v.strip().lower() for v in values}
        if len(self.attribute_names):
            table[:-1] = (self.attribute_names == name) & np.isin(self.attribute_values, list(wanted))
        return table

    def group_of(self, rows: Array, ids: Array) -> Array:
        """The group of each candidate: its table row's, or for an item the build does not know (row < 0)
        a group of its own, from its id (``-1 - id``; never equal to a table group, which are >= 0)."""
        rows = np.asarray(rows, np.int64)
        known = rows >= 0
        return np.where(known, self.group[np.where(known, rows, -1)], -1 - np.asarray(ids, np.int64))

    def group_key(self, group: int, item_key: bytes) -> bytes:
        """The shop's item_group_id of a group, or ``item_key`` for an item that is a group of its own."""
        if self.group_keys is not None and 0 <= group < self.vocabulary.n_groups:
            return bytes(self.group_keys[group])
        return item_key

    # the build side
    def save(self, folder: Path, store_dir: str) -> None:
        keys = self.group_keys if self.group_keys is not None else np.zeros(0, "S1")
        save_tables({**self.tables, GROUP_KEYS: keys}, Path(folder) / store_dir, prefix=TABLE_PREFIX)
        (Path(folder) / CATALOG_FILE).write_text(self.vocabulary.to_json())

    @classmethod
    def load(cls, folder: str | Path, store_dir: str) -> Catalog:
        """The tables of a version folder, memory-mapped (``runtime.pages``)."""
        folder = Path(folder)
        vocabulary = Vocabulary.from_json((folder / CATALOG_FILE).read_text())
        tables = load_tables([*TABLES, GROUP_KEYS], folder / store_dir, prefix=TABLE_PREFIX, what="catalogue tables")
        keys = tables.pop(GROUP_KEYS)
        return cls(tables, vocabulary, keys if vocabulary.n_groups else None)

    @classmethod
    def files(cls, store_dir: str) -> list[str]:
        """The catalogue's files, relative to a version folder (the tables, then ``catalog.json``)."""
        return [*(f"{store_dir}/{TABLE_PREFIX}{t}.npy" for t in (*TABLES, GROUP_KEYS)), CATALOG_FILE]


def build_catalog(
    category: Array,
    brand: Array,
    attributes: list[list[int]],
    price: Array,
    stock: Array,
    created: Array,
    group: Array,
    vocabulary: Vocabulary,
    group_keys: list[str] | None,
) -> Catalog:
    """The tables from the shop's item arrays (``group``: index into ``group_keys``, -1 none); each gets the
    unknown item's last row."""
    n = len(category)
    width = max(1, max((len(a) for a in attributes), default=0))
    attrs = np.full((n + 1, width), -1, np.int32)
    for row, values in enumerate(attributes):
        attrs[row, : len(values)] = values
    groups = np.asarray(group, np.int64)
    own = vocabulary.n_groups + np.arange(n, dtype=np.int64)
    tables = {
        "category": np.append(np.asarray(category, np.int32), -1).astype(np.int32),
        "brand": np.append(np.asarray(brand, np.int32), -1).astype(np.int32),
        "attrs": attrs,
        "price": np.append(np.asarray(price, np.float32), np.nan).astype(np.float32),
        "in_stock": np.append(np.asarray(stock) > 0, False),
        "created": np.append(np.asarray(created, np.int64), -1),
        "group": np.append(np.where(groups >= 0, groups, own), -1),
    }
    keys = None if not group_keys else np.array([k.encode("utf-8") for k in group_keys], dtype=np.bytes_)
    return Catalog(tables, vocabulary, keys)

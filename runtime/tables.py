"""The feature tables of a build: per-item and per-user arrays, one ``.npy`` each, memory-mapped.

Every item and user table has one extra, last row holding cold-start defaults. An unknown id maps to
row ``-1``, which numpy reads as that last row: no special case in the hot path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.arrays import Array
from runtime.pages import load_tables, save_tables

STORE_DIR = "feature_store"  # one .npy per table, memory-mapped by every instance of every model


def lookup_rows(sorted_ids: Array, rows_of_sorted: Array, ids: Array) -> Array:
    """Rows of ``ids`` in a table whose ids are ``sorted_ids``; -1 where an id is unknown."""
    if len(sorted_ids) == 0:  # a shop without known users: everyone is cold-start
        return np.full(len(ids), -1, np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[pos] == ids
    return np.where(found, rows_of_sorted[pos], -1)


class FeatureTables:
    """The arrays behind the features. Item/user arrays have one extra last row: the unknown default."""

    item_ids_sorted: Array  # the shop's item ids, sorted, and the table row of each
    item_rows_sorted: Array
    user_ids_sorted: Array
    user_rows_sorted: Array
    item_category: Array  # [I+1] index into the lexicon's categories, -1 unknown
    item_brand: Array
    item_attrs: Array  # [I+1, A]
    item_price_bucket: Array
    price_edges: Array  # [N_PRICE_BUCKETS - 1] log-price bucket edges (fresh prices are bucketed with them)
    item_log_price: Array
    item_in_stock: Array
    item_log_clicks: Array
    item_ctr: Array
    user_segment: Array  # [U+1]
    user_cat_aff: Array  # [U+1, C+1]
    user_brand_aff: Array  # [U+1, B+1]
    user_mean_log_price: Array
    user_clicks: Array  # [U+1] clicks the affinities were counted from (fresh clicks are added to them)

    def __init__(self, arrays: dict[str, Array]):
        missing = sorted(set(self.__annotations__) - set(arrays))
        if missing:
            raise ValueError(f"feature tables: missing {', '.join(missing)}")
        self.arrays = arrays
        for key, value in arrays.items():
            setattr(self, key, value)
        self.n_items = len(arrays["item_ids_sorted"])
        self.n_users = len(arrays["user_ids_sorted"])

    @classmethod
    def files(cls) -> list[str]:
        """The table files, relative to a version folder: ``feature_store/<table>.npy``."""
        return [f"{STORE_DIR}/{name}.npy" for name in sorted(cls.__annotations__)]

    def save(self, folder: Path) -> None:
        """One ``.npy`` per table in ``folder``, written under a temporary name and renamed."""
        save_tables({name: self.arrays[name] for name in self.__annotations__}, folder)

    @classmethod
    def load(cls, folder: Path) -> FeatureTables:
        """Read-only arrays over the mapped tables (``runtime.pages``): every process that loads the same
        files shares the page cache's one copy (the build hard-links the files of all models to one inode)."""
        return cls(load_tables(list(cls.__annotations__), folder, what="feature tables"))

    def item_rows(self, ids: Array) -> Array:
        return lookup_rows(self.item_ids_sorted, self.item_rows_sorted, ids)

    def user_rows(self, ids: Array) -> Array:
        return lookup_rows(self.user_ids_sorted, self.user_rows_sorted, ids)

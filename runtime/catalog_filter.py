"""A retrieval model's request filters over the whole catalogue (``runtime/options.py``'s filters).

* ``allowed(filter)``: the filter evaluated over every item row, as a mask, its rows and FAISS's bitmap
  (``Allowed``); the last ``MASK_CACHE`` filters' are kept (a category page's filter repeats);
* the prices a mask reads: the build's, then each price pushed to the online store since (its price-change
  log, ``runtime/online_store.py``, read every ``POLL_S``): an item whose price moved into a price filter's
  range is found, one that left it is not (each candidate is also checked again with its current price);
  a request for the build's values (the golden set's checks) reads the build's prices alone;
* ``own_groups(viewed)``: the rows of the viewed items' variant groups, which a product page leaves out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from runtime.arrays import Array, Floats, Int64s
from runtime.features import FeatureStore
from runtime.options import Filter, ItemView

POLL_S = 2.0  # how often the price-change log is read
PRICE_OVERLAP_S = 5.0  # price changes re-read each poll (the online store's cached values are at most this old)
MASK_CACHE = 64  # catalogue-wide masks of recent filters kept per model instance


@dataclass(frozen=True)
class Allowed:
    """A filter over the whole catalogue: the mask ``[I]``, the rows it keeps, the mask as FAISS's bitmap
    (``IDSelectorBitmap``: bit ``i`` of byte ``i // 8``, little-endian), and its share of the catalogue."""

    mask: Array
    rows: Int64s
    bits: Array
    share: float

    @classmethod
    def of(cls, mask: Array) -> Allowed:
        mask = np.asarray(mask, bool)
        return cls(
            mask, np.flatnonzero(mask), np.packbits(mask, bitorder="little"), float(mask.mean()) if mask.size else 0.0
        )


EMPTY = Allowed.of(np.zeros(0, bool))  # a filter nothing passes


class CatalogueFilters:
    """One retrieval model's filter state: the masks of recent filters, the prices they read, the groups."""

    def __init__(self, store: FeatureStore, id_of_row: Int64s, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.catalog = store.catalog
        self.id_of_row = id_of_row  # the item id of each table row
        self.clock = clock
        self._masks: dict[str, Allowed] = {}  # filter text -> its catalogue-wide mask, oldest first
        self._group_rows: tuple[Int64s, Int64s] | None = None  # rows sorted by group, and their groups
        self.live_price: Floats | None = None if self.catalog is None else np.array(self.catalog.price[:-1])
        self._prices_polled = -math.inf
        self._prices_since = 0.0  # unix seconds of the newest change read
        self._prices_version = 0

    def refresh_prices(self) -> None:
        """Read the price changes pushed since the last poll (the last ``PRICE_OVERLAP_S`` again: a value read
        from the online store's cache may be that old)."""
        online = self.store.online
        if online is None or self.live_price is None or self.clock() - self._prices_polled < POLL_S:
            return
        self._prices_polled = self.clock()
        got = online.price_changes(max(self._prices_since - PRICE_OVERLAP_S, 0.0))
        if got is None:
            return
        ids, prices, newest = got
        rows = self.store.tables.item_rows(ids)
        keep = (rows >= 0) & np.isfinite(prices) & (prices > 0)
        if keep.any() and not np.array_equal(self.live_price[rows[keep]], prices[keep]):
            self.live_price[rows[keep]] = prices[keep]
            self._prices_version += 1
        self._prices_since = max(self._prices_since, newest)

    def allowed(self, filt: Filter | None, build_values: bool = False) -> Allowed | None:
        """The filter over the whole catalogue (its prices as pushed, ``refresh_prices``, and the build's stock;
        each candidate is checked again with its current ones): a mask ``[I]`` and the rows it keeps. With
        ``build_values``, over the build's prices (a request ranked as the build ranked it). Recent filters'
        are cached."""
        if filt is None or self.catalog is None or self.live_price is None:
            return None
        if filt.reads_live and not build_values:
            self.refresh_prices()
        version = "build" if build_values else self._prices_version
        key = f"{filt.text}@{version}" if filt.reads_live else filt.text
        hit = self._masks.pop(key, None)
        if hit is None:
            cat = self.catalog
            rows = np.arange(cat.n_items, dtype=np.int64)
            prices = cat.price[:-1] if build_values else self.live_price
            hit = Allowed.of(filt(cat, ItemView(rows, prices, cat.in_stock[:-1], self.id_of_row)))
            if len(self._masks) >= MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
        self._masks[key] = hit
        return hit

    def own_groups(self, viewed: Int64s) -> Int64s:
        """The item rows of the viewed items' variant groups (a product page's own product, in its other
        colours), which its recommendations leave out."""
        cat = self.catalog
        if cat is None or not cat.has_groups or viewed.size == 0:
            return np.zeros(0, np.int64)
        if self._group_rows is None:
            order = np.argsort(cat.group[:-1], kind="stable").astype(np.int64)
            self._group_rows = (order, np.asarray(cat.group[:-1])[order])
        order, sorted_groups = self._group_rows
        rows = self.store.tables.item_rows(viewed)
        groups = np.unique(cat.group[rows[rows >= 0]])
        lo, hi = np.searchsorted(sorted_groups, groups), np.searchsorted(sorted_groups, groups, side="right")
        return np.concatenate([order[a:b] for a, b in zip(lo, hi, strict=True)] or [np.zeros(0, np.int64)])

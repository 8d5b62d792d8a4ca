"""A logs-only shop for the scale benchmarks: the impressions and lists they measure, and a catalogue that is
nothing but ids and categories (one placeholder row for every per-item field the steps under test never read)."""

from __future__ import annotations

from typing import Any

import numpy as np

from builders.data.dataset import ShopData


def logs_only_shop(
    item_category: np.ndarray,
    session_time: np.ndarray,
    session_query: np.ndarray,
    per_list: int,
    imp_item: np.ndarray,
    imp_click: np.ndarray,
    queries: list[str] | None = None,
    item_brand: np.ndarray | None = None,
    brands: list[str] | None = None,
    **extra: Any,
) -> ShopData:
    """Lists of ``per_list`` impressions each, all in the statistics window, by anonymous visitors, over the items of
    ``item_category`` (indices into 500 categories); ``extra``: more ShopData fields (a product page's context, a
    visit's group)."""
    n_lists, n = len(session_time), len(imp_item)
    end = int(session_time.max()) + 1 if n_lists else 1
    brand = np.zeros(1, np.int64) if item_brand is None else item_brand
    return ShopData(
        name="scale",
        id_kinds={"item": "int64", "user": "int64"},
        item_ids=np.arange(len(item_category), dtype=np.int64),
        item_keys=None,
        item_titles=[],
        item_category=item_category,
        item_brand=brand,
        item_attrs=np.full((1, 1), -1),
        item_price=np.ones(1, np.float32),
        item_stock=np.ones(1, np.int64),
        categories=[f"c{i}" for i in range(500)],
        brands=brands or [],
        attributes=[],
        user_ids=np.zeros(0, np.int64),
        user_segment=np.zeros(0, np.int64),
        segments=[],
        queries=queries or [],
        session_user=np.full(n_lists, -1),
        session_time=session_time,
        session_query=session_query,
        session_offsets=np.arange(0, n + 1, per_list, dtype=np.int64),
        imp_item=imp_item,
        imp_position=np.zeros(1, np.int64),
        imp_click=imp_click,
        imp_purchase=np.zeros(n, np.int8),
        cuts={"stats": end, "train": end + 1, "validation": end + 2},
        **extra,
    )

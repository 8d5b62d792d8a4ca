"""The query behaviour statistics (``runtime.query_stats.QueryStats``) from the shop's search logs.

``build(shop, settings)`` counts, over the statistics window's search lists, for every normalised
query (``runtime.query_stats.normalize``) seen in at least ``min_lists`` lists (the ``max_queries``
most frequent at most): lists, impressions and weighted clicks (a purchase counts twice), and the
same per category, per brand and per item, keeping the ``top_categories`` / ``top_brands`` /
``top_items`` of each query by clicks (then impressions); and the embeddings of the ``borrow_queries``
most frequent, which a query not in the tables borrows from (``runtime.query_stats.QueryStats.match``).
Bounded: at most ``max_queries * (top_items + top_categories + top_brands)`` pairs, 16 bytes each (key
and float32 counts), and ``borrow_queries * D * 4`` bytes of embeddings.

Built in chunks of about 4 million impressions (whole queries each) over the window's lists sorted by
query, so beside the shop's own arrays only per-list arrays and one chunk's impressions are in memory
(``benchmarks/query_stats_scale.py`` measures it). Run as the build's ``query-stats`` step
(``builders/steps.py``); the features step puts its tables beside the other feature tables.
"""

from __future__ import annotations

import numpy as np

from builders.data.dataset import ShopData, impressions_of, split_by_time
from runtime.query_stats import CTR_PRIOR, QueryStats, normalize, query_key

CHUNK_IMPRESSIONS = 4_000_000


def _top(keys: np.ndarray, query: np.ndarray, clicks: np.ndarray, imps: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` pairs of each query with the most clicks, then impressions (``query`` ascending)."""
    order = np.lexsort((-imps, -clicks, query))
    first = np.searchsorted(query[order], query[order], side="left")
    rank = np.arange(len(order)) - first
    keep = np.zeros(len(keys), bool)
    keep[order[rank < k]] = True
    return keep


def _pair_counts(query: np.ndarray, slot: np.ndarray, slots: int, clicks: np.ndarray, k: int):
    """Per (query, slot) pair: sorted keys ``query * slots + slot`` and summed clicks and impressions, top k."""
    keys, inverse = np.unique(query.astype(np.int64) * slots + slot, return_inverse=True)
    c = np.bincount(inverse, weights=clicks, minlength=len(keys))
    n = np.bincount(inverse, minlength=len(keys)).astype(np.float64)
    keep = _top(keys, keys // slots, c, n, k)
    return keys[keep], c[keep].astype(np.float32), n[keep].astype(np.float32)


def build(
    shop: ShopData, settings, query_embeddings: np.ndarray, lists: np.ndarray | None = None
) -> tuple[QueryStats, dict]:
    """The tables for ``shop`` under ``settings`` (``QueryStatsConfig``) and a report of what they hold.
    ``query_embeddings`` ``[len(shop.queries), D]``: each raw query's encoder embedding (the embeddings
    step); a kept query is represented by its most frequent raw form's, for the borrowing. ``lists``: the
    lists counted (default: the statistics window)."""
    n_items, n_cat, n_brand = len(shop.item_ids), len(shop.categories), len(shop.brands)
    lists = split_by_time(shop)["stats"] if lists is None else lists
    lists = lists[shop.session_query[lists] >= 0]
    normalized = [normalize(t) for t in shop.queries]
    distinct, code_of_raw = np.unique(np.array(normalized, object), return_inverse=True)
    list_code = code_of_raw[shop.session_query[lists]]
    n_lists = np.bincount(list_code, minlength=len(distinct))
    frequent = np.flatnonzero(n_lists >= settings.min_lists)
    frequent = frequent[np.argsort(-n_lists[frequent], kind="stable")][: settings.max_queries]
    keys = np.array([query_key(str(distinct[c])) for c in frequent], np.int64)
    if len(np.unique(keys)) < len(keys):  # two normalised queries with one 64-bit key: keep the more frequent (first)
        _, first = np.unique(keys, return_index=True)
        frequent, keys = frequent[np.sort(first)], keys[np.sort(first)]
    row_of_code = np.full(len(distinct), -1, np.int64)
    row_of_code[frequent] = np.arange(len(frequent))

    # Lists sorted by their query's row (the unkept ones, -1, first), counted in chunks of about
    # CHUNK_IMPRESSIONS impressions cut at query boundaries: only one chunk's impressions are in memory.
    list_row = row_of_code[list_code]
    by_row = np.argsort(list_row, kind="stable")
    lists_s, rows_s = lists[by_row], list_row[by_row]
    lengths = np.diff(shop.session_offsets)[lists_s]
    ends = np.cumsum(lengths)
    q = len(frequent)
    q_imps, q_clicks = np.zeros(q), np.zeros(q)
    cat_prior, brand_prior = np.ones(n_cat + 1), np.ones(n_brand + 1)
    total_w, total_n = 0.0, 0
    parts: dict[str, list] = {k: [] for k in ("cat", "brand", "item")}
    a = 0
    while a < len(lists_s):
        done = ends[a - 1] if a else 0
        b = max(int(np.searchsorted(ends, done + CHUNK_IMPRESSIONS, side="right")), a + 1)
        if b < len(lists_s) and rows_s[b - 1] >= 0:  # never split one query's lists between two chunks
            b = int(np.searchsorted(rows_s, rows_s[b - 1], side="right"))
        imp = impressions_of(shop, lists_s[a:b])
        r = np.repeat(rows_s[a:b], lengths[a:b])
        items = shop.imp_item[imp]
        w = shop.imp_click[imp].astype(np.float64) + shop.imp_purchase[imp]
        known = items >= 0
        cat = np.where(known, shop.item_category[np.maximum(items, 0)], -1)
        brand = np.where(known, shop.item_brand[np.maximum(items, 0)], -1)
        total_w, total_n = total_w + float(w.sum()), total_n + len(imp)
        cat_prior += np.bincount(cat + 1, weights=w, minlength=n_cat + 1)
        brand_prior += np.bincount(brand + 1, weights=w, minlength=n_brand + 1)
        kept = r >= 0
        if kept.any():
            r, w, items, known, cat, brand = r[kept], w[kept], items[kept], known[kept], cat[kept], brand[kept]
            q_imps += np.bincount(r, minlength=q)
            q_clicks += np.bincount(r, weights=w, minlength=q)
            parts["cat"].append(_pair_counts(r, cat + 1, n_cat + 1, w, settings.top_categories))
            parts["brand"].append(_pair_counts(r, brand + 1, n_brand + 1, w, settings.top_brands))
            parts["item"].append(_pair_counts(r[known], items[known] + 1, n_items + 1, w[known], settings.top_items))
        a = b
    window_ctr = total_w / max(total_n, 1)
    q_ctr = (q_clicks + CTR_PRIOR * window_ctr) / (q_imps + CTR_PRIOR)

    def joined(name: str, i: int, dtype) -> np.ndarray:
        return np.concatenate([p[i] for p in parts[name]]).astype(dtype) if parts[name] else np.zeros(0, dtype)

    # the most frequent raw form of each kept query (rows are by frequency: the first H are the head)
    raw_lists = np.bincount(shop.session_query[lists], minlength=len(shop.queries))
    best_raw = np.full(len(distinct), -1, np.int64)
    for raw in np.argsort(raw_lists, kind="stable"):  # ascending: the most frequent form is written last
        best_raw[code_of_raw[raw]] = raw
    head = min(q, settings.borrow_queries)
    head_emb = np.asarray(query_embeddings[best_raw[frequent[:head]]], np.float32).reshape(
        head, query_embeddings.shape[1]
    )
    key_order = np.argsort(keys, kind="stable")
    arrays = {
        "keys_sorted": keys[key_order],
        "rows_sorted": key_order.astype(np.int64),
        "log_lists": np.append(np.log1p(n_lists[frequent]), 0.0).astype(np.float32),
        "clicks": np.append(q_clicks, 0.0).astype(np.float32),
        "ctr": np.append(q_ctr, window_ctr).astype(np.float32),
        "cat_keys": joined("cat", 0, np.int64),
        "cat_clicks": joined("cat", 1, np.float32),
        "cat_imps": joined("cat", 2, np.float32),
        "cat_prior": (cat_prior / cat_prior.sum()).astype(np.float32),
        "brand_keys": joined("brand", 0, np.int64),
        "brand_clicks": joined("brand", 1, np.float32),
        "brand_prior": (brand_prior / brand_prior.sum()).astype(np.float32),
        "item_keys": joined("item", 0, np.int64),
        "item_clicks": joined("item", 1, np.float32),
        "item_imps": joined("item", 2, np.float32),
        "item_slots": np.array([n_items + 1], np.int64),
        "head_embeddings": head_emb,
        "borrow": np.array([settings.borrow_min_similarity, settings.borrow_neighbours], np.float32),
    }
    stats = QueryStats(arrays)
    covered = int(n_lists[frequent].sum())
    report = {
        "raw_queries": len(shop.queries),
        "normalized_queries": len(distinct),
        "kept_queries": q,
        "min_lists": settings.min_lists,
        "search_lists_in_window": len(lists),
        "lists_of_kept_queries": covered,
        "share_of_lists_covered": round(covered / max(len(lists), 1), 4),
        "pairs": {k: int(len(arrays[f"{k}_keys"])) for k in ("cat", "brand", "item")},
        "bytes": int(sum(a.nbytes for a in arrays.values())),
        "window_ctr": round(window_ctr, 5),
        "borrowable_queries": head,
    }
    return stats, report

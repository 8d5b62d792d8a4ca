"""The co-visitation tables (``runtime.covisit.CoVisits``) from the shop's sessions.

``build(shop, settings)`` takes, over the statistics window, every session's interactions in time
order: the items it clicked or carted (weight 1) or bought (3), and the item of every product page
it viewed (weight 1). Each interaction is paired with the next ``max_lag`` ones of the same session
(``session_id``). A pair ``(a, b)``, ``b`` the later one, adds to ``a -> b`` the weight of ``b``'s kind
times ``exp(-seconds between them / decay_s)``, and half of that, with ``a``'s kind, to ``b -> a``
(what accompanies an item counts, what follows it counts more).

Normalised so that popular items do not win by popularity alone: a pair's summed weight is divided
by the geometric mean of the two items' own interaction weights, each smoothed by ``smoothing``
pseudo-interactions: ``W(a, b) / sqrt((N(a) + s) (N(b) + s))``. Without it, the catalogue's best
sellers would follow every item; with ``s``, a pair seen once between two rare items does not beat
a pair seen often. The ``top`` pairs of each item are kept. The same pairs summed by the two items'
categories, normalised by the categories' own weights, give the category table: what a viewed item's
category leads to (laptops to backpacks) where the item pairs are too sparse to say.

Built in passes: the pairs are generated chunk by chunk over the window's interactions (about
``CHUNK_EVENTS`` each, cut at session boundaries), and each pass keeps only the source items of one
range, so at most ``PASS_PAIRS`` pairs are reduced at once whatever the catalogue's size
(``benchmarks/covisit_scale.py`` measures the memory). Run as the build's ``covisit`` step
(``builders/steps.py``).
"""

from __future__ import annotations

import math

import numpy as np

from builders.data.dataset import ShopData, split_by_time
from runtime.covisit import CoVisits

CHUNK_EVENTS = 250_000
PASS_PAIRS = 16_000_000
PURCHASE_WEIGHT = 3.0
BACKWARD = 0.5


def interactions(shop: ShopData, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(session, time, item row, weight)`` of the interactions of ``lists``, sorted by session then time:
    clicked or carted items (1), bought ones (``PURCHASE_WEIGHT``), the item of each product page (1);
    an item once per session (its first time, its heaviest kind)."""
    # the clicked impressions only, found without gathering every impression (60M of them at 10M items)
    hit = np.flatnonzero(shop.imp_click > 0)
    list_of = np.searchsorted(shop.session_offsets, hit, side="right") - 1
    wanted = np.zeros(len(shop.session_time), bool)
    wanted[lists] = True
    keep = wanted[list_of] & (shop.imp_item[hit] >= 0)
    hit, list_of = hit[keep], list_of[keep]
    weight = np.where(shop.imp_purchase[hit] > 0, PURCHASE_WEIGHT, 1.0)
    group = shop.session_group if len(shop.session_group) else np.arange(len(shop.session_time))
    context = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    pages = lists[context[lists] >= 0]
    session = np.concatenate([group[list_of], group[pages]])
    time = np.concatenate([shop.session_time[list_of], shop.session_time[pages] - 1])  # viewed, then clicked
    item = np.concatenate([shop.imp_item[hit], context[pages]])
    w = np.concatenate([weight, np.ones(len(pages))])
    # each item once per session: its first time, its heaviest kind (a page viewed after its click is one)
    order = np.lexsort((time, item, session))
    session, time, item, w = session[order], time[order], item[order], w[order]
    first = np.concatenate([[True], (session[1:] != session[:-1]) | (item[1:] != item[:-1])]) if len(item) else item > 0
    group_of = np.cumsum(first) - 1
    heaviest = np.zeros(int(first.sum()))
    np.maximum.at(heaviest, group_of, w)
    session, time, item, w = session[first], time[first], item[first], heaviest
    order = np.lexsort((time, session))
    return session[order], time[order], item[order].astype(np.int64), w[order]


def _pairs(session, time, item, weight, max_lag: int, decay_s: float):
    """Source rows, neighbour rows and weights of every pair within ``max_lag`` interactions of one session."""
    src, dst, w = [], [], []
    for lag in range(1, max_lag + 1):
        if lag >= len(item):
            break
        same = (session[lag:] == session[:-lag]) & (item[lag:] != item[:-lag])
        if not same.any():
            continue
        a, b = np.flatnonzero(same), np.flatnonzero(same) + lag
        decay = np.exp(-(time[b] - time[a]).astype(np.float64) / decay_s)
        src += [item[a], item[b]]
        dst += [item[b], item[a]]
        w += [weight[b] * decay, BACKWARD * weight[a] * decay]
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(w)


def _chunks(session: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` ranges of about ``CHUNK_EVENTS`` interactions, cut where a session begins."""
    out, a, n = [], 0, len(session)
    while a < n:
        b = min(a + CHUNK_EVENTS, n)
        if b < n:
            b = int(np.searchsorted(session, session[b - 1], side="right"))
        out.append((a, b))
        a = b
    return out


def _top(src: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` heaviest pairs of each source (``src`` any order)."""
    order = np.lexsort((-weight, src))
    first = np.searchsorted(src[order], src[order], side="left")
    keep = np.zeros(len(src), bool)
    keep[order[np.arange(len(order)) - first < k]] = True
    return keep


def build(shop: ShopData, settings, lists: np.ndarray | None = None) -> tuple[CoVisits, dict]:
    """The tables for ``shop`` under ``settings`` (``CovisitConfig``) and a report of what they hold;
    ``lists``: the lists counted (default: the statistics window)."""
    n_items = len(shop.item_ids)
    lists = split_by_time(shop)["stats"] if lists is None else lists
    session, time, item, weight = interactions(shop, lists)
    own = np.bincount(item, weights=weight, minlength=n_items) + settings.smoothing
    chunks = _chunks(session)
    # the pairs one pass would reduce without partitions: at most 2 * max_lag per interaction
    same = [int((session[lag:] == session[:-lag]).sum()) for lag in range(1, settings.max_lag + 1) if lag < len(item)]
    expected = 2 * sum(same)
    passes = max(1, math.ceil(expected / PASS_PAIRS))
    keys_out, weights_out = [], []
    slots = n_items + 1
    n_cat = len(shop.categories) + 1  # categories + 1 (0 = none)
    cat_of = shop.item_category + 1
    cat_pairs = np.zeros(n_cat * n_cat)
    for part in range(passes):
        keys_p, w_p = [], []
        for a, b in chunks:
            src, dst, w = _pairs(session[a:b], time[a:b], item[a:b], weight[a:b], settings.max_lag, settings.decay_s)
            mine = src * passes // n_items == part  # a contiguous range of sources: the passes' keys come sorted
            cat_pairs += np.bincount(cat_of[src[mine]] * n_cat + cat_of[dst[mine]], weights=w[mine], minlength=n_cat**2)
            keys = src[mine] * slots + dst[mine]
            uniq, inverse = np.unique(keys, return_inverse=True)  # reduced per chunk: few repeats cross chunks
            keys_p.append(uniq)
            w_p.append(np.bincount(inverse, weights=w[mine], minlength=len(uniq)))
        keys = np.concatenate(keys_p) if keys_p else np.zeros(0, np.int64)
        summed = np.concatenate(w_p) if w_p else np.zeros(0)
        del keys_p, w_p
        uniq, inverse = np.unique(keys, return_inverse=True)
        del keys
        total = np.bincount(inverse, weights=summed, minlength=len(uniq))
        del inverse, summed
        src = uniq // slots
        norm = (total / np.sqrt(own[src] * own[uniq % slots])).astype(np.float32)
        del total
        keep = _top(src, norm, settings.top)
        keys_out.append(uniq[keep])
        weights_out.append(norm[keep])
        del uniq, src, norm, keep
    keys = np.concatenate(keys_out) if keys_out else np.zeros(0, np.int64)
    weights = np.concatenate(weights_out) if weights_out else np.zeros(0, np.float32)
    own_cat = np.bincount(cat_of[item], weights=weight, minlength=n_cat) + settings.smoothing
    categories = cat_pairs.reshape(n_cat, n_cat) / np.maximum(np.sqrt(own_cat[:, None] * own_cat[None, :]), 1e-9)
    tables = CoVisits.from_keys(keys, weights, n_items, n_cat - 1, categories)
    with_pairs = int((np.diff(tables.offsets[:-1]) > 0).sum())
    report = {
        "sessions": int(len(np.unique(session))),
        "interactions": int(len(item)),
        "pairs": tables.n_pairs,
        "items_with_pairs": with_pairs,
        "share_of_items_with_pairs": round(with_pairs / max(n_items, 1), 4),
        "passes": passes,
        "bytes": int(sum(a.nbytes for a in tables.arrays.values())),
    }
    return tables, report

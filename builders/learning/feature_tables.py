"""Build the feature store (item/user statistics, lexicon, user profiles) from the shop's data.

Everything is learned from the shop's own files (``builders.data.ShopData``): the category, brand
and attribute vocabularies from the catalogue, CTR and affinities from the events. Time windows
(the config's ``split``), so that no feature sees the labels it is trained or evaluated on:
* statistics (CTR, clicks, affinities, user profiles) come from the ``stats`` window;
* the ranker trains on the lists after that up to the train cut (see ``ranker.py``);
* validation and test come later still (``builders.data.dataset.split_by_time``).
Anonymous lists count for item statistics, not for any user's. Events of items the catalogue does
not have (kept as cold items) count for nothing here. The served store is exactly this store, so
serving features equal training features.
"""

from __future__ import annotations

import numpy as np

from builders.data.dataset import ShopData, impressions_of, split_by_time
from runtime.catalog import Catalog, Vocabulary, price_edges
from runtime.catalog import build_catalog as build_catalog_tables
from runtime.contract import N_PRICE_BUCKETS
from runtime.lexicon import Lexicon
from runtime.tables import FeatureTables


def stats_sessions(shop: ShopData) -> np.ndarray:
    return split_by_time(shop)["stats"]


def _with_default(values: np.ndarray, default) -> np.ndarray:
    """Append the cold-start default row (read by row -1)."""
    default = np.asarray(default, dtype=values.dtype)
    return np.concatenate([values, np.broadcast_to(default, (1,) + values.shape[1:])], axis=0)


def build_tables(shop: ShopData, lists: np.ndarray | None = None) -> FeatureTables:
    """The item and user tables counted over ``lists`` (default: the statistics window)."""
    n_items, n_users = len(shop.item_ids), len(shop.user_ids)
    n_cat, n_brand = max(len(shop.categories), 1), max(len(shop.brands), 1)
    imp = impressions_of(shop, stats_sessions(shop) if lists is None else lists)
    imp = imp[shop.imp_item[imp] >= 0]  # cold items have no row to count into
    items = shop.imp_item[imp]
    users = shop.session_user[shop.impression_session()[imp]]
    clicks = shop.imp_click[imp].astype(np.float64)

    item_imps = np.bincount(items, minlength=n_items).astype(np.float64)
    item_clicks = np.bincount(items, weights=clicks, minlength=n_items)
    global_ctr = clicks.mean() if len(clicks) else 0.1
    prior = 20.0
    item_ctr = ((item_clicks + prior * global_ctr) / (item_imps + prior)).astype(np.float32)

    clicked = (clicks > 0) & (users >= 0)  # anonymous clicks belong to no user
    cu, ci = users[clicked], items[clicked]
    cat_counts = np.zeros((n_users, n_cat))
    known_cat = shop.item_category[ci] >= 0
    np.add.at(cat_counts, (cu[known_cat], shop.item_category[ci][known_cat]), 1.0)
    brand_counts = np.zeros((n_users, n_brand))
    known_brand = shop.item_brand[ci] >= 0
    np.add.at(brand_counts, (cu[known_brand], shop.item_brand[ci][known_brand]), 1.0)
    user_clicks = np.bincount(cu, minlength=n_users).astype(np.float64)[:, None]
    cat_aff = (cat_counts + 1.0 / n_cat) / (user_clicks + 1.0)
    brand_aff = (brand_counts + 1.0 / n_brand) / (user_clicks + 1.0)
    log_price = np.log(shop.item_price).astype(np.float32)
    price_sum = np.bincount(cu, weights=log_price[ci], minlength=n_users)
    mean_price = float(log_price.mean())
    user_mean_price = ((price_sum + 2 * mean_price) / (user_clicks[:, 0] + 2)).astype(np.float32)
    edges = np.quantile(log_price, np.linspace(0, 1, N_PRICE_BUCKETS + 1)[1:-1])
    bucket = np.searchsorted(edges, log_price).astype(np.int64)

    item_order = np.argsort(shop.item_ids, kind="stable")
    user_order = np.argsort(shop.user_ids, kind="stable")
    arrays = {
        "item_ids_sorted": shop.item_ids[item_order],
        "item_rows_sorted": item_order.astype(np.int64),
        "user_ids_sorted": shop.user_ids[user_order],
        "user_rows_sorted": user_order.astype(np.int64),
        # Unknown item: its category/brand are unknown (-1 -> 0 in the ranker's embedding tables).
        "item_category": _with_default(shop.item_category, -1),
        "item_brand": _with_default(shop.item_brand, -1),
        "item_attrs": _with_default(shop.item_attrs, -1),
        "item_price_bucket": _with_default(bucket, -1),
        "price_edges": edges.astype(np.float32),
        "item_log_price": _with_default(log_price, mean_price),
        "item_in_stock": _with_default((shop.item_stock > 0).astype(np.float32), 1.0),
        "item_log_clicks": _with_default(np.log1p(item_clicks).astype(np.float32), 0.0),
        "item_ctr": _with_default(item_ctr, global_ctr),
        "user_segment": _with_default(shop.user_segment, -1),
        # Unknown user: uniform affinities, the catalogue's mean price. The extra last column of the
        # affinity tables is what an unknown category/brand (-1) reads.
        "user_cat_aff": _with_default(np.pad(cat_aff, ((0, 0), (0, 1))).astype(np.float32), 1.0 / n_cat),
        "user_brand_aff": _with_default(np.pad(brand_aff, ((0, 0), (0, 1))).astype(np.float32), 1.0 / n_brand),
        "user_mean_log_price": _with_default(user_mean_price, mean_price),
        "user_clicks": _with_default(user_clicks[:, 0].astype(np.float32), 0.0),
    }
    return FeatureTables(arrays)


def build_lexicon(shop: ShopData) -> Lexicon:
    return Lexicon(list(shop.categories), list(shop.brands), list(shop.attributes))


def build_user_profiles(shop: ShopData, item_embeddings: np.ndarray, lists: np.ndarray | None = None) -> np.ndarray:
    """[U+1, D] mean title embedding of each user's clicks in ``lists`` (default: the stats window;
    normalised; zero if none)."""
    imp = impressions_of(shop, stats_sessions(shop) if lists is None else lists)
    clicked = imp[shop.imp_click[imp] > 0]
    users = shop.session_user[shop.impression_session()[clicked]]
    clicked, users = clicked[users >= 0], users[users >= 0]
    prof = np.zeros((len(shop.user_ids) + 1, item_embeddings.shape[1]), np.float64)
    np.add.at(prof, users, item_embeddings[shop.imp_item[clicked]])
    norm = np.linalg.norm(prof, axis=1, keepdims=True)
    return (prof / np.maximum(norm, 1e-9)).astype(np.float32)


def build_catalog(shop: ShopData) -> Catalog:
    """What requests filter, group and count by (``runtime/catalog.py``), from the shop's items."""
    offsets, values = shop.item_attr_offsets, shop.item_attr_values
    n = len(shop.item_ids)
    if len(offsets) != n + 1:  # a ShopData made without the full lists (by hand, in tests): the features' ones
        attributes = [[int(a) for a in row if a >= 0] for row in shop.item_attrs]
    else:
        attributes = [values[offsets[i] : offsets[i + 1]].tolist() for i in range(n)]
    group = shop.item_group if len(shop.item_group) == n else np.full(n, -1, np.int64)
    created = shop.item_created if len(shop.item_created) == n else np.full(n, -1, np.int64)
    vocabulary = Vocabulary(
        categories=list(shop.categories),
        brands=list(shop.brands),
        attributes=list(shop.attributes),
        price_edges=price_edges(shop.item_price),
        n_groups=len(shop.groups),
    )
    return build_catalog_tables(
        shop.item_category,
        shop.item_brand,
        attributes,
        shop.item_price,
        shop.item_stock,
        created,
        group,
        vocabulary,
        list(shop.groups),
    )

"""The ranker's input rows for candidates: categorical ids and dense features, all numpy gathers.

The same code builds the training matrix (over a million rows) and each served request
(``runtime.features.FeatureStore``), so training and serving cannot disagree. Nothing loops over
candidates in Python.
"""

from __future__ import annotations

import numpy as np

from runtime.arrays import Array
from runtime.contract import (
    COVISIT_DENSE_COLUMNS,
    DENSE_COLUMNS,
    N_CAT,
    N_DENSE,
)
from runtime.covisit import CoVisits
from runtime.query_stats import QUERY_COLUMNS, QueryStats
from runtime.tables import FeatureTables

COVISIT_DENSE = slice(DENSE_COLUMNS.index(COVISIT_DENSE_COLUMNS[0]), DENSE_COLUMNS.index(COVISIT_DENSE_COLUMNS[-1]) + 1)

QUERY_DENSE = slice(DENSE_COLUMNS.index(QUERY_COLUMNS[0]), DENSE_COLUMNS.index(QUERY_COLUMNS[-1]) + 1)


def candidate_features(
    t: FeatureTables,
    user_rows: Array,
    item_rows: Array,
    has_query: Array,
    q_category: Array,
    q_brand: Array,
    q_attr: Array,
    queries: QueryStats,
    q_rows: Array,
    q_weights: Array,
    covisits: CoVisits | None = None,
    context: Array | None = None,
    embeddings: Array | None = None,
    viewing: Array | None = None,
) -> tuple[Array, Array]:
    """Ranker inputs for N (user, query, item) rows: ``cat [N, N_CAT] int64``, ``dense [N, N_DENSE] fp32``.

    Rows of -1 (unknown user or item) read the tables' default last row. ``has_query`` is False for
    recommendation rows; ``q_*`` are -1 where the query names no category/brand/attribute; ``q_rows`` /
    ``q_weights`` ``[N, width]`` are each row's matched queries in the query statistics ``queries``
    (``QueryStats.match``; -1 and 0: none, as for every recommendation row). ``context [N, K]``: each row's
    context item rows (``runtime.covisit.context_rows``; -1 padding; None: none, as for every search row),
    read in the co-visitation tables ``covisits`` and, for the similarity, the title ``embeddings [I+1, D]``;
    ``viewing [N]``: how many of the row's context items, first, are viewed ones (a product page's).
    """
    n = len(item_rows)
    cat = t.item_category[item_rows]
    brand = t.item_brand[item_rows]
    attrs = t.item_attrs[item_rows]
    user_known = user_rows >= 0
    item_known = item_rows >= 0
    cats = np.empty((n, N_CAT), np.int64)
    cats[:, 0] = user_rows + 1  # 0 = unknown user
    cats[:, 1] = item_rows + 1  # 0 = unknown item
    cats[:, 2] = cat + 1  # 0 = unknown
    cats[:, 3] = brand + 1
    cats[:, 4] = t.item_price_bucket[item_rows] + 1
    cats[:, 5] = t.user_segment[user_rows] + 1
    cats[:, 6] = q_category + 1  # 0 = no category in the query
    dense = np.empty((n, N_DENSE), np.float32)
    dense[:, 0] = has_query
    dense[:, 1] = (q_category >= 0) & (cat == q_category)
    dense[:, 2] = (q_brand >= 0) & (brand == q_brand)
    dense[:, 3] = (q_attr >= 0) & (attrs == q_attr[:, None]).any(axis=1)
    dense[:, 4] = t.user_cat_aff[user_rows, cat]
    dense[:, 5] = t.user_brand_aff[user_rows, brand]
    dense[:, 6] = t.item_log_clicks[item_rows]
    dense[:, 7] = t.item_ctr[item_rows]
    dense[:, 8] = t.item_in_stock[item_rows]
    dense[:, 9] = t.item_log_price[item_rows] - t.user_mean_log_price[user_rows]
    dense[:, 10] = user_known
    dense[:, 11] = item_known
    dense[:, QUERY_DENSE] = queries.features(q_rows, q_weights, item_rows, cat, brand)
    if covisits is None or context is None:
        dense[:, COVISIT_DENSE] = 0.0
    else:
        dense[:, COVISIT_DENSE] = covisits.features(context, item_rows, embeddings, t.item_category, viewing)
    return cats, dense


def recent_affinities(t: FeatureTables, user_row: int, recent_rows: Array, cat: Array, dense: Array) -> None:
    """Add the recent interactions (item rows, -1 left out) to the user's category and brand affinities in
    ``dense``, as the build counts them: ``(clicks in the category + 1/n) / (clicks + 1)`` with the recent ones
    among the clicks. Served requests (their online store's recent list) and recommendation training rows
    (the interactions before the list) alike."""
    rows = np.asarray(recent_rows, np.int64)
    rows = rows[rows >= 0]  # items the build does not know have no category to count
    if rows.size == 0:
        return
    before = float(t.user_clicks[user_row]) + 1.0
    after = before + rows.size
    for col, table, item_values in ((4, t.user_cat_aff, t.item_category), (5, t.user_brand_aff, t.item_brand)):
        values = item_values[rows]
        counts = np.bincount(values[values >= 0], minlength=table.shape[1])
        candidate = cat[:, col - 2] - 1  # the candidates' category (col 4) or brand (col 5); -1 unknown
        known = candidate >= 0
        dense[known, col] = (dense[known, col] * before + counts[candidate[known]]) / after

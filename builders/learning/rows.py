"""The ranker's training and evaluation rows: one row per logged impression, grouped by list.

``make_rows`` turns the shop's logged lists into the served features (``runtime/features.py``), the
similarity term and the logged and true gains; ``datasets`` cuts the train, validation and test windows
and weights each gain by the inverse propensity of its logged position (``propensity.py``), estimated
from the windows before validation (``propensities``). Both ranker kinds (``dcn.py``, ``gbdt.py``) train
on these rows and ``evaluation.py`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builders.data.dataset import ShopData, impressions_of, split_by_time
from builders.learning import propensity as prop
from runtime.candidates import candidate_features, recent_affinities
from runtime.covisit import CONTEXT_WIDTH, RECENT_READ, context_rows, context_vector
from runtime.features import FeatureStore
from runtime.scoring import standardize_lists

MAX_POSITION = 63  # positions below this get their own examination probability in training; deeper share one


@dataclass
class Rows:
    """A training/evaluation matrix: one row per impression, grouped by session."""

    cat: np.ndarray
    dense: np.ndarray
    sim: np.ndarray  # z-scored cosine within the list (runtime.scoring.standardize), as served
    cosine: np.ndarray  # the raw cosine(context, title)
    click: np.ndarray
    gain: np.ndarray  # 2^(click + purchase) - 1 (graded logged feedback)
    relevance: np.ndarray | None  # true relevance (generated shops only), for the "true" NDCG
    offsets: np.ndarray  # session boundaries within these rows
    query: np.ndarray  # index into the shop's query pool, -1 = no query (recommend)
    item: np.ndarray  # item index (row of the title embeddings)
    understood: np.ndarray | None = None  # per list: the lexicon found a category in its query
    position: np.ndarray | None = None  # the logged position, clipped to MAX_POSITION (unknown: MAX_POSITION + 1)
    ips_gain: np.ndarray | None = None  # gain / propensity(logged position), clipped (propensity.ips_gains)

    def __len__(self) -> int:
        return len(self.click)

    def list_query(self) -> np.ndarray:
        """Per list: its query index (-1 = recommendation)."""
        return self.query[self.offsets[:-1]] if len(self.offsets) > 1 else np.zeros(0, np.int64)


def list_contexts(shop: ShopData, sessions: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """What served recommendations would see for each list of ``sessions``: ``[len(sessions), CONTEXT_WIDTH]``
    context item rows (``runtime.covisit.context_rows``: its product page's item, then the newest items the
    user (an anonymous visitor: the session) clicked, carted or bought before the list), and those newest
    ``RECENT_READ`` interactions themselves (item rows, newest first), as the online store's recent list
    holds them (served, they are added to the affinities); -1 and empty for search lists."""
    out = np.full((len(sessions), CONTEXT_WIDTH), -1, np.int64)
    recents: list[np.ndarray] = []
    context = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    group = shop.session_group if len(shop.session_group) else np.arange(len(shop.session_time))
    actor_of_list = np.where(shop.session_user >= 0, shop.session_user, -2 - group)
    hit = np.flatnonzero(shop.imp_click > 0)
    lst = shop.impression_session()[hit]
    actor, time, item = actor_of_list[lst], shop.session_time[lst], shop.imp_item[hit]
    order = np.lexsort((time, actor))
    actor, time, item = actor[order], time[order], item[order]
    none = np.zeros(0, np.int64)
    for i, s in enumerate(sessions.tolist()):
        if shop.session_query[s] >= 0:
            recents.append(none)
            continue
        a, t = actor_of_list[s], shop.session_time[s]
        lo = int(np.searchsorted(actor, a, side="left"))
        hi = lo + int(np.searchsorted(time[lo : int(np.searchsorted(actor, a, side="right"))], t, side="left"))
        recent = item[max(lo, hi - RECENT_READ) : hi][::-1]  # newest first
        recents.append(recent)
        out[i] = context_rows(np.array([context[s]]), recent)
    return out, recents


def make_rows(
    shop: ShopData,
    store: FeatureStore,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    user_profiles: np.ndarray,
    sessions: np.ndarray,
    cold: np.ndarray | None = None,
) -> Rows:
    """Features for every impression of ``sessions``, computed by the serving code (``candidate_features``)
    from the served tables (``store``: feature tables, lexicon and query statistics). ``cold`` (a mask over
    ``sessions``): those lists are ranked as for a visitor the build does not know (user row -1, no
    profile); their context (what the visit did before) stays."""
    imp = impressions_of(shop, sessions)
    sess = shop.impression_session()[imp]
    list_user = shop.session_user[sessions].copy()
    if cold is not None:
        list_user[cold] = -1
    users = np.repeat(list_user, np.diff(shop.session_offsets)[sessions])
    items = shop.imp_item[imp]
    q = shop.session_query[sess]
    has_q = q >= 0
    intents = [store.lexicon.parse(text) for text in shop.queries]
    q_cat = np.array([i.category for i in intents] + [-1])[q]  # q = -1 reads the trailing -1
    q_brand = np.array([i.brand for i in intents] + [-1])[q]
    q_attr = np.array([i.attribute for i in intents] + [-1])[q]
    # each distinct query matched once, as search_features matches a request's (its own row, or borrowed)
    rows_q, weights_q = store.queries.match(shop.queries, query_emb)
    q_rows = np.vstack([rows_q, np.full((1, rows_q.shape[1]), -1)])[q]  # q = -1: the homepage, no query
    q_weights = np.vstack([weights_q, np.zeros((1, rows_q.shape[1]), np.float32)])[q]
    # recommendation lists: the product page's item and what the user (or session) did before the list
    list_ctx, list_recent = list_contexts(shop, sessions)
    page_of = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    row_ctx = np.repeat(list_ctx, np.diff(shop.session_offsets)[sessions], axis=0)
    row_ctx[has_q] = -1  # search rows have no context
    cat, dense = candidate_features(
        store.tables,
        users,
        items,
        has_q,
        q_cat,
        q_brand,
        q_attr,
        store.queries,
        q_rows,
        q_weights,
        store.covisits,
        row_ctx,
        item_emb,
        np.repeat((page_of[sessions] >= 0).astype(np.int64), np.diff(shop.session_offsets)[sessions]),
    )
    # the recent interactions in the affinities, as a served recommendation adds its online store's recent list
    ends = np.cumsum(np.diff(shop.session_offsets)[sessions])
    for i, recent in enumerate(list_recent):
        if recent.size:
            a, b = (ends[i - 1] if i else 0), ends[i]
            recent_affinities(store.tables, int(list_user[i]), recent, cat[a:b], dense[a:b])
    vectors = (
        np.stack(
            [
                context_vector(user_profiles[list_user[i]], list_ctx[i], item_emb, page_of[s] >= 0)
                for i, s in enumerate(sessions.tolist())
            ]
        )
        if len(sessions)
        else np.zeros((0, item_emb.shape[1]), np.float32)
    )
    list_index = np.repeat(np.arange(len(sessions)), np.diff(shop.session_offsets)[sessions])
    # a shop without a query has an empty query table: every row takes its list's vector
    q_vectors = query_emb[np.maximum(q, 0)] if len(query_emb) else np.zeros((len(q), item_emb.shape[1]), np.float32)
    context = np.where(has_q[:, None], q_vectors, vectors[list_index])
    cosine = (context * item_emb[items]).sum(1).astype(np.float32)
    lengths = np.diff(shop.session_offsets)[sessions]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    sim = standardize_lists(cosine, offsets)
    relevance = None if shop.imp_relevance is None else shop.imp_relevance[imp]
    understood = (q_cat >= 0)[offsets[:-1]] if len(imp) else np.zeros(0, bool)
    pos = shop.imp_position[imp]
    position = np.where(pos < 0, MAX_POSITION + 1, np.minimum(pos, MAX_POSITION)).astype(np.int64)
    return Rows(
        cat,
        dense,
        sim,
        cosine,
        shop.imp_click[imp].astype(np.float32),
        (2.0 ** (shop.imp_click[imp] + shop.imp_purchase[imp]) - 1).astype(np.float32),
        relevance,
        offsets,
        q,
        items,
        understood,
        position,
    )


def datasets(
    shop: ShopData,
    store: FeatureStore,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    user_profiles: np.ndarray,
    cold_share: float = 0.0,
    curve: dict | None = None,
    test_store: FeatureStore | None = None,
) -> dict[str, Rows]:
    """Train (lists between the stats window and the train cut), val and test rows; ``cold_share`` of the
    training lists (seeded) as for a visitor the build does not know (``make_rows``). Every split's
    ``ips_gain`` uses ``curve`` (default: the propensities estimated from the windows before validation,
    ``propensities``). The test rows read ``test_store`` where given (the served tables, which may count
    the training and validation lists; no test list)."""
    split = split_by_time(shop)
    make = lambda s, cold=None, st=store: make_rows(shop, st, item_emb, query_emb, user_profiles, s, cold)  # noqa: E731
    cold = np.random.default_rng(17).random(len(split["train"])) < cold_share
    rows = {
        "train": make(split["train"], cold),
        "val": make(split["val"]),
        "test": make(split["test"], st=test_store or store),
    }
    curve = curve or propensities(shop)
    if curve["propensity"] is None:  # the logs cannot measure position bias: every view on plain clicks
        return rows
    propensity = np.asarray(curve["propensity"])
    for r in rows.values():
        if r.position is not None:
            logged = np.where(r.position > MAX_POSITION, -1, r.position)
            r.ips_gain = prop.ips_gains(r.gain, logged, propensity).astype(np.float32)
    return rows


def propensities(shop: ShopData) -> dict:
    """The examination curve harvested from the stats and train windows (``propensity.from_shop``), or
    ``{"propensity": None, "why": ...}`` where the logs cannot measure it (no positions, one position, no item
    shown at two positions for one need)."""
    split = split_by_time(shop)
    try:
        return prop.from_shop(shop, np.concatenate([split["stats"], split["train"]]), MAX_POSITION + 1)
    except prop.NotIdentifiable as err:
        return {"propensity": None, "why": f"{err}: no debiased (IPS) view; selected and judged on plain clicks"}

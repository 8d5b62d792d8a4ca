"""The ranker: a DCN-v2 style CTR model, or LightGBM's LambdaMART (``builders/learning/gbdt.py``), trained on
the shop's logs and exported to ONNX (``ranker.kind``: auto trains both and keeps the better one).

Inputs per candidate: categorical ids (user, item, category, brand, price bucket, segment, query
category) through embedding tables, and dense features (query match, affinities, popularity, CTR,
stock, price). A cross network and a deep MLP run side by side on the concatenation. The head has two
outputs per candidate: ``logit`` and ``sim_weight``; the final score adds ``sim_weight * z(cos(context,
item title))`` (``runtime/scoring.py``), the query-item similarity from the text encoder as a
z-score over the request's candidates.

Quality is read in three views (``views``): NDCG@10 on the logged clicks and purchases, the same with each
gain weighted by the inverse propensity of its logged position (``builders/learning/propensity.py``:
estimated from the logs before the validation window), and on the hidden true relevance where the shop is
generated. The first favours whatever the old site ranked first; the second corrects for it.

Run as the build's ``ranker`` step (``builders/steps.py``); hyper-parameters come from the config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.data.config import RankerConfig
from builders.data.dataset import ShopData, impressions_of, rows_of_lists, split_by_time
from builders.learning import gbdt
from builders.learning import propensity as prop
from builders.learning.gbdt import GBDTRanker
from builders.learning.metrics import ListNDCG, auc, ndcg_at_k, ndcg_per_list, paired_interval, pooled_interval
from runtime.contract import CAT_FEATURES, DENSE_COLUMNS, DENSE_FEATURES, LOGIT, N_DENSE, SIM_WEIGHT
from runtime.covisit import CONTEXT_WIDTH, RECENT_READ, context_rows, context_vector
from runtime.features import FeatureStore, FeatureTables, candidate_features, recent_affinities
from runtime.ort_runner import make_session
from runtime.scoring import standardize_lists

OPSET = 17
MAX_POSITION = 63  # positions below this get their own examination probability in training; deeper share one
SEEN_LR = 0.05  # Adam step of the examination logits (the model's own step is the config's learning_rate)


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
    context = np.where(has_q[:, None], query_emb[np.maximum(q, 0)], vectors[list_index])
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


def cardinalities(tables: FeatureTables, n_categories: int, n_brands: int) -> list[int]:
    """Embedding-table sizes for the categorical columns (index 0 = unknown)."""
    return [
        tables.n_users + 1,
        tables.n_items + 1,
        n_categories + 1,
        n_brands + 1,
        int(tables.item_price_bucket.max()) + 2,
        int(tables.user_segment.max()) + 2,
        n_categories + 1,
    ]


def build_model(
    cards: list[int],
    dense_mean: np.ndarray,
    dense_std: np.ndarray,
    emb_dim: int = 16,
    cross_layers: int = 2,
    hidden: tuple[int, ...] = (128, 64),
):
    import torch
    from torch import nn

    class DCNv2Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.ModuleList([nn.Embedding(c, emb_dim) for c in cards])
            self.register_buffer("dense_mean", torch.as_tensor(dense_mean, dtype=torch.float32))
            self.register_buffer("dense_std", torch.as_tensor(dense_std, dtype=torch.float32))
            width = emb_dim * len(cards) + N_DENSE
            self.cross = nn.ModuleList([nn.Linear(width, width) for _ in range(cross_layers)])
            layers, prev = [], width
            for h in hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            self.deep = nn.Sequential(*layers)
            self.head = nn.Linear(width + prev, 2)

        def forward(self, cat_features, dense_features):
            embs = [emb(cat_features[:, i]) for i, emb in enumerate(self.embeddings)]
            dense = (dense_features - self.dense_mean) / self.dense_std
            x0 = torch.cat(embs + [dense], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x  # DCN-v2 cross layer
            out = self.head(torch.cat([x, self.deep(x0)], dim=1))
            return out[:, :1], out[:, 1:]

    return DCNv2Ranker()


def predict_parts(model, rows: Rows, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """``(logit, sim_weight)`` of ``rows`` with the torch model."""
    import torch

    logit = np.empty(len(rows), np.float32)
    weight = np.empty(len(rows), np.float32)
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            lg, w = model(torch.from_numpy(rows.cat[s : s + batch]), torch.from_numpy(rows.dense[s : s + batch]))
            logit[s : s + batch], weight[s : s + batch] = lg[:, 0].numpy(), w[:, 0].numpy()
    return logit, weight


def predict(model, rows: Rows, batch: int = 65536) -> np.ndarray:
    """Final scores (logit + sim_weight * sim) of ``rows`` with the torch model."""
    logit, weight = predict_parts(model, rows, batch)
    return logit + weight * rows.sim


def quality(rows: Rows, scores: np.ndarray) -> dict:
    """AUC on clicks and NDCG@10 on logged gains, debiased (IPS) where the rows have them, and on true
    relevance where the data has it."""
    out = {"auc": auc(rows.click, scores), "ndcg@10": ndcg_at_k(rows.gain, scores, rows.offsets, 10)}
    if rows.ips_gain is not None:
        out["ndcg@10_ips"] = ListNDCG(rows.ips_gain, rows.offsets, 10, pooled=True)(scores)
    if rows.relevance is not None:
        out["ndcg@10_true"] = ndcg_at_k(1.0 / (1.0 + np.exp(-rows.relevance)), scores, rows.offsets, 10)
    return out


def true_gains(rows: Rows) -> np.ndarray | None:
    """The generated shop's hidden relevance as a gain in (0, 1) (None for real logs)."""
    return None if rows.relevance is None else 1.0 / (1.0 + np.exp(-rows.relevance))


def views(rows: Rows, scores: dict[str, np.ndarray], reference: str = "popularity", resamples: int = 1000) -> dict:
    """NDCG@10 of each scorer in three views: ``logged`` (clicks and purchases, the mean over lists), ``ips``
    (the same gains weighted by the clipped inverse propensities, pooled over lists: ``ListNDCG``) and
    ``true`` (generated shops, the mean over lists), each ``[value, low, high]`` with a 95% bootstrap
    interval over the lists; and per view the paired difference to ``reference`` with its interval."""
    out: dict = {"lists": len(rows.offsets) - 1}
    per: dict[str, dict[str, np.ndarray]] = {}
    for view, g in (("logged", rows.gain), ("true", true_gains(rows))):
        if g is not None:
            per[view] = {name: ndcg_per_list(g, score, rows.offsets, 10) for name, score in scores.items()}
    ips = ListNDCG(rows.ips_gain, rows.offsets, 10, pooled=True) if rows.ips_gain is not None else None
    ips_dcg = {name: ips.dcg(score) for name, score in scores.items()} if ips is not None else {}
    for name in scores:
        out[name] = {}
        compare = reference in scores and name != reference
        for view, values in per.items():
            v = values[name]
            out[name][view] = paired_interval(v[np.isfinite(v)], resamples)
            if compare:
                both = np.isfinite(values[name]) & np.isfinite(values[reference])
                diff = values[name][both] - values[reference][both]
                out[name][f"{view}_vs_{reference}"] = paired_interval(diff, resamples)
        if ips is not None:
            out[name]["ips"] = pooled_interval(ips_dcg[name], ips.idcg, resamples=resamples)
            if compare:
                out[name][f"ips_vs_{reference}"] = pooled_interval(
                    ips_dcg[name], ips.idcg, ips_dcg[reference], resamples=resamples
                )
    return out


CURVE_K = (1, 3, 5, 10, 20)


def curves(rows: Rows, scores: dict[str, np.ndarray], ks=CURVE_K) -> dict:
    """Per scorer, NDCG@k (logged, debiased IPS, true) and recall@k of the clicked items, for each k of ``ks``
    (the report page's curves)."""
    views_k = {"logged": rows.gain, "ips": rows.ips_gain, "true": true_gains(rows)}
    clicked = (rows.click > 0).astype(np.float64)
    out: dict = {"k": list(ks)}
    for name, score in scores.items():
        entry: dict = {}
        for view, g in views_k.items():
            if g is not None:
                entry[f"ndcg_{view}"] = [
                    round(ListNDCG(g, rows.offsets, k, pooled=view == "ips")(score), 4) for k in ks
                ]
        hits = ListNDCG(clicked, rows.offsets, max(ks))
        entry["recall"] = [round(_recall_at(hits, clicked, score, k), 4) for k in ks]
        out[name] = entry
    return out


def _recall_at(lists: ListNDCG, clicked: np.ndarray, score: np.ndarray, k: int) -> float:
    """Mean share of a list's clicked items in its top ``k`` under ``score`` (lists with a click)."""
    padded = np.where(lists.mask, score[lists.index], -np.inf)
    order = np.argsort(-padded, axis=1, kind="stable")[:, :k]
    found = np.take_along_axis(lists.gains, order, axis=1).sum(axis=1)
    total = lists.gains.sum(axis=1)
    return float((found[total > 0] / total[total > 0]).mean())


def ndcg_of_lists(rows: Rows, scores: np.ndarray, lists: np.ndarray, true: bool) -> float | None:
    """NDCG@10 over the lists in the boolean mask ``lists`` (None if none has a gain)."""
    idx = np.flatnonzero(lists)
    if idx.size == 0:
        return None
    imp = rows_of_lists(rows.offsets, idx)
    offsets = np.concatenate([[0], np.cumsum(rows.offsets[idx + 1] - rows.offsets[idx])])
    if true and rows.relevance is None:
        return None
    gains = 1.0 / (1.0 + np.exp(-rows.relevance[imp])) if rows.relevance is not None and true else rows.gain[imp]
    try:
        return ndcg_at_k(gains, scores[imp], offsets, 10)
    except ValueError:
        return None


def similarity_breakdown(rows: Rows, logit: np.ndarray, weight: np.ndarray) -> dict:
    """NDCG@10 of the served score (logit + sim_weight * cos) and of the logit alone, on every search
    list and on the lists whose query the lexicon does not understand (no catalogue category found:
    the vocabulary-mismatch queries). The difference is what the text encoder contributes."""
    search = rows.list_query() >= 0
    if rows.understood is None:
        raise ValueError("similarity_breakdown needs rows.understood (make_rows sets it)")
    groups = {
        "all_searches": search,
        "not_understood": search & ~rows.understood,
        "understood": search & rows.understood,
    }
    with_sim, without = logit + weight * rows.sim, logit
    out = {}
    for name, mask in groups.items():
        entry: dict[str, float | None] = {"lists": int(mask.sum())}
        for label, true in (("logged", False), ("true", True)):
            if true and rows.relevance is None:
                continue
            a, b = ndcg_of_lists(rows, with_sim, mask, true), ndcg_of_lists(rows, without, mask, true)
            entry[f"ndcg@10_{label}_with_similarity"] = a
            entry[f"ndcg@10_{label}_without_similarity"] = b
        out[name] = entry
    return out


def datasets(
    shop: ShopData,
    store: FeatureStore,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    user_profiles: np.ndarray,
    cold_share: float = 0.0,
    curve: dict | None = None,
) -> dict[str, Rows]:
    """Train (lists between the stats window and the train cut), val and test rows; ``cold_share`` of the
    training lists (seeded) as for a visitor the build does not know (``make_rows``). Every split's
    ``ips_gain`` uses ``curve`` (default: the propensities estimated from the windows before validation,
    ``propensities``)."""
    split = split_by_time(shop)
    make = lambda s, cold=None: make_rows(shop, store, item_emb, query_emb, user_profiles, s, cold)  # noqa: E731
    cold = np.random.default_rng(17).random(len(split["train"])) < cold_share
    rows = {"train": make(split["train"], cold), "val": make(split["val"]), "test": make(split["test"])}
    propensity = np.asarray((curve or propensities(shop))["propensity"])
    for r in rows.values():
        if r.position is not None:
            logged = np.where(r.position > MAX_POSITION, -1, r.position)
            r.ips_gain = prop.ips_gains(r.gain, logged, propensity).astype(np.float32)
    return rows


def propensities(shop: ShopData) -> dict:
    """The examination curve harvested from the stats and train windows (``propensity.from_shop``)."""
    split = split_by_time(shop)
    return prop.from_shop(shop, np.concatenate([split["stats"], split["train"]]), MAX_POSITION + 1)


def fit(
    model,
    tr: Rows,
    va: Rows,
    epochs: int = 4,
    batch: int = 2048,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train ranker",
    position_bias: str = "pal",
):
    """Train ``model`` on ``tr`` with BCE on clicks; keep the epoch with the best val NDCG@10 (debiased, IPS,
    where the rows have it).

    ``position_bias="pal"`` (where the rows know positions): a click is modelled as seen x relevant,
    ``P(click) = sigmoid(b[position]) * sigmoid(score)`` with one learned ``b`` per position (PAL, Guo et
    al., RecSys 2019), trained jointly; only ``score`` is the model, exported and served, so the ranker
    learns what shoppers click once they see an item, not the old ranking's order. ``"none"``: BCE of
    ``sigmoid(score)`` on clicks. Used for the reference ranker and for fine-tuning its compressed variants
    (pruned, low-rank). Returns the per-epoch val history.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(os.cpu_count() or 1)
    pal = position_bias == "pal" and tr.position is not None
    seen = torch.zeros(MAX_POSITION + 2, requires_grad=True)  # examination logits, training only
    groups: list[dict] = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if pal:  # a few dozen numbers that must travel far (deep positions are rarely seen): their own step size
        groups.append({"params": [seen], "lr": SEEN_LR})
    opt = torch.optim.Adam(groups, lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    logsig = torch.nn.functional.logsigmoid
    rng = np.random.default_rng(seed)
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(tr))
        for s in tqdm(
            range(0, len(tr), batch), desc=f"{desc} epoch {epoch + 1}/{epochs}", disable=not progress, unit="batch"
        ):
            idx = perm[s : s + batch]
            logit, w = model(torch.from_numpy(tr.cat[idx]), torch.from_numpy(tr.dense[idx]))
            score = logit[:, 0] + w[:, 0] * torch.from_numpy(tr.sim[idx])
            y = torch.from_numpy(tr.click[idx])
            if pal and tr.position is not None:
                log_p = logsig(seen[torch.from_numpy(tr.position[idx])]) + logsig(score)
                log_not = torch.log1p(-torch.exp(log_p).clamp(max=1 - 1e-6))
                loss = -(y * log_p + (1 - y) * log_not).mean()
            else:
                loss = loss_fn(score, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        val = quality(va, predict(model, va))
        history.append({"epoch": epoch + 1, **val})
        if val.get("ndcg@10_ips", val["ndcg@10"]) > best:  # the debiased view where the rows have it
            best = val.get("ndcg@10_ips", val["ndcg@10"])
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    if pal:  # what PAL learned of the examination curve, relative to the top position (docs/quality.md plots it)
        curve = torch.sigmoid(seen.detach()).numpy()
        model.learned_examination = [round(float(x), 5) for x in curve[: MAX_POSITION + 1] / curve[0]]
    return history


def user_groups(rows: Rows) -> dict[str, np.ndarray]:
    """Per list: ``known`` users (the statistics window knows them) and ``cold`` ones (unknown or anonymous)."""
    known = rows.dense[rows.offsets[:-1], DENSE_COLUMNS.index("user_known")] > 0
    return {"known users": known, "cold users": ~known}


def baselines(tables: FeatureTables, rows: Rows) -> dict[str, np.ndarray]:
    """The simple scorers that use the same logs, on ``rows``: popularity (the item's clicks in the statistics
    window), the click prior P(click | query, category), co-visitation with the context (then popularity), and
    random; ties broken at random (seeded)."""
    pop = tables.item_log_clicks[rows.item]
    rand = np.random.default_rng(1).random(len(rows)).astype(np.float32)
    co = rows.dense[:, DENSE_COLUMNS.index("context_covisit_sum")]
    return {
        "popularity": pop,
        "click_prior": rows.dense[:, DENSE_COLUMNS.index("query_category_ctr")] + 1e-6 * rand,
        "covisitation": co + 1e-3 * pop / max(float(np.abs(pop).max()), 1.0),
        "random": rand,
    }


def train_dcn(tr: Rows, va: Rows, store: FeatureStore, hp, progress: bool = True):
    """The DCN-v2 ranker on ``tr``, best epoch on ``va`` (``fit``); returns ``(model, val history)``."""
    import torch

    torch.manual_seed(hp.seed)
    mean, std = tr.dense.mean(0), tr.dense.std(0)
    # A column constant in training (item_known is 1 on every training row) keeps a scale of 1: with
    # std + 1e-3 a cold item's 0 became -1,000 standard deviations, and its logit about 7,000 (cold items
    # ranked first). Training is unchanged: the column is 0 after centering either way.
    std = np.where(std < 1e-3, 1.0, std + 1e-3)
    model = build_model(
        cardinalities(store.tables, len(store.lexicon.categories), len(store.lexicon.brands)),
        mean,
        std,
        emb_dim=hp.embedding_dim,
        cross_layers=hp.cross_layers,
        hidden=tuple(hp.hidden),
    )
    history = fit(
        model, tr, va, hp.epochs, hp.batch_size, hp.learning_rate, hp.seed, progress, position_bias=hp.position_bias
    )
    return model, history


def parts(model, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """``(logit, sim_weight)`` of ``rows`` with either kind of ranker."""

    if isinstance(model, GBDTRanker):
        return model.parts(rows.cat, rows.dense)
    return predict_parts(model, rows)


def val_metric(va: Rows):
    """The validation window's model selection metric: NDCG@10, debiased (IPS, pooled: ``ListNDCG``) where
    the rows have it."""
    if va.ips_gain is not None:
        return ListNDCG(va.ips_gain, va.offsets, 10, pooled=True)
    return ListNDCG(va.gain, va.offsets, 10)


def train_kinds(rows: dict[str, Rows], store: FeatureStore, hp, progress: bool = True, log=print) -> dict:
    """Every kind ``hp.kind`` asks for (auto: both), trained on the same rows: ``{kind: (model, info)}``."""

    tr, va = rows["train"], rows["val"]
    score_val = val_metric(va)
    kinds = ("dcn", "gbdt") if hp.kind == "auto" else (hp.kind,)
    out = {}
    for kind in kinds:
        if kind == "dcn":
            model, history = train_dcn(tr, va, store, hp, progress)
        else:
            model, history = gbdt.train(tr, va, hp.gbdt, hp.position_bias == "pal", score_val, log)
        logit, weight = parts(model, va)
        out[kind] = (model, {"val_ndcg@10_selection": float(score_val(logit + weight * va.sim)), "history": history})
    return out


def train(
    shop: ShopData,
    store: FeatureStore,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    user_profiles: np.ndarray,
    hp=None,
    progress: bool = True,
    log=print,
):
    """Train the ranker kind(s) of ``hp`` (``RankerConfig``) and keep the better on the validation window.

    Returns ``(models, report)``: ``models`` maps each trained kind to its model (``report["kind"]`` is the
    kept one); the report has the test split's quality next to the baselines in the three views, by kind of
    list, and the similarity breakdown (``similarity_breakdown``) of the test searches.
    """

    hp = hp or RankerConfig()
    curve = propensities(shop)
    rows = datasets(shop, store, item_emb, query_emb, user_profiles, hp.cold_share, curve)
    tables = store.tables
    tr, va, te = rows["train"], rows["val"], rows["test"]
    trained = train_kinds(rows, store, hp, progress, log)
    kind = max(trained, key=lambda k: trained[k][1]["val_ndcg@10_selection"])
    test_parts = {k: parts(m, te) for k, (m, _) in trained.items()}
    logit, weight = test_parts[kind]
    scores = {
        "ranker": logit + weight * te.sim,
        **{f"ranker_{k}": lg + w * te.sim for k, (lg, w) in test_parts.items()},
        **baselines(tables, te),
    }
    if len(trained) == 1:
        del scores[f"ranker_{kind}"]
    test = {name: quality(te, score) for name, score in scores.items()}
    if te.relevance is not None:
        test["ground_truth"] = quality(te, te.relevance)
        scores["ground_truth"] = te.relevance
    test_lists = split_by_time(shop)["test"]
    context = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    kinds = {
        "search": shop.session_query[test_lists] >= 0,
        "homepage": (shop.session_query[test_lists] < 0) & (context[test_lists] < 0),
        "product page": context[test_lists] >= 0,
    }
    by_kind = {
        name: {
            "lists": int(mask.sum()),
            **{
                scorer: {
                    "ndcg@10": ndcg_of_lists(te, score, mask, False),
                    "ndcg@10_true": ndcg_of_lists(te, score, mask, True),
                }
                for scorer, score in scores.items()
                if scorer != "ground_truth"
            },
        }
        for name, mask in kinds.items()
        if mask.any()
    }
    learned = {k: getattr(m, "learned_examination", None) for k, (m, _) in trained.items()}
    report = {
        "kind": kind,
        "kinds": {
            k: {
                "val_ndcg@10_selection": info["val_ndcg@10_selection"],
                "history": info["history"],
                **({"learned_examination": learned[k]} if learned[k] else {}),
            }
            for k, (_, info) in trained.items()
        },
        "selection": "NDCG@10 on the validation window, "
        + ("debiased (IPS)" if va.ips_gain is not None else "on logged gains"),
        "position_bias": hp.position_bias,
        "propensity": curve,
        "rows": {"train": len(tr), "val": len(va), "test": len(te)},
        "val_history": trained[kind][1]["history"],
        "test": test,
        "test_views": views(te, scores),
        "test_by_list_kind": by_kind,
        "test_curves": curves(
            te, {n: scores[n] for n in ("ranker", "popularity", "click_prior", "covisitation", "random") if n in scores}
        ),
        "test_by_user": {
            name: {
                "lists": int(mask.sum()),
                **{
                    scorer: {
                        "ndcg@10": ndcg_of_lists(te, scores[scorer], mask, False),
                        "ndcg@10_true": ndcg_of_lists(te, scores[scorer], mask, True),
                    }
                    for scorer in ("ranker", "popularity")
                },
            }
            for name, mask in user_groups(te).items()
            if mask.any()
        },
        "similarity": similarity_breakdown(te, logit, weight),
        "true_relevance": "generated shop: NDCG@10 (true) uses its hidden relevance"
        if te.relevance is not None
        else "none: real logs have no true relevance; quality is on logged clicks and purchases",
    }
    return {k: m for k, (m, _) in trained.items()}, report


def export_onnx(model, out: Path) -> Path:
    """Export with a dynamic candidate axis; written to a temp name, then renamed."""
    import torch

    n_cat = len(model.embeddings)
    cat = torch.zeros((3, n_cat), dtype=torch.int64)
    dense = torch.zeros((3, N_DENSE), dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (cat, dense),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[CAT_FEATURES, DENSE_FEATURES],
            output_names=[LOGIT, SIM_WEIGHT],
            dynamic_axes={CAT_FEATURES: {0: "n"}, DENSE_FEATURES: {0: "n"}, LOGIT: {0: "n"}, SIM_WEIGHT: {0: "n"}},
        )
    os.replace(tmp, out)
    return out


def parity(model, onnx_path: Path, cat: np.ndarray, dense: np.ndarray) -> dict:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on the same rows."""
    import torch

    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(cat), torch.from_numpy(dense))]
    got = make_session(str(onnx_path)).run([LOGIT, SIM_WEIGHT], {CAT_FEATURES: cat, DENSE_FEATURES: dense})
    return {
        "n": len(cat),
        "max_abs_diff": float(max(np.abs(r - g).max() for r, g in zip(ref, got, strict=True))),
        "max_abs_output": float(max(np.abs(r).max() for r in ref)),
    }

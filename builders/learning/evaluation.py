"""How a ranker is judged: NDCG@10 in three views, the baselines, curves and the build report's tables.

Quality is read in three views (``views``): NDCG@10 on the logged clicks and purchases, the same with
each gain weighted by the inverse propensity of its logged position (``propensity.py``), and on the
hidden true relevance where the shop is generated. The first favours whatever the old site ranked
first; the second corrects for it. ``baselines`` are the simple scorers every ranker is measured
against on the same rows; ``test_report`` is the ranker section of ``build_report.json``.
"""

from __future__ import annotations

import numpy as np

from builders.data.dataset import ShopData, rows_of_lists, split_by_time
from builders.learning.metrics import ListNDCG, auc, ndcg_at_k, ndcg_per_list, paired_interval, pooled_interval
from builders.learning.rows import Rows
from runtime.contract import DENSE_COLUMNS
from runtime.tables import FeatureTables


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


def val_metric(va: Rows):
    """The validation window's model selection metric: NDCG@10, debiased (IPS, pooled: ``ListNDCG``) where
    the rows have it."""
    if va.ips_gain is not None:
        return ListNDCG(va.ips_gain, va.offsets, 10, pooled=True)
    return ListNDCG(va.gain, va.offsets, 10)


def test_report(
    shop: ShopData,
    te: Rows,
    scores: dict[str, np.ndarray],
    test: dict,
    logit: np.ndarray,
    weight: np.ndarray,
    trained: dict[str, dict],
    kind: str,
    about: dict,
) -> dict:
    """The ranker section of ``build_report.json``: each trained kind (``trained``: kind -> its training
    info), how it was selected and trained (``about``), and the held-out days (``te``) scored by the served
    ranker (``logit``, ``weight``), each trained kind and the baselines (``scores``; ``test``: their
    ``quality``) in the three views, by kind of list, by known and cold users, and the similarity
    breakdown of the searches."""
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
    return {
        "kind": kind,
        "kinds": {
            k: {key: info[key] for key in ("val_ndcg@10_selection", "history", "learned_examination") if key in info}
            for k, info in trained.items()
        },
        **about,
        "val_history": trained[kind]["history"],
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

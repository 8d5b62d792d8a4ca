"""Which window the served tables should count: the statistics window the ranker was trained against, or
the newest window before the held-out days (``make bench-fresh-tables``; results in docs/quality.md).

The ranker trains on lists whose features come from an older window (``split.stats``: the oldest half of
the logs), so no training list sees its own clicks. Serving the tables of that same window means a
release's counts, CTRs, query statistics, co-visitation and user affinities are half the log span old on
the day it ships. For each finished build's work folder, the build's ranker (the kind it kept, its saved
LightGBM booster or a DCN-v2 trained here on the build's rows) ranks the held-out test days' lists with
tables counted over each window:

* ``stats``: the statistics window, what builds serve today;
* ``newest``: a window as long as the statistics window, ending at the held-out days (counts on the same
  scale as the ranker saw in training);
* ``all``: every list before the held-out days.

``--trend N`` adds a query trend first, in memory: from ``--trend-days`` before the held-out days on, the
lists of the N most asked queries are asked in new words no list used before (``TREND``; the encoder
embeds them as it embeds any query), as when shoppers take up a new name for a kind of product. The new
queries' column then holds exactly the trend's held-out lists.

Popularity, the simplest scorer that reads the same tables, is scored with each window too. Every number is
NDCG@10 with its 95% interval over the lists, and the paired difference to the ``stats`` window; and the
same for the searches whose query the statistics window never saw (the new queries).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.ranker_kinds import config_of, fmt, fmt_vs, load_build, print_report, works_parser
from builders.build import BUNDLED_ENCODER_DIR
from builders.data.config import FeaturesConfig
from builders.data.dataset import ShopData, newest_window, split_by_time
from builders.learning import covisit as cv
from builders.learning import evaluation, feature_tables, text_encoder
from builders.learning import query_stats as qs
from builders.learning import ranker as rk
from builders.learning import rows as rows_mod
from builders.learning.gbdt import GBDTRanker
from builders.learning.metrics import ndcg_per_list, paired_interval
from runtime import cli_logging
from runtime.contract import QUERY_TOKENS
from runtime.features import FeatureStore
from runtime.query_stats import normalize
from runtime.text import TOKENIZER_FILE

logger = logging.getLogger(__name__)

WINDOWS = ("stats", "newest", "all", "newest queries")
# new names for old needs, which no generated shop's logs or titles use
TREND = ("clean girl aesthetic", "mob wife era", "quiet luxury haul", "gorpcore drop", "coastal grandma vibes")
DAY = 86_400


def features_config(work: Path):
    """The ``features`` settings the build of ``work`` counted its tables with (its ranker step's key)."""
    key = json.loads((work / "ranker.stamp.json").read_text())["key"]
    return FeaturesConfig.model_validate(key["data"]["config"]["features"])


def store_over(
    shop: ShopData, base: FeatureStore, lists: np.ndarray, settings, query_emb, item_emb, queries_only: bool = False
) -> FeatureStore:
    """``base`` with its tables, query statistics, co-visitation and user profiles counted over ``lists``
    (``queries_only``: the query statistics alone)."""
    store = copy.copy(base)
    if settings.query_stats.enabled:
        store.queries = qs.build(shop, settings.query_stats, query_emb, lists)[0]
    if queries_only:
        return store
    store.tables = feature_tables.build_tables(shop, lists)
    store.covisits = cv.build(shop, settings.covisit, lists)[0] if settings.covisit.enabled else base.covisits
    store.user_profiles = feature_tables.build_user_profiles(shop, item_emb, lists)
    return store


def kept_ranker(work: Path, rows: dict, store: FeatureStore):
    """The build's kept ranker: its saved booster, or the DCN-v2 trained again on the build's rows."""
    kind = json.loads((work / "ranker" / "report.json").read_text())["kind"]
    if kind == "gbdt":
        return kind, GBDTRanker.load(work / "ranker" / "gbdt")
    hp = config_of(work).model_copy(update={"kind": kind})
    return kind, rk.train_kinds(rows, store, hp, False)[kind][0]


def new_query_lists(shop: ShopData) -> np.ndarray:
    """Per held-out list: a search whose normalised query no list of the statistics window asked."""
    split = split_by_time(shop)
    texts = np.array([normalize(t) for t in shop.queries] + [""], object)
    seen = set(texts[shop.session_query[split["stats"]]].tolist())
    q = shop.session_query[split["test"]]
    return np.array([i >= 0 and texts[i] not in seen for i in q])


def with_trend(shop: ShopData, query_emb: np.ndarray, work: Path, n: int, days: float) -> tuple[ShopData, np.ndarray]:
    """``shop`` whose ``n`` most asked queries are asked in ``TREND``'s words from ``days`` before the held-out
    days on, and the query embeddings with the new words' appended (the build's encoder)."""
    q = shop.session_query
    head = np.argsort(-np.bincount(q[q >= 0], minlength=len(shop.queries)), kind="stable")[:n]
    words = list(TREND[:n])
    new_q = q.copy()
    since = shop.session_time >= shop.cuts["validation"] - int(days * DAY)
    for k, old in enumerate(head):
        new_q[since & (q == old)] = len(shop.queries) + k
    encoder = work / "encoder" if (work / "encoder" / "model.onnx").exists() else BUNDLED_ENCODER_DIR
    tokenizer = work / "features" / TOKENIZER_FILE
    emb = text_encoder.encode(encoder / "model.onnx", words, QUERY_TOKENS, progress=False, tokenizer=tokenizer)
    logger.info(
        f"[fresh] trend: {', '.join(f'{shop.queries[o]!r} -> {w!r}' for o, w in zip(head, words, strict=True))}"
    )
    trended = dataclasses.replace(shop, queries=[*shop.queries, *words], session_query=new_q)
    return trended, np.vstack([query_emb, emb.astype(query_emb.dtype)])


def subset(rows, scores: dict[str, np.ndarray], mask: np.ndarray, reference: str) -> dict:
    """NDCG@10 over the lists of ``mask`` (logged, and true where the shop has it), each scorer's per-list
    difference to ``reference`` with its 95% interval."""
    out: dict = {"lists": int(mask.sum())}
    views = {"logged": rows.gain, "true": evaluation.true_gains(rows)}
    for name, score in scores.items():
        out[name] = {}
        for view, gains in views.items():
            if gains is None:
                continue
            per = ndcg_per_list(gains, score, rows.offsets, 10)[mask]
            ref = ndcg_per_list(gains, scores[reference], rows.offsets, 10)[mask]
            both = np.isfinite(per) & np.isfinite(ref)
            if not both.any():
                continue
            out[name][view] = paired_interval(per[both])
            if name != reference:
                out[name][f"{view}_vs_ref"] = paired_interval(per[both] - ref[both])
    return out


def evaluate(work: Path, trend: int = 0, trend_days: float = 4) -> dict:
    shop, base, item_emb, query_emb, hp = load_build(work)
    if trend:
        shop, query_emb = with_trend(shop, query_emb, work, trend, trend_days)
    settings = features_config(work)
    split = split_by_time(shop)
    test = split["test"]
    newest = newest_window(shop, "stats")
    windows = {"stats": split["stats"], "newest": newest, "all": newest_window(shop, "all"), "newest queries": newest}
    kind, model = None, None
    scores: dict[str, np.ndarray] = {}
    reference_rows = None
    for name in WINDOWS:
        store = (
            base
            if name == "stats"
            else store_over(shop, base, windows[name], settings, query_emb, item_emb, name == "newest queries")
        )
        if model is None:
            rows = rows_mod.datasets(shop, store, item_emb, query_emb, store.profiles(), hp.cold_share)
            kind, model = kept_ranker(work, rows, store)
            te = rows["test"]
        else:
            te = rows_mod.make_rows(shop, store, item_emb, query_emb, store.profiles(), test)
        logit, weight = rk.parts(model, te)
        scores[f"ranker, {name}"] = logit + weight * te.sim
        scores[f"popularity, {name}"] = evaluation.baselines(store.tables, te)["popularity"]
        reference_rows = reference_rows or te
        logger.info(f"[fresh] {work.name}: window {name}, {len(windows[name])} lists")
    assert reference_rows is not None
    new_queries = new_query_lists(shop)
    out = {
        "shop": work.name + (f" with a trend of {trend} queries" if trend else ""),
        "kind": kind,
        "window_lists": {k: int(len(v)) for k, v in windows.items()},
        "views": evaluation.views(reference_rows, scores, reference="ranker, stats"),
        "new_queries": subset(reference_rows, scores, new_queries, "ranker, stats"),
    }
    return out


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        v, nq = r["views"], r["new_queries"]
        true = "true" in v["ranker, stats"]
        lines += [
            f"**{r['shop']}** ({r['kind']} kept), {v['lists']} held-out lists; windows: "
            + ", ".join(f"{k} {n:,} lists" for k, n in r["window_lists"].items()),
            "",
            "| scorer, tables | debiased (IPS) | IPS − ranker on stats | "
            + ("true relevance | true − ranker on stats | " if true else "")
            + f"new queries ({nq['lists']} lists), {'true' if true else 'logged'}, − ranker on stats |",
            "|---|---|---|" + ("---|---|" if true else "") + "---|",
        ]
        for name, e in v.items():
            if name == "lists":
                continue
            cells = [fmt(e["ips"]), fmt(e["ips_vs_ranker, stats"]) if "ips_vs_ranker, stats" in e else "–"]
            if true:
                cells += [fmt(e["true"]), fmt(e["true_vs_ranker, stats"]) if "true_vs_ranker, stats" in e else "–"]
            view = "true" if true else "logged"
            cells.append(fmt_vs(nq[name], view, view + "_vs_ref"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    cli_logging.configure()
    p = works_parser(__doc__ or "")
    p.add_argument("--trend", type=int, default=0, help="add a trend of this many queries first (0: none)")
    p.add_argument("--trend-days", type=float, default=4, help="days before the held-out days the trend starts")
    args = p.parse_args()
    results = [evaluate(w, args.trend, args.trend_days) for w in args.work]
    print_report(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()

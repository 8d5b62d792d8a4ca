"""Does search learn from what shoppers did? The served ranking against the simple baselines that use the
same logs, per query class, on finished builds (``make bench-search``; results in docs/quality.md).

For each build's work folder (``build/<name>/``: the demo's ``default``, the market shop's ``market``),
on its held-out test days' search lists, every scorer ranks the same logged candidates:

* ``random``; ``popularity`` (the item's clicks in the statistics window);
* ``click prior``: P(click | query, category) from the statistics window (the query tables' smoothed
  category CTR), ties broken at random: the ten-line baseline;
* ``query-item CTR``: the query tables' smoothed CTR of the (query, item) pair, ties at random;
* ``ranker before``: the ranker as it was before the query statistics: no query known to them, the
  DCN-v2 (``ranker.kind: dcn``) on plain BCE on clicks (``ranker.position_bias: none``);
* ``ranker without query statistics``: the same with the position-bias term (PAL), to separate the two
  changes;
* ``ranker``: the served ranker, with the query statistics features and position-debiased training (the
  kind the build's ``ranker.kind`` keeps).

The rankers are trained here, side by side, with the build's config on the same rows (the last is what
the build serves). Query classes: ``head`` (the query is in the statistics tables), ``tail`` (seen in the
statistics window, in fewer lists than ``min_lists``), ``unseen`` (not in the window). NDCG@10 on
logged clicks and purchases (gain 2^(click + purchase) - 1, lists with a click) and, where the shop
is generated, on its hidden true relevance; each ranker's difference to the best simple baseline of the
class and to the ranker without the statistics, on the same lists, with a paired bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from benchmarks.retrieval import K, ndcg_recall, test_lists
from builders.data import config as cfg_mod
from builders.data.config import RankerConfig
from builders.data.dataset import ShopData, split_by_time
from builders.learning import ranker as rk
from builders.learning.metrics import ndcg_per_list, paired_interval
from builders.learning.rows import Rows, make_rows
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import contract as c
from runtime.contract import DENSE_COLUMNS
from runtime.features import FeatureStore
from runtime.query_stats import normalize

BASELINES = ("random", "popularity", "click prior", "query-item CTR")


def query_classes(shop: ShopData, store: FeatureStore, lists: np.ndarray) -> np.ndarray:
    """``head`` / ``tail`` / ``unseen`` of each list's query (the statistics window decides)."""
    stats = split_by_time(shop)["stats"]
    seen = {normalize(shop.queries[q]) for q in shop.session_query[stats] if q >= 0}
    known = np.append(store.queries.rows(shop.queries) >= 0, False)
    out = []
    for q in shop.session_query[lists]:
        out.append("head" if known[q] else "tail" if normalize(shop.queries[q]) in seen else "unseen")
    return np.array(out)


def scorers(shop, store, item_emb, query_emb, hp, progress: bool) -> tuple[dict[str, np.ndarray], Rows]:
    """Every scorer's scores of the test rows, and those rows (``builders.learning.rows.Rows``)."""

    blind = FeatureStore(store.tables, store.lexicon, None, store.user_profiles, embed_dim=store.embed_dim)
    scores: dict[str, np.ndarray] = {}
    plain = hp.model_copy(update={"position_bias": "none", "kind": "dcn"})
    for name, s, h in (
        ("ranker before", blind, plain),
        ("ranker without query statistics", blind, hp),
        ("ranker", store, hp),
    ):
        models, report = rk.train(shop, s, item_emb, query_emb, store.profiles(), h, progress=progress)
        rows = make_rows(shop, s, item_emb, query_emb, store.profiles(), split_by_time(shop)["test"])
        logit, weight = rk.parts(models[report["kind"]], rows)
        scores[name] = logit + weight * rows.sim
    noise = np.random.default_rng(1).random(len(rows)) * 1e-6
    col = DENSE_COLUMNS.index
    scores["random"] = noise * 1e6
    scores["popularity"] = rows.dense[:, col("item_log_clicks")] + noise
    scores["click prior"] = rows.dense[:, col("query_category_ctr")] + noise
    scores["query-item CTR"] = rows.dense[:, col("query_item_ctr")] + noise
    return scores, rows


def evaluate(work: Path, progress: bool = False) -> dict:

    shop = ShopData.load(work / "data")
    store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
    item_emb = np.load(work / "embeddings" / "items.npy")
    query_emb = np.load(work / "embeddings" / "queries.npy")
    cfg_file = work / "demo_data" / "shoprank.yaml"
    hp = cfg_mod.load(cfg_file).ranker if cfg_file.exists() else RankerConfig()
    scores, rows = scorers(shop, store, item_emb, query_emb, hp, progress)
    test = split_by_time(shop)["test"]
    search = shop.session_query[test] >= 0
    classes = np.where(search, "", "home").astype(object)
    classes[search] = query_classes(shop, store, test[search])
    gains = {"logged": rows.gain}
    if rows.relevance is not None:
        gains["true"] = 1.0 / (1.0 + np.exp(-rows.relevance))
    per_list = {
        (g, name): ndcg_per_list(gain, s, rows.offsets, 10) for g, gain in gains.items() for name, s in scores.items()
    }
    out: dict = {"build": str(work), "lists": {}, "ndcg@10": {}, "differences": {}}
    for cls in ("all searches", "head", "tail", "unseen"):
        mask = search if cls == "all searches" else classes == cls
        out["lists"][cls] = int(mask.sum())
        if not mask.any():
            continue
        for g in gains:
            table = {
                n: float(np.nanmean(v[mask])) if np.isfinite(v[mask]).any() else None
                for (gg, n), v in per_list.items()
                if gg == g
            }
            out["ndcg@10"][f"{cls} / {g}"] = {n: None if x is None else round(x, 4) for n, x in table.items()}
            best = max(BASELINES, key=lambda n: table[n] or -1.0)
            diffs = {}
            for ranker in ("ranker", "ranker without query statistics"):
                for other in (best, "ranker before"):
                    if other == ranker:
                        continue
                    a, b = per_list[(g, ranker)][mask], per_list[(g, other)][mask]
                    both = np.isfinite(a) & np.isfinite(b)
                    if both.sum() >= 2:
                        diffs[f"{ranker} - {other}"] = paired_interval(a[both] - b[both])
            out["differences"][f"{cls} / {g}"] = diffs
    return out


def borrow_sweep(work: Path, thresholds: list[float], window: str = "val") -> list[dict]:
    """How close a query must be to a head query to borrow its statistics: for each minimum cosine, the
    ranker retrained with it (its training rows borrow the same way) and NDCG@10 on the ``window``'s search
    lists whose query the tables do not know (tail and unseen); 1.01 borrows nothing."""

    shop = ShopData.load(work / "data")
    store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
    item_emb, query_emb = np.load(work / "embeddings" / "items.npy"), np.load(work / "embeddings" / "queries.npy")
    lists = split_by_time(shop)[window]
    own = np.append(store.queries.rows(shop.queries), 0)[shop.session_query[lists]]
    lists = lists[(shop.session_query[lists] >= 0) & (own < 0)]
    out = []
    for tau in thresholds:
        arrays = dict(store.queries.arrays)
        arrays["borrow"] = np.array([tau, max(store.queries.neighbours, 1)], np.float32)
        queries = type(store.queries)(arrays)
        s = FeatureStore(
            store.tables, store.lexicon, None, store.user_profiles, embed_dim=store.embed_dim, queries=queries
        )
        models, report = rk.train(shop, s, item_emb, query_emb, store.profiles(), RankerConfig(), progress=False)
        rows = make_rows(shop, s, item_emb, query_emb, store.profiles(), lists)
        logit, weight = rk.parts(models[report["kind"]], rows)
        score = logit + weight * rows.sim
        borrowed = rows.dense[:, DENSE_COLUMNS.index("query_known")] > 0
        entry = {"min_similarity": tau, "lists": len(rows.offsets) - 1, "borrowed": round(float(borrowed.mean()), 4)}
        entry["ndcg@10 logged"] = round(float(np.nanmean(ndcg_per_list(rows.gain, score, rows.offsets))), 4)
        if rows.relevance is not None:
            true = ndcg_per_list(1.0 / (1.0 + np.exp(-rows.relevance)), score, rows.offsets)
            entry["ndcg@10 true"] = round(float(np.nanmean(true)), 4)
        out.append(entry)
    return out


CATALOGUE_VARIANTS = {
    "nearest items only": (0.0, 0.0),
    "+ clicked items (share 0.3)": (0.3, 0.0),
    "+ category boost 0.3": (0.0, 0.3),
    "+ category boost 1.0": (0.0, 1.0),
    "+ clicked items + boost 0.3": (0.3, 0.3),
}


def catalogue_quality(work: Path, repo: Path, limit: int) -> dict:
    """``search_catalog`` on the test days' search lists with a click, per query class, for each way of
    retrieving (``CATALOGUE_VARIANTS``: behaviour share, category boost): NDCG@10 and recall@10 of the served
    top 10, the retrieval's recall@N, and the share of the top 10 in the category shoppers clicked most
    for that query on the test days."""
    import dataclasses

    shop = ShopData.load(work / "data")
    pipe = InProcessPipeline(repo)
    retriever = pipe.retriever(False)
    store = retriever.store
    lists = [x for x in test_lists(shop, 10**9) if x["query"] is not None]
    # the category most clicked for each (normalised) query over the test days
    clicks: dict[str, np.ndarray] = {}
    row_of = {int(i): r for r, i in enumerate(shop.item_ids)}
    for x in lists:
        cats = [shop.item_category[row_of[i]] for i in x["relevant"] if i in row_of]
        counts = clicks.setdefault(normalize(x["query"]), np.zeros(len(shop.categories) + 1))
        np.add.at(counts, np.array(cats, np.int64) + 1, 1.0)
    lists = [lists[i] for i in sorted(np.random.default_rng(0).permutation(len(lists))[:limit])]
    stats = split_by_time(shop)["stats"]
    seen = {normalize(shop.queries[q]) for q in shop.session_query[stats] if q >= 0}
    base = retriever.settings
    none = np.zeros(0, np.int64)
    rows: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    for x in lists:
        text = x["query"]
        cls = "head" if store.queries.row(text) >= 0 else "tail" if normalize(text) in seen else "unseen"
        top_cat = int(np.argmax(clicks[normalize(text)])) - 1
        emb = pipe.query_embedding(text)
        query = np.array([text.encode()], object)
        for name, (share, boost) in CATALOGUE_VARIANTS.items():
            retriever.settings = dataclasses.replace(base, behaviour_share=share, category_boost=boost)
            try:
                ids, _ = pipe.search_catalog(x["user"], text, K)
                cands = retriever.search(np.array([x["user"]]), query, emb, none)[c.ITEM_IDS]
            finally:
                retriever.settings = base
            found = sum(1 for i in cands if int(i) in x["relevant"]) / len(x["relevant"])
            in_cat = np.mean([shop.item_category[row_of[int(i)]] == top_cat for i in ids if int(i) in row_of])
            for group in (cls, "all searches"):
                rows.setdefault((group, name), []).append((*ndcg_recall(ids, x["relevant"]), found, float(in_cat)))
    out: dict = {"build": str(repo), "lists": {}, "modes": {}}
    for (group, name), vals in rows.items():
        out["lists"][group] = len(vals)
        v = np.array(vals)
        out["modes"].setdefault(group, {})[name] = {
            "ndcg@10": round(float(v[:, 0].mean()), 4),
            "recall@10": round(float(v[:, 1].mean()), 4),
            f"retrieval recall@{base.candidates}": round(float(v[:, 2].mean()), 4),
            "top-10 in the most clicked category": round(float(v[:, 3].mean()), 4),
        }
    return out


ORDER = ("random", "popularity", "click prior", "query-item CTR", "ranker before", "ranker without query statistics")


def markdown(result: dict) -> str:
    """The tables of docs/quality.md for one build."""
    names = (*ORDER, "ranker")
    lines = ["| query class | lists | gains | " + " | ".join(names) + " |", "|---|---:|---|" + "---:|" * len(names)]
    for key, row in result["ndcg@10"].items():
        cls, gains = key.split(" / ")
        cells = [f"{row[n]:.4f}" if row[n] is not None else "-" for n in names]
        cells[-1] = f"**{cells[-1]}**"
        lines.append(f"| {cls} | {result['lists'][cls]} | {gains} | " + " | ".join(cells) + " |")
    lines += ["", "| query class | gains | ranker - best simple baseline [95% CI] | ranker - ranker before [95% CI] |"]
    lines.append("|---|---|---|---|")
    for key, diffs in result["differences"].items():
        cls, gains = key.split(" / ")
        best = [(k, v) for k, v in diffs.items() if k.startswith("ranker - ") and not k.endswith("before")]
        before = diffs.get("ranker - ranker before")
        a = f"vs {best[0][0][9:]}: {best[0][1][0]:+.4f} [{best[0][1][1]:+.4f}, {best[0][1][2]:+.4f}]" if best else ""
        b = f"{before[0]:+.4f} [{before[1]:+.4f}, {before[2]:+.4f}]" if before else ""
        lines.append(f"| {cls} | {gains} | {a} | {b} |")
    return "\n".join(lines)


def table(result: dict) -> str:
    lines = []
    for key, row in result["ndcg@10"].items():
        cls = key.split(" / ")[0]
        lines.append(f"{key} ({result['lists'][cls]} lists): " + ", ".join(f"{n} {v}" for n, v in row.items()))
        for name, (mean, low, high) in result["differences"][key].items():
            lines.append(f"    {name}: {mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, nargs="+", default=[Path("build/default"), Path("build/market")])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument(
        "--sweep-borrow",
        default=None,
        help="instead: the borrowing threshold sweep on the validation days, e.g. 0.5,0.6,0.7,0.8,0.9,1.01",
    )
    parser.add_argument(
        "--catalogue",
        action="store_true",
        help="instead: search_catalog's retrieval per query class, on the repository build/<name>_repo",
    )
    parser.add_argument("--lists", type=int, default=600, help="--catalogue: test search lists sampled")
    parser.add_argument("--markdown", action="store_true", help="print docs/quality.md's tables")
    args = parser.parse_args(argv)
    results: list[dict] = []
    if args.catalogue:
        for work in args.work:
            result = catalogue_quality(work, work.parent / f"{work.name}_repo", args.lists)
            results.append(result)
            for group, modes in result["modes"].items():
                print(f"== {work} search_catalog, {group} ({result['lists'][group]} lists)")
                for name, m in modes.items():
                    print(f"  {name:<32} " + "  ".join(f"{k} {v}" for k, v in m.items()))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
        return 0
    if args.sweep_borrow:
        for work in args.work:
            for entry in borrow_sweep(work, [float(x) for x in args.sweep_borrow.split(",")]):
                print(work, entry)
        return 0
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    for work in args.work:
        if not (work / "features").is_dir():
            print(f"error: no finished build in {work}: run `python -m builders build --profile {work.name}` first")
            return 2
        result = evaluate(work)
        results.append(result)
        print(f"== {work}\n{markdown(result) if args.markdown else table(result)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

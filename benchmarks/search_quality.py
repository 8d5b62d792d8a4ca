"""Does search learn from what shoppers did? The served ranking against the simple baselines that use the
same logs, per query class, on finished builds (``make bench-search``; results in docs/quality.md).

For each build's work folder (``build/<name>/``: the demo's ``default``, the market shop's ``market``),
on its held-out test days' search lists, every scorer ranks the same logged candidates:

* ``random``; ``popularity`` (the item's clicks in the statistics window);
* ``click prior``: P(click | query, category) from the statistics window (the query tables' smoothed
  category CTR), ties broken at random: the ten-line baseline;
* ``query-item CTR``: the query tables' smoothed CTR of the (query, item) pair, ties at random;
* ``ranker without query statistics``: today's ranker before this signal, the same model and
  hyper-parameters trained on the same rows with every query unknown to the statistics;
* ``ranker``: the served ranker, with the query statistics features.

Both rankers are trained here, side by side, with the build's config (the second is what the build
serves). Query classes: ``head`` (the query is in the statistics tables), ``tail`` (seen in the
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

from builders.data.config import RankerConfig
from builders.data.dataset import ShopData, split_by_time
from builders.metrics import ndcg_per_list, paired_interval
from builders.ranker import Rows
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
    """Every scorer's scores of the test rows, and those rows (``builders.ranker.Rows``)."""
    from builders import ranker as rk

    blind = FeatureStore(store.tables, store.lexicon, None, store.user_profiles, embed_dim=store.embed_dim)
    scores: dict[str, np.ndarray] = {}
    for name, s in (("ranker without query statistics", blind), ("ranker", store)):
        model, _ = rk.train(shop, s, item_emb, query_emb, store.profiles(), hp, progress=progress)
        rows = rk.make_rows(shop, s, item_emb, query_emb, store.profiles(), split_by_time(shop)["test"])
        logit, weight = rk.predict_parts(model, rows)
        scores[name] = logit + weight * rows.sim
    noise = np.random.default_rng(1).random(len(rows)) * 1e-6
    col = DENSE_COLUMNS.index
    scores["random"] = noise * 1e6
    scores["popularity"] = rows.dense[:, col("item_log_clicks")] + noise
    scores["click prior"] = rows.dense[:, col("query_category_ctr")] + noise
    scores["query-item CTR"] = rows.dense[:, col("query_item_ctr")] + noise
    return scores, rows


def evaluate(work: Path, progress: bool = False) -> dict:
    from builders.data import config as cfg_mod

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
                for other in (best, "ranker without query statistics"):
                    if other == ranker:
                        continue
                    a, b = per_list[(g, ranker)][mask], per_list[(g, other)][mask]
                    both = np.isfinite(a) & np.isfinite(b)
                    if both.sum() >= 2:
                        diffs[f"{ranker} - {other}"] = paired_interval(a[both] - b[both])
            out["differences"][f"{cls} / {g}"] = diffs
    return out


def table(result: dict) -> str:
    lines = []
    for key, row in result["ndcg@10"].items():
        cls = key.split(" / ")[0]
        lines.append(f"{key} ({result['lists'][cls]} lists): " + ", ".join(f"{n} {v}" for n, v in row.items()))
        for name, (mean, low, high) in result["differences"][key].items():
            lines.append(f"    {name}: {mean:+.4f} [{low:+.4f}, {high:+.4f}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, nargs="+", default=[Path("build/default"), Path("build/market")])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    for work in args.work:
        if not (work / "features").is_dir():
            print(f"error: no finished build in {work}: run `python -m builders build --profile {work.name}` first")
            return 2
        result = evaluate(work)
        results.append(result)
        print(f"== {work}\n{table(result)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

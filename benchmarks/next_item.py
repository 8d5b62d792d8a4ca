"""Next-item quality of recommendations on held-out sessions (``make bench-recommend``).

On the test days of a built shop, every recommendation list with a click (a product page's, with the
item viewed, or a homepage's): given what the visit viewed and what the user (an anonymous visitor: the
session) clicked, carted or bought before the list, the items clicked (1) or bought (2) in it. That
is the context the served pipeline sees: the viewed item as CONTEXT_ITEM_IDS and the earlier
interactions as the online store's recent list (``builders.learning.rows.list_contexts``, the same
function that makes the training rows).

Compared on the same lists, each a list of the catalogue's items (bought and viewed items left out):

* ``popular``: the most clicked items of the statistics window;
* ``profile + popular (today)``: the retrieval the stack served before co-visitation, in its order: the
  items nearest the user's profile plus the viewed items, mixed half and half with the most clicked;
* ``co-visitation``: the items co-visited with the context (``runtime.covisit``), then the most clicked;
* ``embedding neighbours``: the items whose titles are nearest the context items' mean embedding;
* ``served``: ``recommend_catalog`` as served (in process): retrieval, the ranker, topk.

recall@10, recall@N (N = the retrieval's candidates: the baselines' first N, the served pipeline's
candidates) and NDCG@10, per class of list (product page or homepage; cold or known user), with paired
bootstrap intervals of served minus each baseline on NDCG@10.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.retrieval import K, ndcg_recall
from builders.data.dataset import ShopData, split_by_time
from builders.learning.metrics import paired_interval
from builders.learning.rows import list_contexts
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime.covisit import context_vector
from runtime.retrieval import RECENT_WEIGHT

BASELINES = ("popular", "profile + popular (today)", "co-visitation", "embedding neighbours")
METHODS = (*BASELINES, "served")
# --sweep: the served pipeline again with other retrieval settings: covisit_share, popular_share and
# viewed_popular_share
SWEEP = {
    "served, co-visited 0.25": (0.25, 0.5, 0.0),
    "served, co-visited 1.0": (1.0, 0.5, 0.0),
    "served, no co-visited": (0.0, 0.5, 0.0),
    "served, beside viewed items popular 0.5": (0.5, 0.5, 0.5),
    "served, no popular items at all": (0.5, 0.0, 0.0),
}


def cases(shop: ShopData, limit: int, seed: int = 0) -> list[dict]:
    """The test days' recommendation lists with a clicked known item, sampled to at most ``limit``."""
    test = split_by_time(shop)["test"]
    test = test[shop.session_query[test] < 0]
    contexts, recents = list_contexts(shop, test)
    viewed_of = shop.session_context if len(shop.session_context) else np.full(len(shop.session_time), -1)
    out = []
    for i, s in enumerate(test.tolist()):
        a, b = shop.session_offsets[s], shop.session_offsets[s + 1]
        rows, clicked = shop.imp_item[a:b], shop.imp_click[a:b] > 0
        hit = clicked & (rows >= 0)
        if not hit.any():
            continue
        viewed = int(viewed_of[s])
        user_row = int(shop.session_user[s])
        ctx = contexts[i]
        out.append(
            {
                "user": int(shop.user_ids[user_row]) if user_row >= 0 else -1 - int(s),
                "user_row": user_row,
                "viewed": viewed,
                "recent": [int(r) for r in recents[i] if r >= 0],  # newest first, as the online store holds them
                "context": ctx,
                "relevant": {
                    int(shop.item_ids[r]): 1.0 + float(p)
                    for r, p, h in zip(rows, shop.imp_purchase[a:b], hit, strict=True)
                    if h
                },
                "class": ("product page" if viewed >= 0 else "homepage")
                + (", known user" if user_row >= 0 else ", cold user"),
            }
        )
    picked = np.random.default_rng(seed).permutation(len(out))[:limit]
    return [out[i] for i in sorted(picked)]


def _fill(first: np.ndarray, popular: np.ndarray, n: int) -> np.ndarray:
    both = np.concatenate([first, popular])
    _, once = np.unique(both, return_index=True)
    return both[np.sort(once)][:n]


def rank_all(
    pipe: InProcessPipeline, shop: ShopData, x: dict, sweep: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each method's top 10 and its first N (ids) for one case."""
    retriever = pipe.retriever(True)
    t, n = retriever.store.tables, retriever.settings.candidates
    viewed_ids = shop.item_ids[[x["viewed"]]] if x["viewed"] >= 0 else np.zeros(0, np.int64)
    banned = np.concatenate([retriever.purchases.of(x["user_row"]), t.item_rows(viewed_ids)])
    popular = retriever._popular(banned)  # ids
    none = np.zeros(0, np.int64)

    def nearest(vector: np.ndarray) -> np.ndarray:
        return retriever._retrieve(vector, banned, viewed_ids, n, False) if np.any(vector) else none

    profile = retriever.store.profiles()[x["user_row"]]
    viewed_rows = np.array([x["viewed"]] if x["viewed"] >= 0 else [], np.int64)
    today_vec = context_vector(profile, viewed_rows, retriever.item_embeddings)  # today: profile + viewed
    if np.any(today_vec):
        similar, pop = nearest(today_vec), popular[: n // 2]
        today = _fill(np.concatenate([similar[: n - len(pop)], pop, similar[n - len(pop) :]]), popular, n)
    else:
        today = popular[:n]
    ctx = x["context"]
    weights = np.where(ctx == x["viewed"], 1.0, RECENT_WEIGHT)
    co_rows, _ = retriever.store.covisits.neighbours(ctx, weights)
    co_rows = co_rows[~np.isin(co_rows, banned)]
    covisit = _fill(retriever.id_of_row[co_rows], popular, n)
    emb_vec = context_vector(np.zeros_like(profile), ctx, retriever.item_embeddings)
    neighbours = nearest(emb_vec)
    neighbours = neighbours if len(neighbours) else popular[:n]
    served, _ = pipe.recommend_catalog(x["user"], K, context=viewed_ids, recent=shop.item_ids[x["recent"]])
    lists = {
        "popular": popular[:n],
        "profile + popular (today)": today,
        "co-visitation": covisit,
        "embedding neighbours": neighbours,
    }
    out = {name: (ids[:K], ids[:n]) for name, ids in lists.items()}
    out["served"] = (served, pipe.last_candidates)
    base = retriever.settings
    for name, (co_share, pop_share, viewed_share) in (SWEEP if sweep else {}).items():
        retriever.settings = dataclasses.replace(
            base, covisit_share=co_share, popular_share=pop_share, viewed_popular_share=viewed_share
        )
        try:
            top, _ = pipe.recommend_catalog(x["user"], K, context=viewed_ids, recent=shop.item_ids[x["recent"]])
        finally:
            retriever.settings = base
        out[name] = (top, pipe.last_candidates)
    return out


def evaluate(work: Path, repo: Path, limit: int, sweep: bool = False) -> dict:
    shop = ShopData.load(work / "data")
    pipe = InProcessPipeline(repo)
    todo = cases(shop, limit)
    rows: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    start = time.perf_counter()
    for x in todo:
        for name, (top, first_n) in rank_all(pipe, shop, x, sweep).items():
            ndcg, recall = ndcg_recall(top, x["relevant"])
            found = sum(1 for i in first_n if int(i) in x["relevant"]) / len(x["relevant"])
            for group in (x["class"], "all"):
                rows.setdefault(group, {}).setdefault(name, []).append((ndcg, recall, found))
    n = pipe.retriever(True).settings.candidates
    out: dict = {"work": str(work), "repo": str(repo), "seconds": round(time.perf_counter() - start, 1), "classes": {}}
    for group, by_method in sorted(rows.items()):
        served = np.array(by_method["served"])
        entry: dict = {"lists": len(served), "methods": {}}
        for name in [*METHODS, *(SWEEP if sweep else {})]:
            v = np.array(by_method[name])
            m: dict = {"ndcg@10": round(float(v[:, 0].mean()), 4), "recall@10": round(float(v[:, 1].mean()), 4)}
            m[f"recall@{n}"] = round(float(v[:, 2].mean()), 4)
            if name != "served":
                m["served - this, ndcg@10"] = paired_interval(served[:, 0] - v[:, 0])
            entry["methods"][name] = m
        out["classes"][group] = entry
    return out


def follow_share(repo: Path, per_category: int = 3, seed: int = 7) -> dict[str, float]:
    """The share of ``recommend_catalog``'s top 10 for a visitor viewing an item that follows that item: of its
    category, co-visited with it, or of the 2 categories the sessions co-visit most with its category (as
    ``tests/test_online_served.py`` counts), over ``per_category`` viewed items of every category, with
    ``viewed_popular_share`` 0 and 0.5. Logged clicks cannot see this: they reward popularity."""
    pipe = InProcessPipeline(repo)
    r = pipe.retriever(True)
    t, cv = r.store.tables, r.store.covisits
    rng = np.random.default_rng(seed)

    def follows(row: int, ids: np.ndarray) -> float:
        co = set(cv.neighbours(np.array([row]))[0].tolist())
        cat = int(t.item_category[row])
        near = [int(c) - 1 for c in np.argsort(-cv.categories[cat + 1]) if int(c) - 1 not in (cat, -1)][:2]
        return float(np.mean([t.item_category[x] in (cat, *near) or int(x) in co for x in t.item_rows(ids)]))

    cats = range(int(t.item_category[:-1].max()) + 1)
    viewed = [int(rng.choice(np.flatnonzero(t.item_category[:-1] == c))) for c in cats for _ in range(per_category)]
    base, out = r.settings, {}
    for share in (0.0, 0.5):
        r.settings = dataclasses.replace(base, viewed_popular_share=share)
        try:
            got = [follows(v, pipe.recommend_catalog(10**15 + 3, K, context=r.id_of_row[[v]])[0]) for v in viewed]
        finally:
            r.settings = base
        out[f"viewed_popular_share {share}"] = round(float(np.mean(got)), 3)
    return out


def markdown(result: dict) -> str:
    lines = []
    for group, entry in result["classes"].items():
        lines += [f"{group} ({entry['lists']} lists):", ""]
        keys = list(next(iter(entry["methods"].values())).keys())
        lines.append("| method | " + " | ".join(keys) + " |")
        lines.append("|---" * (len(keys) + 1) + "|")
        for name, m in entry["methods"].items():
            cells = []
            for k in keys:
                v = m.get(k, "")
                cells.append(f"{v[0]:+.4f} [{v[1]:+.4f}, {v[2]:+.4f}]" if isinstance(v, list) else f"{v}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.next_item", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shop", nargs=2, action="append", metavar=("WORK", "REPO"), help="a build's work folder and repository"
    )
    parser.add_argument("--lists", type=int, default=1500, help="test lists sampled per shop")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also the served pipeline with other retrieval shares")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    shops = args.shop or [["build/default", "build/default_repo"], ["build/market", "build/market_repo"]]
    results = []
    print(f"machine: {platform.node()} ({platform.processor() or platform.machine()}), in process")
    for work, repo in shops:
        result = evaluate(Path(work), Path(repo), args.lists, args.sweep)
        results.append(result)
        print(f"\n## {work} ({result['seconds']} s)\n")
        print(markdown(result) if args.markdown else json.dumps(result["classes"], indent=1))
        if args.sweep:
            print(f"top 10 that follow a viewed item (a visitor the build does not know): {follow_share(Path(repo))}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""search_catalog's top 10 on the fashion shop, before and after variant groups and query understanding.

For each sample of the fashion shop (a generator seed: ``builders/data/fashion.py``) the benchmark writes
the shop, builds it through ``--config`` and asks ``search_catalog`` (in process, the served code) the
shop's kinds of searches (attribute, price, brand and intent queries, from a stream of their own), in each
mode of ``MODES``. Per query class it reports:

* the share of the top 10 that is relevant and in stock (relevant: the query's category, and its colour,
  brand or price where it names one; a missing result counts as not relevant);
* the distinct variant groups (styles) in the top 10.

``--other WORK:REPO`` also measures shops without groups (the demo, the market): search_catalog's NDCG@10
and recall@10 on their test days' search lists with a click, understanding off and on, so a gain here is
not paid for there.

    python -m benchmarks.listing_quality --seeds 20261204 11 12 --other build/small:build/small_repo --markdown
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.retrieval import ndcg_recall, test_lists
from builders.data import fashion
from builders.data.dataset import ShopData
from builders.repository.pipeline import InProcessPipeline
from runtime import contract as c
from runtime.cli_logging import configure

K = 10
ALL_FIELDS = ["price", "attribute", "brand", "category"]
MODES = {
    "before: no groups, words only": {"per_group": 0, "understand": "off"},
    "groups": {"understand": "off"},
    "groups + understood, boost": {"understand": "boost"},
    "groups + understood, filter (default)": {},
    "groups + understood, filter all chips": {"understand_fields": ALL_FIELDS},
}


OTHER_MODES = {
    "understanding off": {"understand": "off"},
    "default": {},
    "boost all chips": {"understand": "boost", "understand_fields": ALL_FIELDS},
    "filter all chips": {"understand_fields": ALL_FIELDS},
}


def build_sample(profile: str, seed: int, root: Path) -> Path:
    """Write the fashion shop of ``profile`` and ``seed`` under ``root`` and build it; returns the repository."""
    name = f"{profile}-s{seed}"
    config = fashion.write(profile, root / name / "export", seed=seed, name=name)
    repo = root / f"{name}_repo"
    cmd = [sys.executable, "-m", "builders", "build", "--config", str(config), "--out", str(repo), "--no-progress"]
    cmd += ["--work", str(root / name)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return repo


def evaluate_fashion(repo: Path, export: Path, profile: str, seed: int, n_queries: int) -> dict:
    items = pq.read_table(export / "catalog.parquet").to_pylist()
    row_of = {it["sku"]: r for r, it in enumerate(items)}
    colour = [next((a.split(":", 1)[1] for a in it["attributes"] if a.startswith("colour:")), "") for it in items]
    pipe = InProcessPipeline(repo)
    out: dict[str, dict[str, list[tuple[float, float, float]]]] = {}

    def good(row: int, path: str, constraints: dict) -> bool:
        it = items[row]
        ok = it["category"] == path and it["stock"] > 0
        if "colour" in constraints:
            ok &= colour[row] == fashion.COLOURS[constraints["colour"]][0]
        if "brand" in constraints:
            ok &= it["brand"] == fashion.BRANDS[constraints["brand"]]
        if "max_price" in constraints:
            ok &= it["price"] < constraints["max_price"]
        return bool(ok)

    for text, cls, cat, constraints in fashion.query_sample(profile, n_queries, seed):
        path = fashion.CATEGORIES[cat][0]
        # the best a top 10 can do: the relevant styles in stock the catalogue has, at most 10
        styles = {items[r]["item_group_id"] for r in range(len(items)) if good(r, path, constraints)}
        for group in (cls, "all"):
            out.setdefault(group, {}).setdefault("ceiling: relevant styles in stock", []).append(
                (min(len(styles), K) / K, min(len(styles), K), 1.0)
            )
        for mode, options in MODES.items():
            pipe.search_catalog(0, text, K, options=json.dumps(options))
            keys = [k.decode() for k in pipe.last_response[c.TOP_ITEM_KEYS]]
            hits = sum(good(row_of[k], path, constraints) for k in keys)
            groups = len({items[row_of[k]]["item_group_id"] for k in keys})
            for group in (cls, "all"):
                attainable = hits / min(len(styles), K) if styles else 1.0
                out.setdefault(group, {}).setdefault(mode, []).append((hits / K, groups, attainable))
    return {
        g: {m: np.mean(np.array(v), axis=0).round(3).tolist() for m, v in modes.items()} for g, modes in out.items()
    }


def evaluate_other(work: Path, repo: Path, limit: int) -> dict:
    """search_catalog on a shop's test-day search lists with a click: understanding off vs the default."""
    shop = ShopData.load(work / "data")
    pipe = InProcessPipeline(repo)
    lists = [x for x in test_lists(shop, 10**9) if x["query"] is not None]
    lists = [lists[i] for i in sorted(np.random.default_rng(0).permutation(len(lists))[:limit])]
    out: dict[str, list[tuple[float, float]]] = {}
    fired = 0
    for x in lists:
        for name, options in OTHER_MODES.items():
            ids, _ = pipe.search_catalog(x["user"], x["query"], K, options=json.dumps(options))
            out.setdefault(name, []).append(ndcg_recall(ids, x["relevant"]))
            if options == {}:
                fired += "understood" in json.loads(pipe.last_response[c.RESULT_INFO][0])
    return {
        "lists": len(lists),
        "understood share": round(fired / max(len(lists), 1), 3),
        **{name: np.mean(np.array(v), axis=0).round(4).tolist() for name, v in out.items()},
    }


def markdown(fashion_results: dict[int, dict], others: dict[str, dict]) -> str:
    lines = [
        "| query class | mode | relevant and in stock, top 10 (min .. max over samples) | of the attainable "
        "| distinct groups, top 10 |",
        "|---|---|---|---|---|",
    ]
    classes = [*fashion.QUERY_CLASSES, "all"]
    for cls in classes:
        for mode in ("ceiling: relevant styles in stock", *MODES):
            vals = np.array([r[cls][mode] for r in fashion_results.values() if cls in r])
            lines.append(
                f"| {cls} | {mode} | {vals[:, 0].mean():.3f} ({vals[:, 0].min():.3f} .. {vals[:, 0].max():.3f}) "
                f"| {vals[:, 2].mean():.3f} ({vals[:, 2].min():.3f} .. {vals[:, 2].max():.3f}) "
                f"| {vals[:, 1].mean():.2f} ({vals[:, 1].min():.2f} .. {vals[:, 1].max():.2f}) |"
            )
    if others:
        head = " | ".join(f"NDCG@10 / recall@10, {m}" for m in OTHER_MODES)
        lines += ["", f"| shop | lists | understood | {head} |", "|---|---|---|" + "---|" * len(OTHER_MODES)]
        for shop, r in others.items():
            cells = " | ".join(f"{r[m][0]:.4f} / {r[m][1]:.4f}" for m in OTHER_MODES)
            lines.append(f"| {shop} | {r['lists']} | {r['understood share']:.1%} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="fashion-small", choices=sorted(fashion.PROFILES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[fashion.PROFILES["fashion-small"].seed])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--root", type=Path, default=Path("build/listing_quality"))
    ap.add_argument("--other", action="append", default=[], help="WORK:REPO of a shop without groups")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    results = {}
    for seed in args.seeds:
        repo = build_sample(args.profile, seed, args.root)
        export = args.root / f"{args.profile}-s{seed}" / "export"
        results[seed] = evaluate_fashion(repo, export, args.profile, seed, args.queries)
        print(f"seed {seed}: {json.dumps(results[seed]['all'])}", flush=True)
    others = {}
    for spec in args.other:
        work, repo = spec.split(":")
        others[work] = evaluate_other(Path(work), Path(repo), 300)
    if args.json:
        args.json.write_text(json.dumps({"fashion": results, "others": others}, indent=1))
    print(markdown(results, others) if args.markdown else json.dumps({"fashion": results, "others": others}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

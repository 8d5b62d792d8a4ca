"""Quality of retrieval from the whole catalogue against re-ranking the logged candidates (``make bench-retrieval``).

On the held-out test days of a built shop, for every list with a click (a search, or a homepage list):

* re-ranking: the ``search`` / ``recommend`` pipeline ranks the list's logged candidates (what the shop
  showed; the clicked items are among them by construction, so this is the ceiling of the ranking stage);
* catalogue: ``search_catalog`` / ``recommend_catalog`` retrieve N from the whole catalogue, filter and rank.

Relevance: a clicked item 1, a bought one 2. NDCG@10 and recall@10 of the returned top 10, and the
retrieval's own recall@N (the share of the clicked items among the N candidates the ranker saw), per N.
Recommendations also compare shares of popular items among the N (``popular_share``: 0 = the user's vector
alone, 1 = the most clicked items alone).
Everything runs in process on the repository's own files (``builders.repository.pipeline.InProcessPipeline``).
``--compare-table items.npy`` runs the same lists again with that item table (e.g. the build's float32
embeddings) in place of the served one (float16 by default), to measure what the compact table costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import numpy as np

from builders.data.dataset import ShopData, split_by_time
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import contract as c
from runtime.retrieval import ItemIndex

K = 10


def dcg(gains: np.ndarray) -> float:
    return float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))


def ndcg_recall(returned: np.ndarray, relevant: dict[int, float], k: int = K) -> tuple[float, float]:
    gains = np.array([relevant.get(int(i), 0.0) for i in returned[:k]])
    ideal = dcg(np.sort(np.array(list(relevant.values())))[::-1][:k])
    hits = sum(1 for i in returned[:k] if int(i) in relevant)
    return (dcg(gains) / ideal if ideal > 0 else 0.0), hits / len(relevant)


def test_lists(shop: ShopData, limit: int, seed: int = 0) -> list[dict]:
    """Test-day lists with at least one clicked known item: user, query (or None), logged ids, relevance."""
    out = []
    for s in split_by_time(shop)["test"]:
        a, b = shop.session_offsets[s], shop.session_offsets[s + 1]
        rows = shop.imp_item[a:b]
        known = rows >= 0
        clicked = known & (shop.imp_click[a:b] > 0)
        if not clicked.any():
            continue
        user_row = int(shop.session_user[s])
        q = int(shop.session_query[s])
        out.append(
            {
                "user": int(shop.user_ids[user_row]) if user_row >= 0 else -1 - int(s),
                "query": shop.queries[q] if q >= 0 else None,
                "logged": shop.item_ids[rows[known]],
                "relevant": {
                    int(shop.item_ids[r]): 1.0 + float(p)
                    for r, p, ck in zip(rows, shop.imp_purchase[a:b], clicked, strict=True)
                    if ck
                },
            }
        )
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(out))[:limit]
    return [out[i] for i in sorted(picked)]


def use_table(pipe: InProcessPipeline, table: np.ndarray) -> None:
    """Serve ``table`` ``[I+1, D]`` as the item embeddings: topk's scores, retrieval's re-scoring and context."""
    pipe.topk.item_embeddings = table
    for recommend in (False, True):
        retriever = pipe.retriever(recommend)
        retriever.item_embeddings = table
        if isinstance(retriever.index, ItemIndex) and retriever.index.vectors is not None:
            retriever.index.vectors = table  # (a scan model reads its own file: the bench's repo uses FAISS)


def evaluate(
    repo: Path,
    data: Path,
    limit: int,
    depths: tuple[int, ...],
    shares: tuple[float, ...],
    table: np.ndarray | None = None,
) -> dict:
    pipe = InProcessPipeline(repo)
    if table is not None:
        use_table(pipe, table)
    shop = ShopData.load(data)
    lists = test_lists(shop, limit)
    report: dict = {"lists": {}, "modes": {}}
    for kind in ("search", "recommend"):
        retriever = pipe.retriever(kind == "recommend")
        base = retriever.settings
        variants = [(f"catalogue, N={d}", dataclasses.replace(base, candidates=d)) for d in depths]
        if kind == "recommend":
            variants = [(f"{name}, popular share {base.popular_share:g}", v) for name, v in variants]
            variants += [
                (f"catalogue, N={base.candidates}, popular share {s:g}", dataclasses.replace(base, popular_share=s))
                for s in shares
                if s != base.popular_share
            ]
        mine = [x for x in lists if (x["query"] is not None) == (kind == "search")]
        report["lists"][kind] = len(mine)
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for x in mine:
            rel = x["relevant"]
            if kind == "search":
                ids, _ = pipe.search(x["user"], x["query"], x["logged"], K)
            else:
                ids, _ = pipe.recommend(x["user"], x["logged"], K)
            rows.setdefault("re-ranking (logged candidates)", []).append((*ndcg_recall(ids, rel), 1.0))
            for name, settings in variants:
                retriever.settings = settings
                try:
                    ids, cands = catalogue(pipe, x)
                finally:
                    retriever.settings = base
                found = sum(1 for i in cands if int(i) in rel) / len(rel)
                rows.setdefault(name, []).append((*ndcg_recall(ids, rel), found))
        report["modes"][kind] = {
            name: {
                "ndcg@10": round(float(np.mean([v[0] for v in vals])), 4),
                "recall@10": round(float(np.mean([v[1] for v in vals])), 4),
                "retrieval recall@N": round(float(np.mean([v[2] for v in vals])), 4),
            }
            for name, vals in rows.items()
        }
    report["machine"] = f"{platform.node()} ({platform.processor() or platform.machine()})"
    report["item_table"] = str(pipe.topk.item_embeddings.dtype)
    return report


def catalogue(pipe: InProcessPipeline, x: dict) -> tuple[np.ndarray, np.ndarray]:
    """The top K from the whole catalogue, and the candidates the ranker saw."""
    none = np.zeros(0, np.int64)
    if x["query"] is None:
        ids, _ = pipe.recommend_catalog(x["user"], K)
        return ids, pipe.retriever(True).recommend(np.array([x["user"]]), none, none)[c.ITEM_IDS]
    ids, _ = pipe.search_catalog(x["user"], x["query"], K)
    emb = pipe.query_embedding(x["query"])
    query = np.array([x["query"].encode()], object)
    return ids, pipe.retriever(False).search(np.array([x["user"]]), query, emb, none)[c.ITEM_IDS]


def table(report: dict) -> str:
    lines = []
    for kind, modes in report["modes"].items():
        lines.append(f"{kind} ({report['lists'][kind]} test lists with a click; item table {report['item_table']})")
        lines.append(f"  {'mode':<42} {'NDCG@10':>8} {'recall@10':>10} {'retrieval recall@N':>19}")
        for name, m in modes.items():
            lines.append(f"  {name:<42} {m['ndcg@10']:>8.4f} {m['recall@10']:>10.4f} {m['retrieval recall@N']:>19.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("build/small/bench_repo"))
    p.add_argument("--data", type=Path, default=Path("build/small/data"))
    p.add_argument("--lists", type=int, default=1500, help="test lists sampled (search and homepage together)")
    p.add_argument("--depths", default="100,300,1000", help="N values to retrieve")
    p.add_argument("--shares", default="0,0.5,1", help="recommendations: popular_share values to compare")
    p.add_argument("--compare-table", type=Path, help="an items.npy to evaluate again in the served table's place")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    depths = tuple(int(d) for d in args.depths.split(","))
    shares = tuple(float(s) for s in args.shares.split(","))
    reports = [evaluate(args.repo, args.data, args.lists, depths, shares)]
    print(table(reports[0]))
    if args.compare_table:
        other = np.asarray(np.load(args.compare_table, mmap_mode="r"))
        reports.append(evaluate(args.repo, args.data, args.lists, depths, shares, other))
        print(table(reports[1]))
    if args.json:
        args.json.write_text(json.dumps(reports if args.compare_table else reports[0], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

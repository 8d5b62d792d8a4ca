"""Would a lexical retriever help search? BM25 beside the semantic retrieval, measured on the test days
(``make bench-lexical``; the decision is recorded in docs/retrieval.md).

For every test-day search list with a click, the same N candidates' worth of retrieval from three
sources, each then ranked by the served ranker (the re-ranking pipeline over the candidates):

* ``semantic``: the FAISS index's nearest items to the query embedding (what ``search_catalog`` serves);
* ``bm25``: BM25 over the item texts (title, brand, category), ``bm25s`` (a well-kept library on sparse
  matrices, not hand-written);
* ``hybrid (RRF)``: both lists merged by reciprocal rank fusion (``1/(60 + rank)`` summed), the usual
  parameter-free merge.

Every list is filtered as the server filters: the user's purchases out, sold-out items (the build's
stock) out, then the first N. Reported per query class, because a lexical retriever is meant for some
queries and not others:

* ``brand``: the query names a catalogue brand (the demo's closest thing to an exact-SKU query: its
  queries carry no SKUs or model numbers);
* ``vocabulary mismatch``: no word of the query appears in any item text (other languages, synonyms,
  typos: "laufschuhe", "over-ear cans", "desk lmap");
* ``other``: the rest (category nouns and attributes).

Relevance and metrics as ``benchmarks.retrieval``: clicked 1, bought 2; NDCG@10, recall@10 and the
retrieval's own recall@N; each mode's NDCG@10 difference to semantic on the same lists with a paired
bootstrap 95% interval (an interval that contains 0 is no measured difference).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

import numpy as np

from benchmarks.retrieval import K, ndcg_recall, test_lists
from builders.data.dataset import ShopData
from builders.learning.metrics import paired_interval
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging

RRF_K = 60
WORD = re.compile(r"[\w-]+", re.UNICODE)


def item_texts(shop: ShopData) -> list[str]:
    """What a lexical index reads of each item: its title, brand and category path."""
    out = []
    for i, title in enumerate(shop.item_titles):
        brand = shop.brands[shop.item_brand[i]] if shop.item_brand[i] >= 0 else ""
        category = shop.categories[shop.item_category[i]] if shop.item_category[i] >= 0 else ""
        out.append(f"{title} {brand} {category.replace('>', ' ')}")
    return out


def words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def query_class(query: str, brands: set[str], vocabulary: set[str]) -> str:
    q = words(query)
    if q & brands:
        return "brand"
    if not q & vocabulary:
        return "vocabulary mismatch"
    return "other"


class Lexical:
    """BM25 over the item texts (``bm25s``); ``search`` returns item rows, best first."""

    def __init__(self, texts: list[str]):
        import bm25s

        self.bm25s = bm25s
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.size = len(texts)

    def search(self, query: str, n: int) -> np.ndarray:
        tokens = self.bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:  # nothing left of the query after tokenising: no lexical match
            return np.zeros(0, np.int64)
        rows, scores = self.index.retrieve(tokens, k=min(n, self.size), show_progress=False)
        found: np.ndarray = rows[0][scores[0] > 0].astype(np.int64)
        return found


def rrf(*ranked: np.ndarray) -> np.ndarray:
    """Rows by reciprocal rank fusion of the ranked lists, best first."""
    score: dict[int, float] = {}
    for rows in ranked:
        for rank, row in enumerate(rows.tolist()):
            score[row] = score.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
    return np.array(sorted(score, key=lambda r: -score[r]), np.int64)


def evaluate(repo: Path, data: Path, limit: int, depth: int) -> dict:
    pipe = InProcessPipeline(repo)
    shop = ShopData.load(data)
    retriever = pipe.retriever(False)
    tables = retriever.store.tables
    in_stock = np.asarray(tables.item_in_stock[:-1]) > 0
    texts = item_texts(shop)
    lexical = Lexical(texts)
    brands = {b.lower() for b in shop.brands}
    vocabulary = set().union(*(words(t) for t in texts))
    lists = [x for x in test_lists(shop, limit) if x["query"] is not None]
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for x in lists:
        rel, query = x["relevant"], x["query"]
        user_row = int(tables.user_rows(np.array([x["user"]], np.int64))[0])
        banned = retriever.purchases.of(user_row)
        semantic, _ = retriever.index.search(pipe.query_embedding(query).reshape(-1), 2 * depth)
        sources = {"semantic": semantic, "bm25": lexical.search(query, 2 * depth)}
        sources["hybrid (RRF)"] = rrf(sources["semantic"], sources["bm25"])
        cls = query_class(query, brands, vocabulary)
        for mode, found in sources.items():
            keep = found[in_stock[found] & ~np.isin(found, banned)][:depth] if found.size else found
            candidates = retriever.id_of_row[keep]
            if candidates.size:
                ids, _ = pipe.search(x["user"], query, candidates, K)
            else:
                ids = candidates  # nothing retrieved: an empty answer
            got = sum(1 for i in candidates if int(i) in rel) / len(rel)
            for c in (cls, "all"):
                rows.setdefault((c, mode), []).append((*ndcg_recall(ids, rel), got))
    report: dict = {"depth": depth, "lists": {}, "modes": {}}
    for (cls, mode), vals in sorted(rows.items()):
        report["lists"][cls] = len(vals)
        base = np.array([v[0] for v in rows[(cls, "semantic")]])
        report["modes"].setdefault(cls, {})[mode] = {
            "ndcg@10": round(float(np.mean([v[0] for v in vals])), 4),
            "recall@10": round(float(np.mean([v[1] for v in vals])), 4),
            "retrieval recall@N": round(float(np.mean([v[2] for v in vals])), 4),
            "ndcg@10 vs semantic, 95% CI": paired_interval(np.array([v[0] for v in vals]) - base),
        }
    report["machine"] = f"{platform.node()} ({platform.processor() or platform.machine()})"
    return report


def table(report: dict) -> str:
    lines = [f"search lists of the test days, N={report['depth']} candidates ranked by the served ranker"]
    for cls in ("all", "brand", "vocabulary mismatch", "other"):
        if cls not in report["modes"]:
            continue
        lines.append(f"{cls} ({report['lists'][cls]} lists)")
        head = f"  {'retrieval':<14} {'NDCG@10':>8} {'recall@10':>10} {'retrieval recall@N':>19}"
        lines.append(head + "  NDCG@10 vs semantic [95% CI]")
        for mode in ("semantic", "bm25", "hybrid (RRF)"):
            m = report["modes"][cls][mode]
            d, lo, hi = m["ndcg@10 vs semantic, 95% CI"]
            vs = "" if mode == "semantic" else f"  {d:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            lines.append(
                f"  {mode:<14} {m['ndcg@10']:>8.4f} {m['recall@10']:>10.4f} {m['retrieval recall@N']:>19.4f}{vs}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m benchmarks.lexical", description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("build/small/bench_repo"))
    p.add_argument("--data", type=Path, default=Path("build/small/data"))
    p.add_argument("--lists", type=int, default=1500, help="test lists sampled (search and homepage together)")
    p.add_argument("--depth", type=int, default=300, help="N: candidates per list")
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    report = evaluate(args.repo, args.data, args.lists, args.depth)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The build's retrieval step: the ANN index over the item title embeddings, its measured recall, purchases.

``python -m builders.learning.retrieval --embeddings build/small/embeddings/items.npy --out /tmp/index`` builds
an index alone (the step's reproduction command).

* ``flat`` (catalogues below ``FLAT_MAX_ITEMS``): exact inner product, nothing to tune.
* ``ivf``: FAISS ``IndexIVFScalarQuantizer`` with 8-bit codes (a quarter of fp32's bytes), ``nlist`` lists
  trained by k-means on a sample. The embeddings are read from a memory-mapped ``.npy`` chunk by chunk:
  the catalogue is never in memory twice. ``nprobe`` is chosen by measurement: the smallest that
  reaches ``recall_target`` (recall@N of the index against exact search, on a sample of the shop's
  queries and of its users' profiles). Every nprobe tried and its recall go into ``retrieval.json``.
* ``item_embeddings.npy``: the served item table (topk's scores, the IVF re-scoring, context items) in
  ``embedding_dtype``: float16 halves fp32's bytes (docs/scale.md measures what it costs). The nprobe
  measurement re-scores with this table, as the server does.

Why FAISS: the reference retrieval library (Merlin's multi-stage recommender uses it), an exact and an
IVF index behind one API, indexes read memory-mapped (``IO_FLAG_MMAP``) so Triton's instances share
one copy, and a GPU build for the gpu target. ``faiss-cpu`` 1.15.1 is pinned in requirements.txt.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from builders.data.dataset import impressions_of
from runtime.retrieval import (
    INDEX_FILE,
    PURCHASES_FILE,
    SETTINGS_FILE,
    ItemIndex,
    Purchases,
    RetrievalSettings,
    faiss_module,
)
from runtime.scoring import ITEM_EMBEDDINGS_FILE

logger = logging.getLogger(__name__)

FLAT_MAX_ITEMS = 20_000  # below this an exact search of one query costs well under a millisecond
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CHUNK = 200_000  # embedding rows per add / exact-search step
SAMPLE_QUERIES = 200


def choose_kind(n_items: int, wanted: str = "auto") -> str:
    if wanted != "auto":
        return wanted
    return "flat" if n_items < FLAT_MAX_ITEMS else "ivf"


def choose_nlist(n_items: int) -> int:
    """About 2 * sqrt(N) lists, a power of two, at most 4096 (k-means on 2 cores stays minutes at 10M)."""
    return int(min(4096, max(16, 2 ** round(math.log2(2 * math.sqrt(max(n_items, 1)))))))


def item_count(embeddings: np.ndarray) -> int:
    """The items of an ``items.npy`` (its last row is the unknown item's zeros, not an item)."""
    return int(embeddings.shape[0]) - 1


def build_index(embeddings: np.ndarray, kind: str, nlist: int, seed: int = 0):
    """The FAISS index over ``embeddings[:-1]`` (ids = rows), built chunk by chunk from a memmap."""
    faiss = faiss_module(os.cpu_count() or 1)
    n, dim = item_count(embeddings), embeddings.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 64 * nlist), replace=False))
        index.cp.niter = 10
        index.cp.seed = seed
        start = time.perf_counter()
        index.train(np.ascontiguousarray(embeddings[sample], np.float32))
        logger.info(f"  trained {nlist} lists on {len(sample):,} items in {time.perf_counter() - start:.1f} s")
    for a in range(0, n, CHUNK):
        index.add(np.ascontiguousarray(embeddings[a : min(a + CHUNK, n)], np.float32))
    return index


def exact_top(embeddings: np.ndarray, queries: np.ndarray, n: int) -> np.ndarray:
    """Rows of the exact top ``n`` by inner product for each query ``[Q, n]``, chunk by chunk."""
    items = item_count(embeddings)
    n = min(n, items)
    best_rows = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    q = np.asarray(queries, np.float32)
    for a in range(0, items, CHUNK):
        b = min(a + CHUNK, items)
        scores = q @ np.asarray(embeddings[a:b], np.float32).T
        rows = np.broadcast_to(np.arange(a, b), scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        if best_scores.shape[1] > n:
            top = np.argpartition(-best_scores, n - 1, axis=1)[:, :n]
            best_scores = np.take_along_axis(best_scores, top, axis=1)
            best_rows = np.take_along_axis(best_rows, top, axis=1)
    return best_rows


def recall_at(index: ItemIndex, exact: np.ndarray, queries: np.ndarray, n: int) -> float:
    """Mean |top n as served (``ItemIndex.search``, refined) ∩ exact top n| / n over the queries."""
    hits = [len(np.intersect1d(index.search(q, n)[0], e)) / len(e) for q, e in zip(queries, exact, strict=True)]
    return float(np.mean(hits)) if hits else 1.0


def choose_nprobe(
    index,
    embeddings: np.ndarray,
    samples: dict[str, np.ndarray],
    n: int,
    target: float,
    served: np.ndarray | None = None,
) -> dict:
    """The smallest nprobe whose recall@n against exact search (over ``embeddings``) reaches ``target`` on
    every sample, re-scoring with ``served`` (the served table; default ``embeddings``) as the server does."""
    faiss = faiss_module()
    nlist = faiss.extract_index_ivf(index).nlist
    exact = {name: exact_top(embeddings, q, n) for name, q in samples.items() if len(q)}
    tried: list[dict] = []
    chosen: int | None = None
    vectors = embeddings if served is None else served
    for nprobe in NPROBES:
        if nprobe > nlist:
            break
        served_index = ItemIndex(index, RetrievalSettings(kind="ivf", nprobe=nprobe), vectors)
        row = {
            "nprobe": nprobe,
            **{f"recall@{n}_{k}": round(recall_at(served_index, e, samples[k], n), 4) for k, e in exact.items()},
        }
        tried.append(row)
        if all(v >= target for k, v in row.items() if k != "nprobe"):
            chosen = nprobe
            break
    if chosen is None:
        chosen = int(tried[-1]["nprobe"])
    return {"nprobe": chosen, "tried": tried, "target": target}


def write_table(embeddings: np.ndarray, out: Path, dtype: str) -> np.ndarray:
    """``embeddings`` converted to ``dtype`` into ``out`` chunk by chunk (renamed when complete); the
    result memory-mapped read-only."""
    tmp = out.with_name(f".{out.name}.tmp")
    table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=embeddings.shape)
    for start in range(0, len(embeddings), CHUNK):
        table[start : start + CHUNK] = embeddings[start : start + CHUNK]
    table.flush()
    del table
    os.replace(tmp, out)
    return np.asarray(np.load(out, mmap_mode="r"))


def sample_rows(values: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Up to ``size`` non-zero rows of ``values`` (queries, user profiles), chosen with ``seed``."""
    rows = np.flatnonzero(np.any(values != 0, axis=1))
    if len(rows) > size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))
    return np.asarray(values[rows], np.float32)


def purchases(shop, before: int) -> Purchases:
    """Each known user's bought items (table rows) in lists before ``before`` (unix seconds)."""

    sessions = np.flatnonzero(shop.session_time < before)
    imp = impressions_of(shop, sessions)
    imp = imp[shop.imp_purchase[imp] > 0]
    users = shop.session_user[shop.impression_session()[imp]]
    items = shop.imp_item[imp]
    keep = (users >= 0) & (items >= 0)
    pairs = np.unique(np.stack([users[keep], items[keep]]), axis=1)
    return Purchases.from_pairs(pairs[0], pairs[1], len(shop.user_ids))


RECALL_CURVE_N = (10, 30, 100, 300, 1000)


def recall_curve(out: Path, shop, query_emb: np.ndarray, lists: np.ndarray, ns=RECALL_CURVE_N) -> dict:
    """Recall@N of the index in ``out`` (as served, refined) on the search ``lists`` with a click: the mean share
    of a list's clicked items among the N nearest items to its query's embedding, for each N of ``ns``. The
    semantic part of search retrieval only (the query statistics' clicked items and popular items are added to it
    when served, docs/retrieval.md)."""
    settings = RetrievalSettings.from_json((out / SETTINGS_FILE).read_text())
    vectors = np.load(out / ITEM_EMBEDDINGS_FILE, mmap_mode="r")
    index = ItemIndex.load(out, settings, vectors)
    top = min(max(ns), item_count(vectors))
    clicked: dict[int, list[np.ndarray]] = {}
    for s in lists.tolist():
        q = int(shop.session_query[s])
        a, b = shop.session_offsets[s], shop.session_offsets[s + 1]
        hit = shop.imp_item[a:b][shop.imp_click[a:b] > 0]
        if q >= 0 and hit.size:
            clicked.setdefault(q, []).append(hit)
    recalls: dict[int, list[float]] = {n: [] for n in ns}
    for q, hits in clicked.items():
        rows = index.search(query_emb[q : q + 1].astype(np.float32), top)[0].ravel()
        rank = {int(r): i for i, r in enumerate(rows.tolist())}
        for hit in hits:
            where = np.array([rank.get(int(i), top) for i in hit])
            for n in ns:
                recalls[n].append(float((where < n).mean()))
    return {
        "lists": sum(len(h) for h in clicked.values()),
        **{f"recall@{n}": round(float(np.mean(v)), 4) for n, v in recalls.items() if v},
    }


def write(
    embeddings: np.ndarray,
    samples: dict[str, np.ndarray],
    bought: Purchases | None,
    out: Path,
    kind: str = "auto",
    candidates: int = 300,
    recall_target: float = 0.95,
    nlist: int | None = None,
    popular_share: float = 0.5,
    embedding_dtype: str = "float32",
    search: dict | None = None,
) -> dict:
    """Build, measure and write ``items.faiss``, ``retrieval.json``, ``item_embeddings.npy`` (the served
    table, ``embedding_dtype``) and ``purchases.npz`` (when ``bought``) into ``out``. ``search``: the
    settings of behavioural retrieval (search: ``behaviour_share``, ``category_boost``; recommendations:
    ``covisit_share``)."""
    faiss = faiss_module()
    n = item_count(embeddings)
    kind = choose_kind(n, kind)
    nlist = nlist or choose_nlist(n)
    out.mkdir(parents=True, exist_ok=True)
    served = write_table(embeddings, out / ITEM_EMBEDDINGS_FILE, embedding_dtype)
    start = time.perf_counter()
    index = build_index(embeddings, kind, nlist)
    built_s = time.perf_counter() - start
    measured: dict = {
        "items": n,
        "build_seconds": round(built_s, 2),
        "faiss": faiss.__version__,
        "embedding_dtype": embedding_dtype,
    }
    nprobe = 1
    if kind == "ivf":
        chosen = choose_nprobe(index, embeddings, samples, candidates, recall_target, served)
        nprobe = chosen["nprobe"]
        measured.update(nlist=nlist, **chosen)
        logger.info(f"  ivf: {nlist} lists, nprobe {nprobe}: " + json.dumps(chosen["tried"][-1]))
    else:
        measured["recall"] = "1.0 (exact)"
    tmp = out / f".{INDEX_FILE}.tmp"
    faiss.write_index(index, str(tmp))
    tmp.replace(out / INDEX_FILE)
    if bought is not None:
        bought.save(out / PURCHASES_FILE)
    settings = RetrievalSettings(
        kind=kind,
        candidates=candidates,
        nprobe=nprobe,
        popular_share=popular_share,
        measured=measured,
        **(search or {}),
    )
    (out / SETTINGS_FILE).write_text(settings.to_json())
    logger.info(f"  retrieval index: {kind}, {n:,} items, built in {built_s:.1f} s")
    return {"kind": kind, "nprobe": nprobe, **measured}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m builders.learning.retrieval", description=__doc__.split("\n")[0])
    p.add_argument("--embeddings", required=True, type=Path, help="items.npy [I+1, D] (last row: unknown item)")
    p.add_argument("--queries", type=Path, help="queries.npy: a sample of them measures recall@N")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--kind", default="auto", choices=("auto", "flat", "ivf"))
    p.add_argument("--candidates", type=int, default=300)
    p.add_argument("--nlist", type=int)
    p.add_argument("--recall-target", type=float, default=0.95)
    p.add_argument("--embedding-dtype", default="float16", choices=("float16", "float32"))
    args = p.parse_args(argv)
    emb = np.load(args.embeddings, mmap_mode="r")
    samples = {"items": sample_rows(emb[:-1], SAMPLE_QUERIES, 0)}
    if args.queries:
        samples["queries"] = sample_rows(np.load(args.queries, mmap_mode="r"), SAMPLE_QUERIES, 1)
    report = write(
        emb,
        samples,
        None,
        args.out,
        args.kind,
        args.candidates,
        args.recall_target,
        args.nlist,
        embedding_dtype=args.embedding_dtype,
    )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

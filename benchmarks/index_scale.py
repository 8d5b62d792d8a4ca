"""The retrieval index at catalogue sizes (``python -m benchmarks.index_scale``): build time, recall@N vs
exact, search p50/p99 and memory, per size, in one run on one machine.

Catalogues larger than the demo have no titles worth encoding on 2 cores, so their embeddings are
generated: each is one of the small demo shop's real title embeddings plus Gaussian noise (norm 0.33),
renormalised, which keeps neighbourhoods as tight as real text's (mean best-neighbour cosine 0.87 at 50k
vs 0.91 among the demo's 2,000 real titles). Queries are the demo shop's real query embeddings.
Only the retrieval stage is measured here (``ItemIndex.search`` with its exact re-scoring, one thread,
as a served instance runs it); ``benchmarks.server_scale`` measures the whole server.

What the re-scoring table costs: recall@N vs exact (float32) search of the same index re-scored with the
float32 table, with the float16 table the build serves by default, and not re-scored at all (the 8-bit
codes alone: what an int8 table would give, with no table beside the index).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from builders.learning import retrieval as rt
from runtime import cli_logging
from runtime.retrieval import SETTINGS_FILE, ItemIndex, RetrievalSettings
from runtime.scoring import load_item_embeddings

NOISE = 0.33


def generate(n: int, base: np.ndarray, path: Path, seed: int = 0) -> None:
    """``n`` synthetic title embeddings (+ the unknown item's zero row) written chunk by chunk."""
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    out = open_memmap(path, mode="w+", dtype=np.float32, shape=(n + 1, dim))
    for a in range(0, n, rt.CHUNK):
        b = min(a + rt.CHUNK, n)
        x = base[rng.integers(0, len(base), b - a)] + (NOISE / np.sqrt(dim)) * rng.normal(size=(b - a, dim))
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out[n] = 0
    out.flush()


def catalogue(n: int, work: Path, base: np.ndarray, queries: np.ndarray, candidates: int) -> tuple:
    """A generated catalogue of ``n`` items (its embeddings cached in ``work``) and its retrieval folder as the
    build writes it: ``(embeddings, folder, query samples, the build's report)``."""
    path = work / f"items_{n}.npy"
    if not path.exists():
        generate(n, base, path)
    emb = np.load(path, mmap_mode="r")
    folder = work / f"index_{n}"
    samples = {"queries": rt.sample_rows(queries, rt.SAMPLE_QUERIES, 1)}
    report = rt.write(emb, samples, None, folder, candidates=candidates, embedding_dtype="float16")
    return emb, folder, samples, report


def search_times(search: Callable[[np.ndarray], object], vectors: np.ndarray, count: int) -> list[float]:
    """Milliseconds of ``count`` calls of ``search`` on ``vectors`` (cycled), after one warm-up call."""
    search(vectors[0])
    times = []
    for i in range(count):
        start = time.perf_counter()
        search(vectors[i % len(vectors)])
        times.append((time.perf_counter() - start) * 1e3)
    return times


def percentiles(times: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``times`` (ms), rounded to 0.01 ms."""
    return round(float(np.percentile(times, 50)), 2), round(float(np.percentile(times, 99)), 2)


def measure(n: int, work: Path, base: np.ndarray, queries: np.ndarray, candidates: int) -> dict:
    emb, folder, samples, report = catalogue(n, work, base, queries, candidates)
    path = work / f"items_{n}.npy"
    settings = RetrievalSettings.from_json((folder / SETTINGS_FILE).read_text())
    served = load_item_embeddings(folder)  # float16
    exact = rt.exact_top(emb, samples["queries"], candidates)
    by_table = {}
    for name, vectors in (("fp32", np.asarray(emb)), ("fp16", served), ("8-bit codes only", None)):
        scored = ItemIndex.load(folder, settings, vectors)  # vectors None: the 8-bit scores order the rows
        by_table[name] = round(rt.recall_at(scored, exact, samples["queries"], candidates), 4)
    index = ItemIndex.load(folder, settings, served)
    rt.faiss_module(1)
    times = search_times(lambda q: index.search(q, candidates), queries, min(500, len(queries)))
    return {
        "items": n,
        "kind": report["kind"],
        "nlist": report.get("nlist"),
        "nprobe": report["nprobe"],
        "build_s": report["build_seconds"],
        "recall": report.get("tried", [{}])[-1].get(f"recall@{candidates}_queries", 1.0),
        "recall_by_table": by_table,
        "search_p50_ms": round(float(np.percentile(times, 50)), 3),
        "search_p99_ms": round(float(np.percentile(times, 99)), 3),
        "index_mb": round((folder / "items.faiss").stat().st_size / 2**20, 1),
        "embeddings_mb": round(path.stat().st_size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m benchmarks.index_scale", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="50000,1000000")
    p.add_argument("--work", type=Path, default=Path("build/scale"))
    p.add_argument("--embeddings", type=Path, default=Path("build/small/embeddings"))
    p.add_argument("--candidates", type=int, default=300)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    base = np.load(args.embeddings / "items.npy")[:-1]
    queries = np.load(args.embeddings / "queries.npy")
    rows = [measure(int(n), args.work, base, queries, args.candidates) for n in args.sizes.split(",")]
    print(
        f"machine: {platform.node()}, {platform.machine()}; peak RSS of this process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MB"
    )
    print(
        "| items | index | nprobe | build s | recall@N vs exact, re-scored fp32 / fp16 / 8-bit only | "
        "search p50 ms | p99 ms | index MB | fp32 emb MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        kind = r["kind"] + (f" ({r['nlist']} lists)" if r["nlist"] else "")
        print(
            f"| {r['items']:,} | {kind} | {r['nprobe']} | {r['build_s']} | "
            f"{' / '.join(str(v) for v in r['recall_by_table'].values())} | "
            f"{r['search_p50_ms']} | {r['search_p99_ms']} | {r['index_mb']} | {r['embeddings_mb']} |"
        )
    (args.work / "index_scale.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

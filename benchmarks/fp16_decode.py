"""Benchmark: retrieval's exact re-scoring with the float16 rows decoded by numpy's cast, by FAISS's fp16 codec
or by ONNX Runtime's ``Cast`` (``runtime/half.py:rows_float32``, what serves), side by side on the same rows and
the same searches.

``python -m benchmarks.fp16_decode [--repo build/default/bench_repo] [--requests 300] [--rounds 3]``
(``make bench-fp16-decode``)

Two measurements, alternated ``--rounds`` times:

* the decode alone: 1,600 random rows of the build's item table (what one ``search_catalog`` fetch
  re-scores), and 300 (one request's candidates, as topk and the co-visitation similarity read them);
  every decoder must agree with numpy's ``astype(float32)`` bit for bit;
* ``Retriever.search`` of ``search_catalog`` (the default build's retrieval, in process, one thread) on
  ``--requests`` unique queries, with each decoder.

Not a test: nothing asserts but the equality of the decoded rows.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peer import plan
from benchmarks.pipeline import machine
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import retrieval as rt
from runtime.arrays import Array
from runtime.half import rows_float32
from runtime.retrieval import faiss_module


def numpy_rows(table: Array, rows: Array) -> Array:
    return np.asarray(table[rows], np.float32)


@functools.lru_cache(maxsize=4)
def fp16_codec(dim: int) -> Any:
    faiss = faiss_module()
    return faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)


def faiss_rows(table: Array, rows: Array) -> Array:
    """FAISS's fp16 codec (``ScalarQuantizer`` QT_fp16, made once per width) over the gathered rows."""
    got = np.ascontiguousarray(table[rows])
    out: Array = fp16_codec(got.shape[1]).decode(got.view(np.uint8))
    return out


DECODERS = {"numpy cast": numpy_rows, "FAISS fp16 codec": faiss_rows, "ONNX Runtime Cast (served)": rows_float32}


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path("build/default/bench_repo"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    pipeline = InProcessPipeline(args.repo)
    retriever = pipeline.retriever(False)
    table = retriever.item_embeddings
    rng = np.random.default_rng(0)
    row_sets = {n: np.sort(rng.choice(len(table) - 1, n, replace=False)).astype(np.int64) for n in (1600, 300)}
    for name, fn in DECODERS.items():
        for rows in row_sets.values():
            if not np.array_equal(fn(table, rows).view(np.uint32), numpy_rows(table, rows).view(np.uint32)):
                print(f"error: {name} and numpy's cast disagree", file=sys.stderr)
                return 1
    reqs = plan(pipeline, args.requests)["search_catalog"][: args.requests]
    searches = [
        (
            np.array([r["user_id"]], np.int64),
            np.array([r["query"].encode()], object),
            pipeline.query_embedding(r["query"]),
        )
        for r in reqs
    ]
    none = np.zeros(0, np.int64)

    def search_all() -> None:
        for user, query, emb in searches:
            retriever.search(user, query, emb, none)

    decode: dict[str, dict[int, list[float]]] = {name: {n: [] for n in row_sets} for name in DECODERS}
    search: dict[str, list[float]] = {name: [] for name in DECODERS}
    original = rt.rows_float32
    try:
        for _ in range(args.rounds):
            for name, fn in DECODERS.items():
                for n, rows in row_sets.items():
                    decode[name][n].append(timed(functools.partial(fn, table, rows), 200))
                rt.rows_float32 = fn
                search[name].append(timed(search_all, 1) / len(searches))
    finally:
        rt.rows_float32 = original
    print(f"{machine()}; {args.repo}, {len(table) - 1} items; median of {args.rounds} alternated rounds")
    print("| decoder | 1,600 rows decoded | 300 rows decoded | search_catalog retrieval per request |")
    print("|---|---|---|---|")
    for name in DECODERS:
        d = decode[name]
        print(
            f"| {name} | {np.median(d[1600]):.3f} ms | {np.median(d[300]):.3f} ms | {np.median(search[name]):.2f} ms |"
        )
    base = "numpy cast"
    for name in list(DECODERS)[1:]:
        ratios = [np.median(decode[name][n]) / np.median(decode[base][n]) for n in row_sets]
        print(
            f"{name} / numpy: decode {ratios[0]:.2f}x (1,600 rows), {ratios[1]:.2f}x (300), "
            f"retrieval {np.median(search[name]) / np.median(search[base]):.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: retrieval's exact re-scoring with the float16 rows decoded by numpy's cast or by FAISS's fp16
codec (``runtime/retrieval.py:rows_float32``), side by side on the same rows and the same searches.

``python -m benchmarks.fp16_decode [--repo build/default/bench_repo] [--requests 300] [--rounds 3]``
(``make bench-fp16-decode``)

Two measurements, alternated ``--rounds`` times:

* the decode alone: 1,600 random rows of the build's item table (what one ``search_catalog`` fetch
  re-scores), numpy's ``astype(float32)`` against the codec; the two must agree bit for bit;
* ``Retriever.search`` of ``search_catalog`` (the default build's retrieval, in process, one thread) on
  ``--requests`` unique queries, with either decoder.

Not a test: nothing asserts but the equality of the decoded rows.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.peer import plan
from benchmarks.pipeline import machine
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import retrieval as rt
from runtime.arrays import Array


def numpy_rows(table: Array, rows: Array) -> Array:
    return np.asarray(table[rows], np.float32)


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
    rows = np.sort(np.random.default_rng(0).choice(len(table) - 1, 1600, replace=False)).astype(np.int64)
    if not np.array_equal(rt.rows_float32(table, rows).view(np.uint32), numpy_rows(table, rows).view(np.uint32)):
        print("error: the fp16 codec and numpy's cast disagree", file=sys.stderr)
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

    decoders = {"numpy cast": numpy_rows, "FAISS fp16 codec": rt.rows_float32}
    decode: dict[str, list[float]] = {name: [] for name in decoders}
    search: dict[str, list[float]] = {name: [] for name in decoders}
    original = rt.rows_float32
    try:
        for _ in range(args.rounds):
            for name, fn in decoders.items():
                decode[name].append(timed(functools.partial(fn, table, rows), 200))
                rt.rows_float32 = fn
                search[name].append(timed(search_all, 1) / len(searches))
    finally:
        rt.rows_float32 = original
    print(f"{machine()}; {args.repo}, {len(table) - 1} items; median of {args.rounds} alternated rounds")
    print("| decoder | 1,600 rows decoded | search_catalog retrieval per request |")
    print("|---|---|---|")
    for name in decoders:
        print(f"| {name} | {np.median(decode[name]):.3f} ms | {np.median(search[name]):.2f} ms |")
    ratio = np.median(search["FAISS fp16 codec"]) / np.median(search["numpy cast"])
    print(
        f"codec / numpy: decode {np.median(decode['FAISS fp16 codec']) / np.median(decode['numpy cast']):.2f}x, "
        f"retrieval {ratio:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What one query costs the text encoder against its padded length: why queries are padded to buckets where
Triton batches them, and not where a query is encoded alone.

1. The exported encoder (ONNX Runtime, as the ``text_encoder`` model runs it) on one query padded to 8, 16
   and 32 tokens, with 1 and 2 intra-op threads, and per query in a batch of 8; the same inputs in
   alternating order, median of the rounds.
2. With ``--repo``: the benchmark queries of ``make bench-peer`` (``benchmarks.peer.plan``) on that
   repository's encoder, each query's tokens padded to the batcher's buckets (``QUERY_PAD_MULTIPLE``, the
   ensemble layout's ``query_tokens``) and at its own length (``ONE_QUERY_PAD_MULTIPLE``, the fused layout
   and the in-process pipeline), alternated query by query; mean milliseconds per query, median of the
   rounds, and how many embeddings are the same bit for bit.

Prints markdown tables naming the machine.

``python -m benchmarks.encoder_length [--onnx build/encoder/model.onnx] [--repo build/small/bench_repo]``;
``make bench-encoder-length``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.peer import plan
from benchmarks.pipeline import machine
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import contract as c
from runtime.contract import ATTENTION_MASK, INPUT_IDS
from runtime.ort_runner import make_session
from runtime.text import QueryTokens

LENGTHS = (8, 16, 32)
REPO_ROOT = Path(__file__).resolve().parent.parent


def per_query_ms(session, length: int, batch: int, calls: int) -> float:
    """Mean milliseconds per query over ``calls`` runs of a ``batch`` of queries ``length`` tokens long."""
    ids = np.full((batch, length), 2000, np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    feeds = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    session.run(None, feeds)  # warm up this shape
    start = time.perf_counter()
    for _ in range(calls):
        session.run(None, feeds)
    return (time.perf_counter() - start) * 1000 / calls / batch


def measure(onnx: Path, calls: int, rounds: int) -> dict[tuple[int, str], float]:
    sessions = {threads: make_session(str(onnx), intra_op_threads=threads) for threads in (1, 2)}
    cases = [(1, 1, "1 thread"), (2, 1, "2 threads"), (2, 8, "2 threads, per query in a batch of 8")]
    runs: dict[tuple[int, str], list[float]] = {}
    for r in range(rounds):
        order = cases if r % 2 == 0 else cases[::-1]  # alternate, so drift does not favour one case
        for length in LENGTHS:
            for threads, batch, label in order:
                ms = per_query_ms(sessions[threads], length, batch, max(1, calls // batch))
                runs.setdefault((length, label), []).append(ms)
    return {key: statistics.median(values) for key, values in runs.items()}


PADDINGS = {
    "padded to a multiple of 4 (ensemble layout)": c.QUERY_PAD_MULTIPLE,
    "own length (fused)": c.ONE_QUERY_PAD_MULTIPLE,
}


def query_tokens(repo: Path, n: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """The tokens of ``n`` search and ``n`` catalogue-search queries of ``make bench-peer``, by padding."""
    requests = plan(InProcessPipeline(repo), n)
    queries = [r["query"] for name in ("search", "search_catalog") for r in requests[name][:n]]
    out = {}
    for label, multiple in PADDINGS.items():
        tokens = QueryTokens.load(repo / c.QUERY_TOKENIZER / "1", pad_multiple=multiple)
        out[label] = [tokens.tokens(np.array([q.encode()], object)) for q in queries]
    return out


def measure_queries(repo: Path, n: int, rounds: int) -> dict:
    """Per thread count: mean ms per query for each padding (median of ``rounds``, the paddings alternated query
    by query, the order reversed every other query), the same-bits count, and the mean lengths."""
    feeds = query_tokens(repo, n)
    labels = list(PADDINGS)
    onnx = str(repo / c.TEXT_ENCODER / "1" / "model.onnx")
    out: dict = {
        "queries": len(feeds[labels[0]]),
        "lengths": {lb: float(np.mean([f[INPUT_IDS].shape[1] for f in feeds[lb]])) for lb in labels},
    }
    for threads in (1, 2):
        session = make_session(onnx, intra_op_threads=threads)
        same = sum(
            np.array_equal(session.run(None, a)[0], session.run(None, b)[0])
            for a, b in zip(feeds[labels[0]], feeds[labels[1]], strict=True)
        )
        runs: dict[str, list[float]] = {lb: [] for lb in labels}
        for _ in range(rounds):
            spent = dict.fromkeys(labels, 0.0)
            for i in range(out["queries"]):
                for lb in labels if i % 2 == 0 else labels[::-1]:
                    t0 = time.perf_counter()
                    session.run(None, feeds[lb][i])
                    spent[lb] += time.perf_counter() - t0
            for lb in labels:
                runs[lb].append(spent[lb] * 1000 / out["queries"])
        out[threads] = {"ms": {lb: statistics.median(v) for lb, v in runs.items()}, "same": same}
    return out


def queries_table(results: dict) -> str:
    labels = list(PADDINGS)
    n = results["queries"]
    lines = [
        "| encoder threads | "
        + " | ".join(f"{lb}: mean {results['lengths'][lb]:.1f} tokens" for lb in labels)
        + " | own length / padded | same embedding, bit for bit |",
        "|---" * (len(labels) + 3) + "|",
    ]
    for threads in (1, 2):
        ms = results[threads]["ms"]
        cells = " | ".join(f"{ms[lb]:.2f} ms" for lb in labels)
        lines.append(f"| {threads} | {cells} | {ms[labels[1]] / ms[labels[0]]:.2f}x | {results[threads]['same']}/{n} |")
    return "\n".join(lines)


def table(results: dict[tuple[int, str], float]) -> str:
    labels = list(dict.fromkeys(label for _, label in results))
    lines = ["| padded length | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for length in LENGTHS:
        lines.append(f"| {length} tokens | " + " | ".join(f"{results[(length, lb)]:.2f} ms" for lb in labels) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=REPO_ROOT / "build" / "encoder" / "model.onnx")
    parser.add_argument("--calls", type=int, default=64, help="queries per case and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repo", type=Path, help="a built repository: its benchmark queries padded and not")
    parser.add_argument("--queries", type=int, default=300, help="of each of search and search_catalog")
    args = parser.parse_args(argv)
    if not args.onnx.exists():
        print(f"error: {args.onnx} is missing: build first (make build PROFILE=small)")
        return 1
    results = measure(args.onnx, args.calls, args.rounds)
    print(f"Measured {date.today()} on {machine()}; `make bench-encoder-length`:")
    print(table(results))
    if args.repo is not None:
        print(
            f"\nThe benchmark queries of {args.repo} (`make bench-peer`'s), one at a time, padded and at their own "
            f"length, alternated; mean per query, median of {args.rounds} rounds:"
        )
        print(queries_table(measure_queries(args.repo, args.queries, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

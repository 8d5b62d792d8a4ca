"""What one query costs the text encoder against its padded length: why queries are padded to buckets.

The exported encoder (ONNX Runtime, as the ``text_encoder`` model runs it) on one query padded to 8, 16
and 32 tokens, with 1 and 2 intra-op threads, and per query in a batch of 8; the same inputs in
alternating order, median of the rounds. Prints a markdown table naming the machine.

``python -m benchmarks.encoder_length [--onnx build/encoder/model.onnx]``; ``make bench-encoder-length``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine
from runtime import cli_logging
from runtime.contract import ATTENTION_MASK, INPUT_IDS
from runtime.ort_runner import make_session

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
    args = parser.parse_args(argv)
    if not args.onnx.exists():
        print(f"error: {args.onnx} is missing: build first (make build PROFILE=small)")
        return 1
    results = measure(args.onnx, args.calls, args.rounds)
    print(f"Measured {date.today()} on {machine()}; `make bench-encoder-length`:")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

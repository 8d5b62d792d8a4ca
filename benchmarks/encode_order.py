"""What a build's title encoding costs in the catalogue's order against in order of token length.

``runtime/encoder.py`` runs a window of texts sorted by token length, so each batch pads to about its own
texts' length. Here the same titles go through the same session both ways, the ways alternated each round
and the order reversed every other round: in arrival order (each batch of ``--batch`` titles padded to its
longest, what the encoder did before), and as the build runs them now. Prints titles/s of each, the ratio,
the padded tokens of each and the largest difference between the two embeddings, naming the machine; with
``--doc``, writes the table into that file's ``encode-order`` section.

``python -m benchmarks.encode_order [--items build/default/demo_data/items.parquet] [--n 8192]``;
``make bench-encode-order``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.pipeline import machine, write_section
from builders.learning.text_encoder import _tokenizer
from runtime import cli_logging
from runtime.encoder import OnnxTextEncoder

REPO_ROOT = Path(__file__).resolve().parent.parent
WAYS = ("catalogue order", "sorted by token length")


def titles(items: Path, n: int, column: str = "title") -> list[str]:
    table = pq.read_table(items, columns=[column])
    return [str(t) for t in table.column(column).to_pylist()[:n]]


def run(enc: OnnxTextEncoder, texts: list[str], batch: int, way: str) -> np.ndarray:
    """The embeddings of ``texts``: ``way`` is one of ``WAYS``. Arrival order hands the encoder one batch at a
    time, which it cannot reorder beyond the batch."""
    out = np.empty((len(texts), enc.dim), np.float32)
    if way == WAYS[1]:
        enc.into(out, texts, batch, progress=False)
    else:
        for start in range(0, len(texts), batch):
            enc.into(out[start : start + batch], texts[start : start + batch], batch, progress=False)
    return out


def padded_tokens(lengths: np.ndarray, batch: int, way: str) -> int:
    """Tokens the encoder runs (each batch as wide as its longest text), ``way`` one of ``WAYS``."""
    ordered = np.sort(lengths, kind="stable") if way == WAYS[1] else lengths
    return sum(int(ordered[a : a + batch].max()) * len(ordered[a : a + batch]) for a in range(0, len(ordered), batch))


def measure(texts: list[str], onnx: Path, tokens: int, batch: int, rounds: int) -> dict:
    enc = OnnxTextEncoder(onnx, tokens, _tokenizer(None))
    lengths = enc.tok.encode(texts)[1].sum(axis=1)
    seconds: dict[str, list[float]] = {w: [] for w in WAYS}
    results = {}
    for r in range(rounds):
        for way in WAYS if r % 2 == 0 else WAYS[::-1]:
            t0 = time.perf_counter()
            results[way] = run(enc, texts, batch, way)
            seconds[way].append(time.perf_counter() - t0)
    per_s = {w: len(texts) / statistics.median(s) for w, s in seconds.items()}
    a, b = results[WAYS[0]], results[WAYS[1]]
    return {
        "per_s": per_s,
        "rounds": {w: [round(len(texts) / s) for s in v] for w, v in seconds.items()},
        "tokens": {w: padded_tokens(lengths, batch, w) for w in WAYS},
        "real_tokens": int(lengths.sum()),
        "lengths": [int(x) for x in np.percentile(lengths, [5, 50, 95, 100])],
        "max_abs_diff": float(np.abs(a - b).max()),
        "same_rows": int((a == b).all(axis=1).sum()),
    }


def table(res: dict, n: int, batch: int, rounds: int, items: Path, command: str) -> str:
    lo, mid, hi, top = res["lengths"]
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; the first {n:,} titles of `{items}` "
        f"(tokens: median {mid}, 5th-95th percentile {lo}-{hi}, longest {top}), batches of {batch}, the two ways "
        f"alternated, {rounds} rounds, the median (`{command}`; `make bench-encode-order` on the demo).",
        "",
        "| way | titles/s | each round | tokens run (padding included) |",
        "|---|---|---|---|",
    ]
    for w in WAYS:
        each = ", ".join(f"{x:,}" for x in res["rounds"][w])
        lines.append(f"| {w} | {res['per_s'][w]:,.0f} | {each} | {res['tokens'][w]:,} |")
    ratio = res["per_s"][WAYS[1]] / res["per_s"][WAYS[0]]
    lines += [
        "",
        f"Sorted / catalogue order: **{ratio:.2f}x** the titles per second; {res['real_tokens']:,} tokens without "
        f"padding. The two ways' embeddings differ by at most {res['max_abs_diff']:.1e} "
        f"({res['same_rows']:,} of {n:,} rows the same bit for bit).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=Path, default=REPO_ROOT / "build" / "default" / "demo_data" / "items.parquet")
    ap.add_argument("--onnx", type=Path, default=REPO_ROOT / "build" / "encoder" / "model.onnx")
    ap.add_argument("--column", default="title", help="the items file's title column (a shop's config maps it)")
    ap.add_argument("--n", type=int, default=8192, help="titles (the first n of the file)")
    ap.add_argument("--tokens", type=int, default=32, help="the build's encoder.title_tokens")
    ap.add_argument("--batch", type=int, default=256, help="the build's batch")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--doc", type=Path, default=None, help="write the table into this file's encode-order section")
    args = ap.parse_args(argv)
    for path, what in ((args.items, "items"), (args.onnx, "encoder")):
        if not path.exists():
            print(f"error: no {what} file {path}: run `make build` first (the default shop)")
            return 2
    texts = titles(args.items, args.n, args.column)
    res = measure(texts, args.onnx, args.tokens, args.batch, args.rounds)
    given = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.encode_order " + shlex.join(given) if given else "python -m benchmarks.encode_order"
    items = args.items.relative_to(REPO_ROOT) if args.items.is_relative_to(REPO_ROOT) else args.items
    text = table(res, len(texts), args.batch, args.rounds, items, command)
    print(text)
    if args.doc is not None:
        write_section(args.doc, "encode-order", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

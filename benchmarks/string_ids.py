"""What string ids (SKUs) cost per request: the chosen INT64-hash contract against BYTES ids on the wire.

Chosen: the SDK hashes each SKU to its stable INT64 (``shoprank_client.ids``), sends INT64, and the
feature model finds rows with ``searchsorted`` as for integer ids. Alternative: send the SKUs as a
BYTES tensor and look them up in a dict of bytes on the server. Both are measured on the same
requests (100 and 1,000 candidates) in one run:

* client: building the request tensors (``build_inputs`` with string vs integer candidates, and a
  raw BYTES ``InferInput`` of the SKUs), and mapping the response back to SKUs;
* server: finding the candidates' rows (``FeatureTables.item_rows`` vs a Python dict of bytes,
  after deserialising the BYTES tensor as the python backend does).

``python -m benchmarks.string_ids [--out docs/data.md]``; ``make bench-ids``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from runtime.tables import lookup_rows
from shoprank_client.ids import stable_id
from shoprank_client.protocol import build_inputs, parse_items

SIZES = (100, 1000)
CATALOGUE = 50_000


def per_call_us(fn, args, rounds: int = 5) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for a in args:
            fn(*a)
        out.append((time.perf_counter() - start) / len(args) * 1e6)
    return statistics.median(out)


def measure(n_requests: int = 200) -> dict:
    from tritonclient.grpc import InferInput
    from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

    rng = np.random.default_rng(0)
    skus = [f"SKU-{i:06d}-{rng.choice(['S', 'M', 'L', 'XL'])}" for i in range(CATALOGUE)]
    ids = np.array([stable_id(s) for s in skus], np.int64)
    order = np.argsort(ids)
    sorted_ids, rows_of_sorted = ids[order], order.astype(np.int64)

    def item_rows(arr: np.ndarray) -> np.ndarray:  # what FeatureTables.item_rows runs, without the other tables
        return lookup_rows(sorted_ids, rows_of_sorted, arr)

    row_of_sku = {s.encode(): i for i, s in enumerate(skus)}
    out: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "catalogue": CATALOGUE,
        "requests": n_requests,
    }
    scores = np.linspace(1, 0, 10, dtype=np.float32)
    for n in SIZES:
        picks = [rng.choice(CATALOGUE, n, replace=False) for _ in range(n_requests)]
        as_str = [([skus[i] for i in p],) for p in picks]
        as_int = [(ids[p].tolist(),) for p in picks]
        as_bytes = [(np.array([skus[i].encode() for i in p], dtype=np.object_),) for p in picks]
        wire = [(serialize_byte_tensor(b[0]).item(),) for b in as_bytes]
        as_arr = [(ids[p],) for p in picks]

        def bytes_input(arr):
            inp = InferInput("ITEM_IDS", [len(arr)], "BYTES")
            inp.set_data_from_numpy(arr)
            return inp

        keys = [build_inputs(1, s[0], 10)[2] or {} for s in as_str]  # string candidates: never None
        tops = [(np.array(list(k)[:10], np.int64), k) for k in keys]

        def cold(c):
            stable_id.cache_clear()  # every SKU seen for the first time: the hash is computed
            return build_inputs(1, c, 10)

        r = {
            "sdk_build_int_us": per_call_us(lambda c: build_inputs(1, c, 10), as_int),
            "sdk_build_str_cold_us": per_call_us(cold, as_str),
            "sdk_build_str_us": per_call_us(lambda c: build_inputs(1, c, 10), as_str),
            "bytes_input_us": per_call_us(bytes_input, as_bytes),
            "sdk_parse_int_us": per_call_us(lambda t, k: parse_items(t, scores), tops),
            "sdk_parse_str_us": per_call_us(lambda t, k: parse_items(t, scores, k), tops),
            "server_rows_int64_us": per_call_us(item_rows, as_arr),
            "server_rows_bytes_us": per_call_us(
                lambda raw: [row_of_sku.get(s, -1) for s in deserialize_bytes_tensor(raw)], wire
            ),
            "wire_int64_bytes": 8 * n,
            "wire_bytes_bytes": int(np.mean([len(w[0]) for w in wire])),
        }
        r["hash_cost_us"] = (
            r["sdk_build_str_us"] - r["sdk_build_int_us"] + r["sdk_parse_str_us"] - r["sdk_parse_int_us"]
        )
        r["hash_cold_cost_us"] = (
            r["sdk_build_str_cold_us"] - r["sdk_build_int_us"] + r["sdk_parse_str_us"] - r["sdk_parse_int_us"]
        )
        r["bytes_cost_us"] = (
            r["bytes_input_us"] - r["sdk_build_int_us"] + r["server_rows_bytes_us"] - r["server_rows_int64_us"]
        )
        out[n] = r
    return out


def table(res: dict) -> str:
    lines = [
        f"Measured on {res['machine']}, catalogue of {res['catalogue']:,} SKUs, {res['requests']} requests "
        f"per size, median of 5 rounds (`make bench-ids`).",
        "",
        "| per request | 100 candidates | 1,000 candidates |",
        "|---|---|---|",
    ]
    rows = [
        ("SDK builds the request, integer ids", "sdk_build_int_us"),
        ("SDK builds the request, string SKUs, each hashed (first sight)", "sdk_build_str_cold_us"),
        ("SDK builds the request, string SKUs seen before (LRU cache)", "sdk_build_str_us"),
        ("raw BYTES `InferInput` of the SKUs", "bytes_input_us"),
        ("SDK maps the top-10 back (integer / string)", None),
        ("server finds the rows, INT64 (`searchsorted`)", "server_rows_int64_us"),
        ("server finds the rows, BYTES (deserialise + dict)", "server_rows_bytes_us"),
        ("**added by string ids, INT64 hash (chosen), SKUs seen before**", "hash_cost_us"),
        ("**added by string ids, INT64 hash (chosen), first sight**", "hash_cold_cost_us"),
        ("**added by string ids, BYTES on the wire**", "bytes_cost_us"),
    ]
    for label, key in rows:
        if key is None:
            cells = [f"{res[n]['sdk_parse_int_us']:.1f} / {res[n]['sdk_parse_str_us']:.1f} µs" for n in SIZES]
        else:
            cells = [f"{res[n][key]:.1f} µs" for n in SIZES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| request payload of the ids (INT64 / BYTES) | "
        + " | ".join(f"{res[n]['wire_int64_bytes']:,} / {res[n]['wire_bytes_bytes']:,} B" for n in SIZES)
        + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="replace the marked section of this markdown file")
    args = parser.parse_args(argv)
    text = table(measure(args.requests))
    print(text)
    if args.out:
        begin, end = "<!-- bench-ids:begin -->", "<!-- bench-ids:end -->"
        doc = args.out.read_text()
        if begin in doc and end in doc:
            doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end) :]
            args.out.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the client SDK's overhead per call against raw ``tritonclient`` on the same requests.

``python -m benchmarks.client_overhead --repo build/small/repo --out docs/benchmarks.md``

Two measurements in one run, against one real tritonserver:

1. **End to end, interleaved.** For each prepared request, one raw ``tritonclient`` call and one SDK
   call, sequentially, the order alternating. The second call of a pair meets a warmer server, so the
   estimate is the mean of the two orders' median differences (SDK - raw), which cancels that. The
   same run with two raw clients (an A/A test) gives the noise floor of this estimate. The SDK is
   measured in its default mode and with ``cancel_grace_s=0`` (exact gRPC deadlines, blocking RPC).
2. **Client-side work alone.** The SDK's own work around the RPC, timed without the RPC: validation and
   tensor building (vs the raw client's tensor building), the call plan (deadline, endpoint choice),
   and turning the response into typed results (vs ``as_numpy``). Response parsing uses a real
   response from the server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, write_section
from runtime import cli_logging
from runtime.tables import STORE_DIR, FeatureTables
from server.launcher import ServerOptions, TritonServer
from server.raw_requests import request_inputs
from shoprank_client import RankingClient
from shoprank_client.core import CallPlan
from shoprank_client.protocol import build_inputs, parse_items


def prepared_requests(repo: Path, n: int, candidates: int) -> list[tuple[int, str, list[int], int]]:

    tables = FeatureTables.load(repo / "search_features" / "1" / STORE_DIR)
    rng = np.random.default_rng(0)
    queries = ["wireless headphones", "red running shoes", "laptop 16gb", "waterproof tent", "yoga mat"]
    return [
        (
            int(rng.choice(tables.user_ids_sorted)),
            queries[i % len(queries)],
            [int(x) for x in rng.choice(tables.item_ids_sorted, size=candidates, replace=False)],
            10,
        )
        for i in range(n)
    ]


def per_call_us(fn, args_list, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for args in args_list:
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / len(args_list) * 1e6)
    return best


def interleaved(base, other, reqs) -> tuple[float, float, float]:
    """Median latency of ``base`` and ``other`` (us) and the order-balanced paired difference."""
    base_t: list[float] = []
    other_t: list[float] = []
    diffs: dict[int, list[float]] = {0: [], 1: []}
    for i, r in enumerate(reqs):
        order = (base, other) if i % 2 == 0 else (other, base)
        times = {}
        for fn in order:
            t0 = time.perf_counter()
            fn(*r)
            times[fn] = (time.perf_counter() - t0) * 1e6
        base_t.append(times[base])
        other_t.append(times[other])
        diffs[i % 2].append(times[other] - times[base])
    balanced = (statistics.median(diffs[0]) + statistics.median(diffs[1])) / 2
    return statistics.median(base_t), statistics.median(other_t), balanced


def run(repo: Path, n: int, candidates: int) -> dict:
    import tritonclient.grpc as grpcclient

    reqs = prepared_requests(repo, n, candidates)
    out: dict = {"n": n, "candidates": candidates}
    with TritonServer(ServerOptions(model_repository=repo)) as server:
        raw = grpcclient.InferenceServerClient(server.grpc_url)
        sdk = RankingClient(server.grpc_url, timeout_s=10)

        def raw_call(u, q, items, k):
            res = raw.infer("search", request_inputs(u, items, k, q.encode()), client_timeout=10)
            return res.as_numpy("TOP_ITEM_IDS"), res.as_numpy("TOP_SCORES")

        def sdk_call(u, q, items, k):
            return sdk.search(u, q, items, k)

        for r in reqs[:30]:  # warm-up, and the SDK's one-time contract check
            np.testing.assert_array_equal(raw_call(*r)[0], sdk_call(*r).item_ids)
        raw2 = grpcclient.InferenceServerClient(server.grpc_url)

        def raw2_call(u, q, items, k):
            res = raw2.infer("search", request_inputs(u, items, k, q.encode()), client_timeout=10)
            return res.as_numpy("TOP_ITEM_IDS"), res.as_numpy("TOP_SCORES")

        raw2_call(*reqs[0])
        exact = RankingClient(server.grpc_url, timeout_s=10, cancel_grace_s=0)

        def exact_call(u, q, items, k):
            return exact.search(u, q, items, k)

        exact_call(*reqs[0])
        out["raw_p50_us"], out["sdk_p50_us"], out["paired_diff_us"] = interleaved(raw_call, sdk_call, reqs)
        _, out["exact_p50_us"], out["exact_diff_us"] = interleaved(raw_call, exact_call, reqs)
        _, _, out["aa_diff_us"] = interleaved(raw_call, raw2_call, reqs)
        raw2.close()
        exact.close()

        # Client-side work alone, on the same requests.
        args = [(u, items, k, q) for u, q, items, k in reqs]
        out["raw_build_us"] = per_call_us(lambda u, items, k, q: request_inputs(u, items, k, q.encode()), args)
        out["sdk_build_us"] = per_call_us(lambda u, items, k, q: build_inputs(u, items, k, q), args)
        pool = sdk._pool
        out["sdk_plan_us"] = per_call_us(lambda *_: CallPlan(pool, sdk.options, None).next_endpoint(), args)
        response = raw.infer("search", request_inputs(*reqs[0][:1], reqs[0][2], reqs[0][3], reqs[0][1].encode()))
        out["raw_parse_us"] = per_call_us(
            lambda *_: (response.as_numpy("TOP_ITEM_IDS"), response.as_numpy("TOP_SCORES")), args
        )
        out["sdk_parse_us"] = per_call_us(
            lambda *_: parse_items(response.as_numpy("TOP_ITEM_IDS"), response.as_numpy("TOP_SCORES")), args
        )
        sdk.close()
        raw.close()
    out["client_side_overhead_us"] = (
        out["sdk_build_us"] - out["raw_build_us"] + out["sdk_plan_us"] + out["sdk_parse_us"] - out["raw_parse_us"]
    )
    return out


def report(r: dict, repo: Path) -> str:
    return "\n".join(
        [
            f"Machine: {machine()}",
            "",
            f"Repository: `{repo}`; {r['n']} search requests with {r['candidates']} candidates, k=10, sequential, "
            "raw and SDK calls interleaved on the same requests.",
            "",
            "| measurement | raw tritonclient | SDK | SDK overhead |",
            "|---|---|---|---|",
            f"| end to end, default (`cancel_grace_s=2`) | {r['raw_p50_us']:.0f} us | {r['sdk_p50_us']:.0f} us | "
            f"{r['paired_diff_us']:+.0f} us |",
            f"| end to end, exact deadlines (`cancel_grace_s=0`) | | {r['exact_p50_us']:.0f} us | "
            f"{r['exact_diff_us']:+.0f} us |",
            f"| end to end, raw vs raw (A/A control) | | | {r['aa_diff_us']:+.0f} us |",
            f"| validate + build tensors | {r['raw_build_us']:.1f} us | {r['sdk_build_us']:.1f} us | "
            f"{r['sdk_build_us'] - r['raw_build_us']:+.1f} us |",
            f"| call plan (deadline, endpoint) | - | {r['sdk_plan_us']:.1f} us | {r['sdk_plan_us']:+.1f} us |",
            f"| response to results | {r['raw_parse_us']:.1f} us | {r['sdk_parse_us']:.1f} us | "
            f"{r['sdk_parse_us'] - r['raw_parse_us']:+.1f} us |",
            f"| **client-side work, total** | | | **{r['client_side_overhead_us']:+.1f} us** |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    r = run(args.repo, args.requests, args.candidates)
    text = report(r, args.repo)
    print(text)
    if args.out:
        write_section(args.out, "client", text)
        print(f"written into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

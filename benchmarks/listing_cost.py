"""What a filter costs the served catalogue calls, at catalogue sizes (``python -m benchmarks.listing_cost``).

Per size, a catalogue is grown from the built small demo shop exactly as ``benchmarks.server_scale`` grows it
(generated items copy a real item's fields and title embedding, with noise, their own price and stock), and
one tritonserver serves it. The same requests (the demo's queries and users, one at a time through the SDK,
after a warm-up) go to ``search_catalog`` and ``recommend_catalog`` three ways, interleaved request by
request so that they share the machine's state:

* no filter;
* a broad filter: price below the catalogue's median (about half the items);
* a selective filter: a price band holding about 1% of the items, spread over the whole catalogue (the
  query's neighbourhood holds few of them: the exact scan of the filter's items answers it).

It prints p50/p99 per call and filter, the filters' measured shares, and how many results came back (a
selective filter must still fill the page).

    python -m benchmarks.listing_cost --sizes 50000 1000000 --requests 300
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.index_scale import percentiles
from benchmarks.server_scale import build_repository
from builders.data.dataset import ShopData
from runtime import cli_logging
from runtime import contract as c
from runtime.catalog import Catalog
from runtime.tables import STORE_DIR
from server.launcher import ServerOptions, TritonServer
from shoprank_client import RankingClient


def filters(repo: Path) -> dict[str, tuple[dict | None, float]]:
    """The three ways, each with the share of the catalogue it keeps (in stock or not)."""
    price = np.asarray(Catalog.load(repo / c.TOPK / "1", STORE_DIR).price[:-1], np.float64)
    median = float(np.median(price))
    low, high = (float(q) for q in np.quantile(price, [0.30, 0.31]))
    if low >= high:  # copied prices repeat: widen the band to the next distinct price
        high = float(price[price > low].min())
    broad = {"price": {"max": median}}
    selective = {"price": {"min": low, "max": high}}
    return {
        "none": (None, 1.0),
        "broad": (broad, float(np.mean(price < median))),
        "selective": (selective, float(np.mean((price >= low) & (price < high)))),
    }


def serve_and_measure(repo: Path, work: Path, queries: list[str], users: list[int], requests: int) -> dict:
    ways = filters(repo)
    options = ServerOptions(model_repository=repo, log_file=work / "tritonserver.log", ready_timeout_s=600)
    out: dict = {"shares": {k: round(v[1], 4) for k, v in ways.items()}}
    with TritonServer(options) as server, RankingClient(server.grpc_url, timeout_s=30) as client:
        times: dict[tuple[str, str], list[float]] = {}
        filled: dict[tuple[str, str], list[int]] = {}
        for i in range(requests + 30):
            user, query = users[i % len(users)], queries[i % len(queries)]
            names = list(ways)
            names = names[i % 3 :] + names[: i % 3]  # each way first in a third of the requests (encoder cache)
            for call in ("search_catalog", "recommend_catalog"):
                for name in names:
                    tree = ways[name][0]
                    start = time.perf_counter()
                    if call == "search_catalog":
                        result = client.search_catalog(user, query, k=10, filters=tree, understand="off")
                    else:
                        result = client.recommend_catalog(user, k=10, filters=tree)
                    if i >= 30:  # the first 30 warm the server up
                        times.setdefault((call, name), []).append((time.perf_counter() - start) * 1e3)
                        filled.setdefault((call, name), []).append(len(result.items))
        for (call, name), values in times.items():
            p50, p99 = percentiles(values)
            out[f"{call} {name}"] = {"p50_ms": p50, "p99_ms": p99, "min_results": min(filled[(call, name)])}
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| items | call | filter (share of items) | p50 ms | p99 ms | fewest results of 10 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for call in ("search_catalog", "recommend_catalog"):
            for name in ("none", "broad", "selective"):
                r = row[f"{call} {name}"]
                lines.append(
                    f"| {row['items']:,} | {call} | {name} ({row['shares'][name]:.1%}) | {r['p50_ms']:.2f} "
                    f"| {r['p99_ms']:.2f} | {r['min_results']} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--small", type=Path, default=Path("build/small"))
    ap.add_argument("--small-repo", type=Path, default=Path("build/small/bench_repo"))
    ap.add_argument("--work", type=Path, default=Path("build/listing_cost"))
    ap.add_argument("--candidates", type=int, default=300)
    args = ap.parse_args(argv)
    shop = ShopData.load(args.small / "data")
    queries = [shop.queries[q] for q in shop.session_query if q >= 0][:500]
    users = [int(u) for u in shop.user_ids[:200]]
    query_emb = np.load(args.small / "embeddings" / "queries.npy")
    rows = []
    for n in args.sizes:
        work = args.work / f"n{n}"
        built = build_repository(n, args.small, args.small_repo, work, query_emb, args.candidates)
        row = {
            "items": n,
            "index": built["kind"],
            **serve_and_measure(work / "repo", work, queries, users, args.requests),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        shutil.rmtree(work)
    print(
        f"machine: {platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'}), {args.requests} requests"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

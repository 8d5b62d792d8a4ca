"""``shoprank-rank``: rank candidates from the terminal and print a table.

    shoprank-rank --endpoint 127.0.0.1:8001 --user 5000007 --query "wireless headphones" \\
        --candidates 100003,100011,100017 --k 2
    shoprank-rank --user 5000007 --candidates-file ids.txt          # no --query: recommendation

Exit status: 0 ranked, 2 invalid request, 3 unavailable or overloaded, 4 deadline exceeded,
5 server error or contract mismatch.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from shoprank_client.errors import (
    ContractMismatch,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RankingError,
    Unavailable,
)
from shoprank_client.sync import RankingClient
from shoprank_client.types import RankingResult, RetryPolicy

EXIT_CODES = ((InvalidRequest, 2), (Unavailable, 3), (Overloaded, 3), (DeadlineExceeded, 4), (ContractMismatch, 5))


def parse_ids(text: str, source: str) -> list[int]:
    tokens = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    try:
        return [int(t) for t in tokens]
    except ValueError as err:
        raise SystemExit(f"error: {source}: not an integer id ({err})") from None


def format_table(result: RankingResult) -> str:
    width = max([len(str(i.item_id)) for i in result.items] + [7])
    lines = [f"{'rank':>4}  {'item_id':>{width}}  {'score':>10}"]
    lines += [f"{n:>4}  {i.item_id:>{width}}  {i.score:>10.4f}" for n, i in enumerate(result.items, 1)]
    lines.append(
        f"model {result.model} v{result.model_version} · {result.latency_ms:.1f} ms · "
        f"{result.endpoint} · {result.attempts} attempt(s)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank-rank", description="Rank candidates with a shoprank server.")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=None,
        help="host:port or dns:name:port; repeat for failover (default 127.0.0.1:8001)",
    )
    parser.add_argument("--user", type=int, required=True, help="user id (unknown users get a cold-start ranking)")
    parser.add_argument("--query", default=None, help="search query; leave out for a recommendation")
    ids = parser.add_mutually_exclusive_group(required=True)
    ids.add_argument("--candidates", help="comma- or space-separated item ids")
    ids.add_argument("--candidates-file", type=Path, help="file of item ids (commas, spaces or new lines)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1.0, help="deadline in seconds (default 1.0)")
    parser.add_argument("--attempts", type=int, default=3, help="attempts in all, retries included")
    parser.add_argument("--header", action="append", default=[], metavar="KEY=VALUE", help="extra request header")
    args = parser.parse_args(argv)

    if args.candidates_file is not None:
        try:
            candidates = parse_ids(args.candidates_file.read_text(), str(args.candidates_file))
        except OSError as err:
            print(f"error: --candidates-file: {err.strerror}: {args.candidates_file}", file=sys.stderr)
            return 2
    else:
        candidates = parse_ids(args.candidates, "--candidates")
    headers = {}
    for h in args.header:
        key, sep, value = h.partition("=")
        if not sep:
            print(f"error: --header {h!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        headers[key] = value
    try:
        with RankingClient(
            args.endpoint or ["127.0.0.1:8001"],
            timeout_s=args.timeout,
            headers=headers,
            retry=RetryPolicy(max_attempts=max(1, args.attempts)),
        ) as client:
            if args.query is not None:
                result = client.search(args.user, args.query, candidates, args.k)
            else:
                result = client.recommend(args.user, candidates, args.k)
    except RankingError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return next((code for cls, code in EXIT_CODES if isinstance(err, cls)), 5)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

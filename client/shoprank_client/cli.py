"""``shoprank-rank``: one ranking call from the terminal, printed as a table (or, with ``--json``, as JSON).

The call follows from the arguments: a query and candidates -> ``search``; candidates alone -> ``recommend``;
a query without candidates -> ``search_catalog``; neither -> ``recommend_catalog`` (``--context``: the items
on the product page)::

    shoprank-rank --endpoint 127.0.0.1:8001 --user 5000007 --query "wireless headphones" \\
        --candidates 100003,100011,100017 --k 2
    shoprank-rank --user 5000007 --candidates-file ids.txt                    # recommend
    shoprank-rank --user 5000007 --query "dress" --attribute colour=black --max-price 50 --facet brand
    shoprank-rank --user 5000007 --context 100003 --k 4                      # a product page
    shoprank-rank --string-ids --user client-0042 --query "fromages"          # a shop built with string ids

Exit status: 0 ranked, 2 invalid request (an argument the client refuses or the server's INVALID_ARGUMENT),
3 unavailable or overloaded, 4 deadline exceeded, 5 server error or contract mismatch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shoprank_client.errors import (
    ContractMismatch,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RankingError,
    Unavailable,
)
from shoprank_client.listing import SORTS, UNDERSTAND, UNDERSTAND_FIELDS, Filters, all_of
from shoprank_client.sync import RankingClient
from shoprank_client.types import RankingResult, RetryPolicy

EXIT_CODES = ((InvalidRequest, 2), (Unavailable, 3), (Overloaded, 3), (DeadlineExceeded, 4), (ContractMismatch, 5))
USAGE = 2  # exit status of a refused argument, as argparse's own


class Refused(Exception):
    """An argument the CLI refuses before sending anything; the message names it."""


def parse_ids(text: str, source: str, strings: bool = False) -> list[int | str]:
    """Ids separated by commas, spaces or new lines: integers, or with ``strings`` the shop's own strings."""
    tokens = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    if strings:
        return list(tokens)
    out: list[int | str] = []
    for t in tokens:
        try:
            out.append(int(t))
        except ValueError:
            raise Refused(
                f"{source}: {t!r} is not an integer id (a shop built with string ids: --string-ids)"
            ) from None
    return out


def parse_user(text: str, strings: bool) -> int | str:
    if strings:
        return text
    try:
        return int(text)
    except ValueError:
        raise Refused(f"--user: {text!r} is not an integer id (a shop built with string ids: --string-ids)") from None


def parse_attributes(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``NAME=VALUE`` pairs as the filter's attributes; a name given twice matches either value."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise Refused(f"--attribute {pair!r}: expected NAME=VALUE, e.g. colour=black")
        out.setdefault(name.strip(), []).append(value.strip())
    return out


def filters_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The filter tree of the field flags and ``--filter-json`` (both must hold), or None when none is given."""
    fields = Filters(
        category=args.category or None,
        brand=args.brand or None,
        attributes=parse_attributes(args.attribute),
        min_price=args.min_price,
        max_price=args.max_price,
        in_stock=True if args.in_stock else None,
        created_after=args.created_after,
    ).to_tree()
    raw = None
    if args.filter_json is not None:
        try:
            raw = json.loads(args.filter_json)
        except ValueError as err:
            raise Refused(f"--filter-json: not valid JSON ({err})") from None
        if not isinstance(raw, dict):
            raise Refused(f"--filter-json: expected a JSON object (the server's filter tree), got {type(raw).__name__}")
    if raw and fields:
        return all_of(fields, raw)
    return raw or fields or None


def result_dict(result: RankingResult) -> dict[str, Any]:
    """The result as plain JSON values, for ``--json``."""
    items = []
    for n, item in enumerate(result.items):
        entry: dict[str, Any] = {"item_id": item.item_id, "score": item.score}
        if n < len(result.groups):
            entry["group"] = result.groups[n]
            entry["group_matches"] = result.group_matches[n]
        items.append(entry)
    return {
        "model": result.model,
        "model_version": result.model_version,
        "release": result.release,
        "endpoint": result.endpoint,
        "latency_ms": round(result.latency_ms, 3),
        "attempts": result.attempts,
        "matches": result.matches,
        "items": items,
        "facets": {name: [asdict(v) for v in values] for name, values in result.facets.items()},
        "info": dict(result.info),
    }


def _chip(chip: dict[str, Any]) -> str:
    if chip.get("field") == "price":
        bounds = [f">= {chip['min']:g}" if "min" in chip else "", f"< {chip['max']:g}" if "max" in chip else ""]
        said = "price " + " ".join(b for b in bounds if b)
    else:
        value = chip.get("value")
        said = f"{chip.get('field')}: {' or '.join(map(str, value)) if isinstance(value, list) else value}"
    return f"{said} ({'applied' if chip.get('applied') else 'reported'})"


def format_table(result: RankingResult) -> str:
    """Rank, item id and score (and the variant group with its matching variants, where the server says),
    then what the server said beside the items: the results to page through, facets, understood words and
    merchandising rules; last the model, version, latency and endpoint."""
    # the group columns where they say something: a shop without variant groups has one group per item
    grouped = len(result.groups) == len(result.items) and any(
        g != str(i.item_id) or m > 1 for g, m, i in zip(result.groups, result.group_matches, result.items, strict=True)
    )
    width = max([len(str(i.item_id)) for i in result.items] + [7])
    gwidth = max([len(g) for g in result.groups] + [5]) if grouped else 0
    head = f"{'rank':>4}  {'item_id':>{width}}  {'score':>10}"
    lines = [head + (f"  {'group':<{gwidth}}  matches" if grouped else "")]
    for n, i in enumerate(result.items):
        row = f"{n + 1:>4}  {i.item_id!s:>{width}}  {i.score:>10.4f}"
        if grouped:
            row += f"  {result.groups[n]:<{gwidth}}  {result.group_matches[n]:>7}"
        lines.append(row)
    if result.matches is not None:
        lines.append(f"{result.matches} results to page through (offset {result.info.get('offset', 0)})")
    for name, values in result.facets.items():
        lines.append(f"facet {name}: " + ", ".join(f"{v.value} ({v.count})" for v in values))
    understood = result.info.get("understood")
    if isinstance(understood, dict) and understood.get("chips"):
        relaxed = " · relaxed: too few matches, the plain query answered" if understood.get("relaxed") else ""
        chips = "; ".join(_chip(c) for c in understood["chips"] if isinstance(c, dict))
        lines.append(f"understood ({understood.get('mode')}): {chips}{relaxed}")
    if result.info.get("rules"):
        lines.append("rules: " + ", ".join(str(r) for r in result.info["rules"]))
    release = f" · release {result.release}" if result.release is not None else ""
    lines.append(
        f"model {result.model} v{result.model_version}{release} · {result.latency_ms:.1f} ms · "
        f"{result.endpoint} · {result.attempts} attempt(s)"
    )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shoprank-rank",
        description="One ranking call to a shoprank server: search or recommend over --candidates, or, without "
        "them, search_catalog / recommend_catalog over the whole catalogue.",
    )
    p.add_argument(
        "--endpoint",
        action="append",
        default=None,
        help="host:port or dns:name:port; repeat for failover (default 127.0.0.1:8001)",
    )
    p.add_argument("--user", required=True, help="user id (unknown users get a cold-start ranking)")
    p.add_argument("--query", default=None, help="search query; leave out for a recommendation")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--candidates", help="comma- or space-separated item ids; leave out to rank the whole catalogue")
    ids.add_argument("--candidates-file", type=Path, help="file of item ids (commas, spaces or new lines)")
    p.add_argument("--context", default="", help="recommend_catalog: the items on the page (comma-separated)")
    p.add_argument("--exclude", default="", help="catalogue calls: item ids never to return (comma-separated)")
    p.add_argument(
        "--string-ids",
        action="store_true",
        help="the shop was built with string ids (SKUs): --user and every item id are sent as strings",
    )
    p.add_argument("--k", type=int, default=10)
    listing = p.add_argument_group("filters, groups, pages, sort and facets (every call)")
    listing.add_argument("--category", action="append", default=[], help="a category path prefix; repeat for any of")
    listing.add_argument("--brand", action="append", default=[], help="repeat for any of")
    listing.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="e.g. colour=black; repeat a name for any of its values",
    )
    listing.add_argument("--min-price", type=float, default=None, help="price >= this")
    listing.add_argument("--max-price", type=float, default=None, help="price < this")
    listing.add_argument("--in-stock", action="store_true", help="only items in stock")
    listing.add_argument("--created-after", default=None, help="an ISO-8601 date")
    listing.add_argument(
        "--filter-json",
        default=None,
        metavar="JSON",
        help='the server\'s filter tree, e.g. \'{"any": [{"brand": "A"}, {"colour": "red"}]}\'',
    )
    listing.add_argument(
        "--per-group", type=int, default=None, help="results per variant group (server default 1; 0: every variant)"
    )
    listing.add_argument("--offset", type=int, default=0, help="the page's first result (0-based)")
    listing.add_argument("--sort", choices=SORTS, default="relevance")
    listing.add_argument(
        "--facet",
        action="append",
        default=[],
        help="a field to count (brand, category, price, an attribute); repeat for several",
    )
    listing.add_argument(
        "--understand",
        choices=UNDERSTAND,
        default=None,
        help="search calls: how the query's understood words apply (server default: filter)",
    )
    listing.add_argument(
        "--understand-field",
        action="append",
        default=None,
        choices=UNDERSTAND_FIELDS,
        help="search calls: a kind of understood word that applies; repeat for several (server "
        "default: price and attribute)",
    )
    listing.add_argument(
        "--include-own-group",
        action="store_true",
        help="recommend_catalog: the viewed items' other variants may come back",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object instead of a table")
    p.add_argument("--timeout", type=float, default=1.0, help="deadline in seconds (default 1.0)")
    p.add_argument("--attempts", type=int, default=3, help="attempts in all, retries included")
    p.add_argument("--header", action="append", default=[], metavar="KEY=VALUE", help="extra request header")
    return p


def _call(client: RankingClient, args: argparse.Namespace, candidates: list[int | str] | None) -> RankingResult:
    """The one call the arguments name; Refused for an argument the call does not take."""
    strings = args.string_ids
    user = parse_user(args.user, strings)
    context = parse_ids(args.context, "--context", strings)
    exclude = parse_ids(args.exclude, "--exclude", strings)
    searching = args.query is not None
    if candidates is not None and (context or exclude):
        raise Refused(f"--{'context' if context else 'exclude'}: only without --candidates (the catalogue calls)")
    if searching and context:
        raise Refused("--context: recommend_catalog only (no --query)")
    if args.include_own_group and (searching or candidates is not None):
        raise Refused("--include-own-group: recommend_catalog only (no --query, no --candidates)")
    if not searching and (args.understand is not None or args.understand_field is not None):
        raise Refused("--understand / --understand-field: search calls only (give --query)")
    listing: dict[str, Any] = {
        "filters": filters_of(args),
        "per_group": args.per_group,
        "offset": args.offset,
        "sort": args.sort,
        "facets": args.facet,
    }
    asked = {"understand": args.understand, "understand_fields": args.understand_field} if searching else {}
    if candidates is not None:
        if searching:
            return client.search(user, args.query, candidates, args.k, **listing, **asked)
        return client.recommend(user, candidates, args.k, **listing)
    if searching:
        return client.search_catalog(user, args.query, args.k, exclude=exclude, **listing, **asked)
    return client.recommend_catalog(
        user, args.k, context=context, exclude=exclude, include_own_group=args.include_own_group, **listing
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        candidates: list[int | str] | None = None
        if args.candidates_file is not None:
            try:
                text = args.candidates_file.read_text()
            except OSError as err:
                raise Refused(f"--candidates-file: {err.strerror}: {args.candidates_file}") from None
            candidates = parse_ids(text, str(args.candidates_file), args.string_ids)
        elif args.candidates is not None:
            candidates = parse_ids(args.candidates, "--candidates", args.string_ids)
        headers = {}
        for h in args.header:
            key, sep, value = h.partition("=")
            if not sep:
                raise Refused(f"--header {h!r}: expected KEY=VALUE")
            headers[key] = value
        with RankingClient(
            args.endpoint or ["127.0.0.1:8001"],
            timeout_s=args.timeout,
            headers=headers,
            retry=RetryPolicy(max_attempts=max(1, args.attempts)),
        ) as client:
            result = _call(client, args, candidates)
    except Refused as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE
    except RankingError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return next((code for cls, code in EXIT_CODES if isinstance(err, cls)), 5)
    print(json.dumps(result_dict(result), ensure_ascii=False) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

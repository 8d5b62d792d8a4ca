"""``python -m online``: seed the online store from a build and push item updates.

    python -m online seed --repo model_repository                  # the build's price and stock of every item
    python -m online push --item SKU-0042 --price 12.90 --stock 0  # one item (string ids as the build hashed them)
    python -m online push --file updates.parquet                   # bulk: item_id + price and/or stock (CSV too)
    tail -f feed.jsonl | python -m online push --stream -          # {"item_id": ..., "price": ...} per line
    python -m online push --new-items new.csv --repo model_repository  # item_id, title (+ price, stock): embedded
    python -m online rules set rules.json --repo model_repository  # merchandising rules (runtime/rules.py)
    python -m online rules show | python -m online rules clear

A stream line may also be an interaction, ``{"event": "click", "user_id": ..., "item_id": ...}`` (``cart``,
``purchase``; ``session_id`` instead of ``user_id`` for an anonymous session), or a new item with its
``title`` (then ``--repo`` names the repository whose encoder embeds it).

The store is ``--url`` or ``$SHOPRANK_ONLINE_URL``; keys use ``--prefix`` (``$SHOPRANK_ONLINE_PREFIX``,
default ``shoprank``), which must match the serving side's. A bad line of a stream is reported with its
line number and skipped; the others are applied. Exit status: 0 done, 2 bad input, 3 store unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from online.embed import RepositoryEncoder
from online.rules import resolve
from online.writer import Interaction, ItemUpdate, OnlineWriter, UpdateError, check, check_interaction
from runtime.online_store import ONLINE_FIELDS, OnlineSettings, connect
from runtime.rules import RuleError
from shoprank_client.ids import stable_id


def item_id(raw: Any) -> int:
    """An item id as the build served it: integers as they are, strings by their stable hash."""

    if isinstance(raw, bool):
        raise UpdateError(f"item_id: expected an integer or a string, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        return int(text) if text.lstrip("-").isdigit() else stable_id(text)
    raise UpdateError(f"item_id: expected an integer or a string, got {raw!r}")


def read_table(path: Path, required: tuple[str, ...]) -> Any:
    """A Parquet or CSV file as an Arrow table; an error names a required column it lacks."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pq.read_table(path) if path.suffix in (".parquet", ".pq") else pacsv.read_csv(path)
    for column in required:
        if column not in table.column_names:
            raise UpdateError(f"{path.name}: no {column} column (columns: {', '.join(table.column_names)})")
    return table


def read_file(path: Path) -> list[ItemUpdate]:
    table = read_table(path, ("item_id",))
    fields = [f for f in ONLINE_FIELDS if f in table.column_names]
    if not fields:
        raise UpdateError(f"{path.name}: no field to update; expected one of {', '.join(ONLINE_FIELDS)}")
    rows = table.select(["item_id", *fields]).to_pylist()
    out = []
    for n, row in enumerate(rows, 2 if path.suffix == ".csv" else 1):
        values = {f: row[f] for f in fields if row[f] is not None}
        try:
            out.append(ItemUpdate(item_id(row["item_id"]), values))
        except UpdateError as err:
            raise UpdateError(f"{path.name}: row {n}: {err}") from None
    return out


def interaction(rec: dict[str, Any]) -> Interaction:
    """A stream line with an ``event``: who (``user_id``, or ``session_id`` when anonymous) did what to which item."""
    who = "user_id" if rec.get("user_id") is not None else "session_id"
    if rec.get(who) is None:
        raise UpdateError("an event needs user_id (or session_id for an anonymous session)")
    return check_interaction(
        Interaction(item_id(rec.get(who)), item_id(rec.get("item_id")), str(rec["event"]), who == "session_id")
    )


def stream(
    writer: OnlineWriter, lines: TextIO, flush_s: float = 0.05, batch: int = 500, embed: Any = None
) -> tuple[int, int]:
    """Apply JSON lines as they come, in small batches; returns (applied, rejected)."""
    pending: list[ItemUpdate] = []
    events: list[Interaction] = []
    applied = rejected = 0
    last = time.monotonic()
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise UpdateError("expected a JSON object")
                if "event" in rec:
                    events.append(interaction(rec))
                elif "title" in rec:
                    if embed is None:
                        raise UpdateError("a new item (with a title) needs --repo: its encoder embeds the title")
                    fields = {k: [v] for k, v in rec.items() if k not in ("item_id", "title")}
                    applied += writer.add_items([(item_id(rec.get("item_id")), rec["title"])], embed, **fields)
                else:
                    values = {k: v for k, v in rec.items() if k != "item_id"}
                    pending.append(check(ItemUpdate(item_id(rec.get("item_id")), values)))
            except (json.JSONDecodeError, UpdateError) as err:
                rejected += 1
                print(f"line {n}: {err}", file=sys.stderr)
        if (pending or events) and (len(pending) + len(events) >= batch or time.monotonic() - last >= flush_s):
            applied += writer.write(pending) + writer.record(events)
            pending, events, last = [], [], time.monotonic()
    applied += writer.write(pending) + writer.record(events)
    return applied, rejected


def read_new_items(path: Path) -> tuple[list[tuple[int, str]], dict[str, list[float]]]:
    table = read_table(path, ("item_id", "title"))
    ids = [item_id(v) for v in table.column("item_id").to_pylist()]
    fields = {f: table.column(f).to_pylist() for f in ONLINE_FIELDS if f in table.column_names}
    return list(zip(ids, table.column("title").to_pylist(), strict=True)), fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m online", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("SHOPRANK_ONLINE_URL"))
    parser.add_argument("--prefix", default=os.environ.get("SHOPRANK_ONLINE_PREFIX") or "shoprank")
    sub = parser.add_subparsers(dest="command", required=True)
    seed = sub.add_parser("seed", help="load the build's snapshot (every item's price and stock)")
    seed.add_argument("--repo", type=Path, default=Path("model_repository"))
    push = sub.add_parser("push", help="apply updates: one item, a file, or a stream of JSON lines")
    what = push.add_mutually_exclusive_group(required=True)
    what.add_argument("--item", help="one item's id (integer, or the shop's string id)")
    what.add_argument("--file", type=Path, help="Parquet or CSV with item_id and price and/or stock")
    what.add_argument("--stream", type=argparse.FileType("r"), help="JSON lines ('-' = stdin)")
    what.add_argument("--new-items", type=Path, help="Parquet or CSV: item_id, title (+ price, stock); needs --repo")
    push.add_argument("--repo", type=Path, help="the served repository, whose encoder embeds new items' titles")
    for f in ONLINE_FIELDS:
        push.add_argument(f"--{f}", type=float)
    rules = sub.add_parser("rules", help="merchandising rules: set (checked against --repo), show, clear")
    rules.add_argument("action", choices=["set", "show", "clear"])
    rules.add_argument("file", nargs="?", type=Path, help="set: the rules' JSON file")
    rules.add_argument("--repo", type=Path, default=Path("model_repository"), help="set: the served repository")
    args = parser.parse_args(argv)
    if not args.url:
        print("error: no online store: pass --url or set SHOPRANK_ONLINE_URL", file=sys.stderr)
        return 2
    import redis

    env = OnlineSettings.from_env()  # cluster mode and buckets: the serving side's settings
    settings = OnlineSettings(url=args.url, timeout_s=5.0, cluster=env.cluster, buckets=env.buckets, seeds=env.seeds)
    writer = OnlineWriter(connect(settings), prefix=args.prefix, cluster=env.cluster, buckets=env.buckets)
    started = time.monotonic()
    try:
        embed = None  # push --repo: the served encoder embeds new items' titles (--new-items, or a stream's)
        if args.command == "push" and args.repo is not None:
            embed = RepositoryEncoder(args.repo)
        if args.command == "rules":
            return rules_command(writer, args)
        if args.command == "seed":
            n = writer.seed(args.repo)
            print(f"seeded {n} items from {args.repo} in {time.monotonic() - started:.1f} s")
        elif args.item is not None:
            values = {f: getattr(args, f) for f in ONLINE_FIELDS if getattr(args, f) is not None}
            n = writer.apply([ItemUpdate(item_id(args.item), values)])
            print(f"updated item {args.item}: {values}")
        elif args.new_items is not None:
            if embed is None:
                raise UpdateError("--new-items needs --repo: the repository whose encoder embeds the titles")
            new, fields = read_new_items(args.new_items)
            n = writer.add_items(new, embed, **fields)
            print(f"added {n} new items from {args.new_items} in {time.monotonic() - started:.1f} s")
        elif args.file is not None:
            n = writer.apply(read_file(args.file))
            print(f"updated {n} items from {args.file} in {time.monotonic() - started:.1f} s")
        else:
            n, bad = stream(writer, args.stream, embed=embed)
            print(f"stream ended: {n} updates applied, {bad} rejected")
            return 2 if bad else 0
    except (UpdateError, RuleError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except redis.RedisError as err:
        print(f"error: online store {args.url} unreachable: {err}", file=sys.stderr)
        return 3
    return 0


def rules_command(writer: OnlineWriter, args: argparse.Namespace) -> int:
    if args.action == "show":
        print(writer.rules() or '{"rules": []}')
    elif args.action == "clear":
        writer.set_rules('{"rules": []}')
        print("rules cleared")
    else:
        if args.file is None:
            raise UpdateError("rules set: name the rules' JSON file")
        resolved = resolve(args.file.read_text(), args.repo)
        writer.set_rules(resolved)
        print(f"rules set: {len(json.loads(resolved)['rules'])} rules from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

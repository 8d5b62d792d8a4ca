"""The demo shop as one producer of the data contract: ``python -m builders demo-data --profile P --out DIR``.

Writes ``items.parquet``, ``users.parquet``, ``events.parquet`` and a ``shoprank.yaml`` that builds
them, so the demo goes through the same loader, validation and features as a shop's own export.
The events carry one column beyond the contract, ``relevance`` (the generator's hidden true
relevance of each impression), which the config names in ``evaluation.true_relevance``; a real
shop has no such column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from builders.data import fashion, market
from builders.data.load import write_export
from builders.data.shop import CATEGORIES, DEPARTMENTS, PROFILES, Shop, generate

START = 1_788_220_800  # 2026-09-01T00:00:00Z: the demo's first day


def config_dict(name: str, folder: Path | str = ".") -> dict:
    return {
        "name": name,
        "data": {"folder": str(folder)},
        "features": {"user_segment": "segment"},
        "evaluation": {"true_relevance": "relevance"},
        # not fine-tuned: on the demo the tuned encoder wins recall and loses NDCG@10 (docs/quality.md),
        # so auto would not keep it, and trying costs the README's first command about 11 minutes
        "encoder": {"fine_tune": "off"},
    }


def profiles() -> list[str]:
    """Every generated shop a build can take as ``--profile``: the demo's sizes, the market and fashion shops'."""
    return sorted([*PROFILES, *market.PROFILES, *fashion.PROFILES])


def profile_key(profile: str) -> dict:
    """What the generated files of ``profile`` depend on (the demo-data step's cache key)."""
    for other in (market, fashion):
        if profile in other.PROFILES:
            return other.PROFILES[profile].key()
    return PROFILES[profile].key()


def profile_config(profile: str, folder: Path | str) -> dict:
    """The config that builds the generated files of ``profile`` in ``folder``."""
    for other in (market, fashion):
        if profile in other.PROFILES:
            return other.config_dict(profile, folder)
    return config_dict(profile, folder)


def profile_files(profile: str, folder: Path) -> list[Path]:
    """The data files ``write(profile, folder)`` writes."""
    cfg = profile_config(profile, folder)["data"]
    return [folder / f"{cfg.get(t, t)}.parquet" for t in ("items", "users", "events")]


def tables(shop: Shop, seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    cat_names = [f"{DEPARTMENTS[noun]} > {noun.title()}" for noun, _, _ in CATEGORIES]
    attrs = [[shop.attributes[a] for a in row if a >= 0] for row in shop.item_attrs]
    items = pa.table(
        {
            "item_id": pa.array(shop.item_ids, pa.int64()),
            "title": shop.item_titles,
            "category": [cat_names[c] for c in shop.item_category],
            "brand": [shop.brands[b] for b in shop.item_brand],
            "price": pa.array(shop.item_price.astype(np.float64)),
            "stock": pa.array(shop.item_stock, pa.int64()),
            "attributes": pa.array(attrs, pa.list_(pa.string())),
        }
    )
    users = pa.table(
        {"user_id": pa.array(shop.user_ids, pa.int64()), "segment": [f"segment-{s}" for s in shop.user_segment]}
    )
    # One impression event per shown item, a click event some seconds later, a purchase later still. A
    # product page's list is part of the visit that opened it (its session_id), 12 minutes per page later.
    n_s = len(shop.session_user)
    session_start = START + shop.session_day * 86_400 + rng.integers(0, 86_400 - 3_600, n_s)
    list_start = session_start[shop.session_root] + 720 * shop.session_depth
    imp_session = shop.impression_session()
    imp_time = list_start[imp_session]
    clicked = np.flatnonzero(shop.imp_click > 0)
    bought = np.flatnonzero(shop.imp_purchase > 0)
    rows = np.concatenate([np.arange(shop.n_impressions), clicked, bought])
    kind = np.concatenate(
        [np.zeros(shop.n_impressions, np.int8), np.ones(len(clicked), np.int8), np.full(len(bought), 3, np.int8)]
    )
    delay = np.concatenate(
        [
            np.zeros(shop.n_impressions, np.int64),
            rng.integers(5, 600, len(clicked)),
            rng.integers(600, 1800, len(bought)),
        ]
    )
    order = np.lexsort((kind, rows, imp_time[rows] + delay))
    rows, kind, delay = rows[order], kind[order], delay[order]
    sess = imp_session[rows]
    query = shop.session_query[sess]
    query_text = pa.array([shop.queries[q] if q >= 0 else None for q in query.tolist()], pa.string())
    kinds = np.array(["impression", "click", "add_to_cart", "purchase"], object)
    events = pa.table(
        {
            "timestamp": pa.array((imp_time[rows] + delay) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "session_id": pa.array(shop.session_root[sess] + 1, pa.int64()),
            "user_id": pa.array(shop.user_ids[shop.session_user[sess]], pa.int64()),
            "query": query_text,
            "item_id": pa.array(shop.item_ids[shop.imp_item[rows]], pa.int64()),
            "context_item_id": pa.array(
                shop.item_ids[np.maximum(shop.session_context[sess], 0)],
                pa.int64(),
                mask=shop.session_context[sess] < 0,
            ),
            "position": pa.array(shop.imp_position[rows], pa.int64()),
            "event": pa.array(kinds[kind].tolist(), pa.string()).dictionary_encode(),
            "relevance": pa.array(
                np.where(kind == 0, shop.imp_relevance[rows], np.nan).astype(np.float32), from_pandas=True
            ),
        }
    )
    return {"items": items, "users": users, "events": events}


def write_shop(shop: Shop, out: Path) -> Path:
    """Write a generated ``shop`` into ``out`` in the contract's format; returns its ``shoprank.yaml``."""
    name = shop.profile.name
    comment = f"The demo shop ({name} profile), written by `python -m builders demo-data`."
    return write_export(out, tables(shop), config_dict(f"demo-{name}"), comment)


def write(profile: str, out: Path) -> Path:
    """Generate the shop of ``profile`` (the demo's, or the market shop's) into ``out``; returns the path of
    its ``shoprank.yaml``."""
    if profile in market.PROFILES:
        return market.write(profile, out)
    if profile in fashion.PROFILES:
        return fashion.write(profile, out)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {profiles()}")
    return write_shop(generate(PROFILES[profile]), out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builders demo-data", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=profiles())
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = write(args.profile, args.out)
    print(f"wrote the demo shop to {args.out}; build it with: python -m builders build --config {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

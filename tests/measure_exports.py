"""Measure the grocery shop (``tests/shops.py``, with product pages) built from three exports of the same logs:
the contract's files with positions from 0, the same with positions from 1 (GA4's index), and a GA4 export
plus a Merchant Center feed. Prints, per build: the held-out days' NDCG@10 of the served ranker against the
click prior and popularity by kind of list, debiased (IPS) overall, the data step's time, and whether the
golden sets (the build's own served answers) are identical. Not a test: run it to fill docs/data.md.

    .venv/bin/python -m tests.measure_exports [--sessions 4000] [--items 3000] [--out build/measure_exports]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from builders.build import build
from tests import exports, shops


def write_contract(folder: Path, catalogue, customers, events, config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(catalogue, folder / "catalogue.csv")
    pq.write_table(customers, folder / "customers.parquet")
    pacsv.write_csv(events, folder / "events.csv")
    (folder / "shoprank.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return folder / "shoprank.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("build/measure_exports"))
    args = parser.parse_args()
    catalogue, customers, events = shops.generate(
        n_items=args.items, n_sessions=args.sessions, days=40, seed=5, product_pages=0.5
    )
    config = copy.deepcopy(shops.CONFIG)
    config["encoder"] = {"fine_tune": "off"}
    twin_catalogue, twin_events = exports.contract_twin(catalogue, events)
    one_based = twin_events.set_column(
        twin_events.column_names.index("position"), "position", pc.add(twin_events.column("position"), 1)
    )
    paths = {
        "contract, positions from 0": write_contract(args.out / "zero", twin_catalogue, customers, twin_events, config),
        "contract, positions from 1": write_contract(args.out / "one", twin_catalogue, customers, one_based, config),
    }
    paths["GA4 export + Merchant Center feed"] = exports.write_ga4_shop(
        args.out / "ga4", catalogue, customers, events, config, feed="tsv"
    )

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}")
    print(f"grocery shop: {args.items:,} items, {args.sessions:,} sessions over 40 days, half the homepage lists on")
    print("product pages")
    print("| export | data step | search: ranker / click prior / popularity | homepage | product page | IPS all |")
    print("|---|---|---|---|---|---|")
    golden = {}
    for name, path in paths.items():
        work = path.parent / "work"
        report = build(config=path, out=path.parent / "repo", work=work, progress=False, force=("data",))
        kinds = report["ranker"]["test_by_list_kind"]

        def cell(kind: str, kinds=kinds) -> str:
            k = kinds.get(kind)
            if not k:
                return "–"
            return " / ".join(f"{k[s]['ndcg@10']:.3f}" for s in ("ranker", "click_prior", "popularity"))

        ips = report["ranker"]["test"]["ranker"].get("ndcg@10_ips")
        print(
            f"| {name} | {report['data']['seconds']:.1f} s | {cell('search')} | {cell('homepage')} | "
            f"{cell('product page')} | {'–' if ips is None else f'{ips:.3f}'} |"
        )
        golden[name] = json.loads((path.parent / "repo" / "golden.json").read_text())["requests"]
        print(f"  position_base: {report['data']['position_base']}; limits: {report['limits'] or 'none'}")
    names = list(golden)
    for other in names[1:]:
        same = sum(a == b for a, b in zip(golden[names[0]], golden[other], strict=True))
        print(f"golden set, {other} vs {names[0]}: {same}/{len(golden[other])} answers identical")


if __name__ == "__main__":
    main()

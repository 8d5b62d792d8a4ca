"""What a nightly retrain costs against a full build (``make bench-retrain``; results in docs/retrain.md).

The demo shop of ``--profile`` (default: 50,000 items) is built once without its newest day of logs and without
1% of its items (yesterday's build), in its own cache folder. The day and the items
are then added to its data folder, as a nightly export would, and the same cache folder is built again: what
``python -m retrain`` builds as its candidate. A full build of the same new data in an empty cache folder
(the bundled encoder's export aside, shared by every build) is timed beside it. Seconds per step, each build
alone on the machine, one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.pipeline import write_section
from builders.build import REPO_ROOT, STEP_NAMES, build
from builders.data import demo
from runtime import cli_logging

STEPS = (*(s for s in STEP_NAMES if s != "demo-data"), "repository", "golden")


def _stamps(work: Path) -> dict[str, float]:
    return {s: p.stat().st_mtime_ns for s in STEPS if (p := work / f"{s}.stamp.json").exists()}


def _timed(config: Path, work: Path, out: Path) -> dict:
    """One build's wall time, and each step's (0 where the step was cached: its stamp was not rewritten)."""
    before = _stamps(work)
    start = time.perf_counter()
    report = build("cpu", None, out=out, work=work, progress=False, config=config)
    after = _stamps(work)
    steps = {
        s: 0.0 if s in before and before[s] == after.get(s) else report[s].get("seconds") for s in STEPS if s in report
    }
    return {"seconds": round(time.perf_counter() - start, 1), "steps": steps, "embeddings": report["embeddings"]}


def run(profile: str, root: Path) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    full = root / "shop"
    config = demo.write(profile, full)
    events, items = pq.read_table(full / "events.parquet"), pq.read_table(full / "items.parquet")
    ts = events["timestamp"].cast(pa.int64()).to_numpy()
    cut = ts.max() - 86_400 * 10**6
    # new since yesterday: 1% of the items (their events before the day left out with them)
    new = np.random.default_rng(0).choice(items["item_id"].to_numpy(), len(items) // 100, replace=False)
    new_ids = pa.array(new)
    touches = pc.fill_null(
        pc.or_(pc.is_in(events["item_id"], new_ids), pc.is_in(events["context_item_id"], new_ids)), False
    )
    yesterday = root / "yesterday"
    yesterday.mkdir(parents=True)
    pq.write_table(events.filter(pc.and_(pa.array(ts < cut), pc.invert(touches))), yesterday / "events.parquet")
    pq.write_table(items.filter(pc.invert(pc.is_in(items["item_id"], new_ids))), yesterday / "items.parquet")
    shutil.copyfile(full / "users.parquet", yesterday / "users.parquet")
    shutil.copyfile(config, yesterday / Path(config).name)
    work = root / "work"
    first = _timed(yesterday / Path(config).name, work, root / "repo_yesterday")
    for name in ("events.parquet", "items.parquet"):  # the nightly export lands in the shop's data folder
        shutil.copyfile(full / name, yesterday / name)
    nightly = _timed(yesterday / Path(config).name, work, root / "repo_candidate")
    scratch = _timed(yesterday / Path(config).name, root / "work_full", root / "repo_full")
    return {
        "profile": profile,
        "items": len(items),
        "new_items": len(new),
        "new_day_events": int((ts >= cut).sum()),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "first_build": first,
        "nightly_retrain_build": nightly,
        "full_build": scratch,
        "ratio": round(nightly["seconds"] / scratch["seconds"], 3),
        "new_items_share": float(np.round(len(new) / len(items), 4)),
    }


def table(r: dict) -> str:
    rows = [
        f"Measured {time.strftime('%Y-%m-%d')} on {r['machine']}, Python {platform.python_version()}; profile "
        f"`{r['profile']}`: {r['items']:,} items, the newest day of logs ({r['new_day_events']:,} events) and "
        f"{r['new_items']:,} new items added to yesterday's build (`make bench-retrain`, "
        "benchmarks/retrain_cost.py). Seconds; 0 = the step was reused from the cache.",
        "",
        "| step | nightly retrain (yesterday's cache) | full build (empty cache) |",
        "|---|---|---|",
    ]
    for step in (s for s in STEPS if s in r["full_build"]["steps"]):
        a, b = r["nightly_retrain_build"]["steps"].get(step), r["full_build"]["steps"].get(step)
        rows.append(f"| {step} | {a} | {b} |")
    n, f = r["nightly_retrain_build"], r["full_build"]
    rows += [
        f"| **total** | **{n['seconds']}** | **{f['seconds']}** |",
        "",
        f"The retrain's build takes {r['ratio']:.0%} of a full build's time. It encodes "
        f"{n['embeddings'].get('titles_encoded')} titles and reuses {n['embeddings'].get('titles_reused'):,}; "
        f"the full build encodes {f['embeddings'].get('titles_encoded'):,}. The gate and the publish come on top "
        "(`python -m retrain` prints its build's steps).",
        "",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--root", type=Path, default=REPO_ROOT / "build" / "retrain-cost")
    p.add_argument("--out", type=Path, default=None, help="write the table into this document's retrain-cost section")
    args = p.parse_args(argv)
    result = run(args.profile, args.root)
    print(json.dumps(result, indent=1))
    text = table(result)
    print(text)
    if args.out is not None:
        write_section(args.out, "retrain-cost", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

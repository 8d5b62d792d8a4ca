"""Benchmark: every compressed variant served by the real tritonserver, next to its in-process and
quality numbers; writes the table and the Pareto plot of docs/compression.md.

    python -m builders variants --profile default        # build + measure in-process and quality
    python -m benchmarks.variants --profile default --out docs/compression.md

For each variant the served repository is the reference one with only that model's ``model.onnx``
swapped; the server is restarted per variant, without the response cache (it would hide the
encoder's cost); every variant gets the same requests. Encoder variants
are measured on search requests with 100 candidates (the encoder dominates), ranker variants on
search requests with 1,000 candidates (the ranker's share grows with the candidates). Measured: p50 at
concurrency 1 and throughput with 8 requests in flight. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, make_requests, serve_and_measure, write_section
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime import contract as c

logger = logging.getLogger(__name__)

CANDIDATES = {"encoder": 100, "ranker": 1000}
MODEL_DIR = {"encoder": c.TEXT_ENCODER, "ranker": c.RANKER}


def run(work: Path, n: int, in_flight: int, rounds: int = 2) -> dict:

    report = json.loads((work / "variants" / "report.json").read_text())
    repo = work / "variants" / "served_repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(work / "bench_repo", repo)
    pipeline = InProcessPipeline(repo)
    for model in ("encoder", "ranker"):
        requests = make_requests(pipeline, n, CANDIDATES[model])
        target = repo / MODEL_DIR[model] / "1" / "model.onnx"
        reference = target.read_bytes()
        runs: dict[str, list[dict]] = {name: [] for name in report[model]}
        for r in range(rounds):  # alternating order: drift on the machine hits every variant alike
            for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
                shutil.copyfile(report[model][name]["file"], target)
                logger.info(f"[served round {r + 1}] {model}/{name}")
                m = serve_and_measure(repo, requests, in_flight, cache_bytes=0, warmup=30)
                runs[name].append({"served_p50_ms": m["p50"], "served_p99_ms": m["p99"], "served_rps": m["rps"]})
        for name, measured in runs.items():
            report[model][name]["served"] = {k: float(np.median([m[k] for m in measured])) for k in measured[0]}
        target.write_bytes(reference)
    report["served_setup"] = {"requests": n, "in_flight": in_flight, "candidates": CANDIDATES, "rounds": rounds}
    (work / "variants" / "report_served.json").write_text(json.dumps(report, indent=1))
    return report


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower latency, higher quality)."""
    keep = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            keep.append(i)
    return keep


def table(report: dict, model: str) -> str:
    entries = report[model]
    ref = entries["fp32"]
    lat = "p50_ms_8tok" if model == "encoder" else "p50_ms_200rows"
    thr = "queries_per_s_batch32" if model == "encoder" else "rows_per_s_batch4096"
    thr_label = "queries/s (batch 32)" if model == "encoder" else "rows/s (batch 4096)"
    lat_label = "1 query, 8 tokens" if model == "encoder" else "200 rows"
    head = (
        f"| variant | size | in-process p50 ({lat_label}) | speed-up | in-process {thr_label} | served p50 | "
        f"served speed-up | served req/s | NDCG@10 | vs fp32 | AUC |"
        + (
            " encoder gain kept (searches) | cosine to teacher (queries / held-out titles) |"
            if model == "encoder"
            else ""
        )
        + " gate |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, e in entries.items():
        s, q, sv = e["speed"], e["quality"], e.get("served", {})
        served = (
            (
                f"{sv['served_p50_ms']:.2f} ms | {ref['served']['served_p50_ms'] / sv['served_p50_ms']:.2f}x | "
                f"{sv['served_rps']:.0f} |"
            )
            if sv
            else "– | – | – |"
        )
        kept = f" {q['encoder_gain_retained']:.0%} |" if "encoder_gain_retained" in q else " – |"
        cos = f"{kept} {q['cosine_queries']:.4f} / {q['cosine_held_out_titles']:.4f} |" if model == "encoder" else ""
        lines.append(
            f"| {name} | {e['mb']:.1f} MB | {s[lat]:.3f} ms | {ref['speed'][lat] / s[lat]:.2f}x | {s[thr]:,.0f} | "
            f"{served} {q['ndcg@10']:.4f} | {0.0 - e['gate']['relative_drop']:+.2%} | {q['auc']:.4f} |{cos} "
            f"{'pass' if e['gate']['passed'] else 'refused'} |"
        )
    return "\n".join(lines)


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, model in zip(axes, ("encoder", "ranker"), strict=True):
        entries = report[model]
        lat = "p50_ms_8tok" if model == "encoder" else "p50_ms_200rows"
        names = list(entries)
        points = [(entries[n]["speed"][lat], entries[n]["quality"]["ndcg@10"]) for n in names]
        passed = [i for i, n in enumerate(names) if entries[n]["gate"]["passed"]]
        front = {passed[j] for j in pareto([points[i] for i in passed])}  # refused variants are not candidates
        for i, (name, (x, y)) in enumerate(zip(names, points, strict=True)):
            refused = i not in passed
            ax.scatter(
                [x], [y], color="tab:red" if i in front else "tab:gray", marker="x" if refused else "o", zorder=3
            )
            ax.annotate(
                name + (" (refused)" if refused else ""), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        fx = sorted(points[i] for i in front)
        ax.plot([p[0] for p in fx], [p[1] for p in fx], color="tab:red", lw=1, ls="--", label="Pareto front")
        ref_q = entries["fp32"]["quality"]["ndcg@10"]
        ax.axhline(ref_q * (1 - report.get("margin", 0.01)), color="tab:blue", lw=0.8, ls=":", label="quality gate")
        ax.set_xlabel(f"in-process p50 latency, ms ({'1 query, 8 tokens' if model == 'encoder' else '200 rows'})")
        ax.set_ylabel("NDCG@10 (test split)")
        ax.set_title(f"{model} variants")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2, help="served rounds in alternating order; the median is shown")
    p.add_argument("--no-served", action="store_true", help="only the in-process and quality numbers")
    p.add_argument("--out", type=Path, default=None, help="markdown file for the tables (and a PNG beside it)")
    args = p.parse_args(argv)
    work = Path("build") / args.profile
    report = (
        json.loads((work / "variants" / "report.json").read_text())
        if args.no_served
        else run(work, args.requests, args.in_flight, args.rounds)
    )
    text = (
        f"Machine: {machine()}\n\nDate: {date.today().isoformat()}; profile `{args.profile}`; "
        f"served: {args.requests} search requests per variant ({CANDIDATES['encoder']} candidates for encoder "
        f"variants, {CANDIDATES['ranker']} for ranker variants), p50 at concurrency 1, req/s with "
        f"{args.in_flight} in flight, median of {args.rounds} rounds in alternating order (a fresh server per "
        f"variant and round); quality on the test split. Reproduce: `make bench-variants`.\n\n"
        f"**Text encoder**\n\n{table(report, 'encoder')}\n\n**Ranker**\n\n{table(report, 'ranker')}\n"
    )
    print(text)
    if args.out:
        write_section(args.out, "variants", text)
        plot(report, args.out.with_name("compression_pareto.png"))
        print(f"written into {args.out} and {args.out.with_name('compression_pareto.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

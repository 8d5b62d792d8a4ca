"""Capacity planning: what one replica sustains, how many replicas a peak needs, what the HPA targets.

    python -m loadtest.capacity --peak-rps 400 --headroom 0.3 --slo-p99-ms 100 --error-budget 0.001 \\
        --out build/capacity                      # runs the step ramp against one local replica
    python -m loadtest.capacity --samples build/capacity/samples.csv ...   # re-analyse a finished run

1. A step ramp (``loadtest.run --shape step``) raises the offered load every ``step_s`` seconds:
   ``users * rate_per_user`` requests per second.
2. Every request is binned into its step by its start time. The first quarter of each step is
   dropped as warm-up. Per step: offered and achieved rate, latency percentiles, error ratio.
3. The sustainable rate is the achieved rate of the last step before the first step that breaks
   the p99 SLO, the error budget, or achieves under 90% of the offered rate (saturated and queueing).
   Later steps do not count even if they pass: that would be luck in a noisy tail.
4. ``replicas = ceil(peak * (1 + headroom) / sustainable)``. The autoscaler targets are set below
   saturation: ``target_utilization * sustainable`` requests per second per pod, and the matching
   in-flight requests per pod.

Writes ``capacity.md`` and ``latency.png`` / ``throughput.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from loadtest import run as runner
from loadtest.shapes import StepShape, add_shape_arguments


@dataclass(frozen=True)
class StepStats:
    users: int
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_ratio: float
    requests: int


@dataclass(frozen=True)
class Plan:
    sustainable_rps: float
    sustainable_users: int
    peak_rps: float
    headroom: float
    replicas: int
    target_rps_per_pod: float
    target_inflight_per_pod: float
    p99_at_sustainable_ms: float


@dataclass(frozen=True)
class CallStats:
    """One call's requests within one step: in a mix, which call carries the tail."""

    name: str
    requests: int
    p50_ms: float
    p99_ms: float
    error_ratio: float


def read_samples(path: Path) -> np.ndarray:
    """Structured array of (start, ms, ok, name) from the locustfile's samples CSV (start = end - latency)."""
    rows = []
    with open(path) as f:
        for row in csv.DictReader(f):
            ms = float(row["ms"])
            rows.append((float(row["time"]) - ms / 1e3, ms, int(row["ok"]), row.get("name", "")))
    return np.array(rows, dtype=[("start", float), ("ms", float), ("ok", int), ("name", "U64")])


Step = tuple[float, float, int]  # (start, end, users), seconds from the first request


def measured(step: Step, warmup_fraction: float = 0.25) -> tuple[float, float]:
    """The part of a step that counts: its first ``warmup_fraction`` dropped."""
    start, end, _ = step
    return start + (end - start) * warmup_fraction, end


def _within(samples: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """The samples that started within ``window`` (seconds from the first request)."""
    rel = samples["start"] - samples["start"].min()
    return samples[(rel >= window[0]) & (rel < window[1])]


def _answered(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which samples succeeded, and the latencies the percentiles read (the successes', or all if none)."""
    ok = sel["ok"] == 1
    return ok, (sel["ms"][ok] if ok.any() else sel["ms"])


def call_stats(samples: np.ndarray, window: tuple[float, float]) -> list[CallStats]:
    """Per call (the samples' ``name``), its requests that started within ``window``, busiest call first."""
    sel = _within(samples, window)
    out = []
    for name in np.unique(sel["name"]):
        mine = sel[sel["name"] == name]
        ok, lat = _answered(mine)
        p50, p99 = (float(np.percentile(lat, q)) for q in (50, 99))
        out.append(CallStats(str(name), int(len(mine)), p50, p99, float(1 - ok.mean())))
    return sorted(out, key=lambda c: (-c.requests, c.name))


def step_stats(
    samples: np.ndarray, steps: list[Step], rate_per_user: float, warmup_fraction: float = 0.25
) -> list[StepStats]:
    """Per-step statistics over each step's ``measured`` part."""
    out = []
    for step in steps:
        lo, end = measured(step, warmup_fraction)
        sel = _within(samples, (lo, end))
        if len(sel) == 0:
            continue
        ok, lat = _answered(sel)
        p50, p95, p99 = (float(np.percentile(lat, q)) for q in (50, 95, 99))
        users = step[2]
        out.append(
            StepStats(
                users=users,
                offered_rps=users * rate_per_user,
                achieved_rps=float(ok.sum() / (end - lo)),
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                error_ratio=float(1 - ok.mean()),
                requests=int(len(sel)),
            )
        )
    return out


def sustainable(
    stats: list[StepStats], slo_p99_ms: float, error_budget: float, min_efficiency: float = 0.9
) -> StepStats | None:
    """The last step before the first one that breaks the SLO, the budget, or falls behind the offer.

    A step that passes after a failing one is luck in a noisy tail, not capacity: the ramp stops
    counting at the first failure.
    """
    best = None
    for s in sorted(stats, key=lambda s: s.offered_rps):
        if s.p99_ms > slo_p99_ms or s.error_ratio > error_budget or s.achieved_rps < min_efficiency * s.offered_rps:
            break
        best = s
    return best


def plan(best: StepStats, peak_rps: float, headroom: float, target_utilization: float = 0.7) -> Plan:
    if best.achieved_rps <= 0:
        raise ValueError("sustainable rate must be > 0")
    replicas = max(1, math.ceil(peak_rps * (1 + headroom) / best.achieved_rps))
    # Little's law: requests in flight = rate * latency; at the target rate and the measured p50.
    target_rps = target_utilization * best.achieved_rps
    return Plan(
        best.achieved_rps,
        best.users,
        peak_rps,
        headroom,
        replicas,
        target_rps,
        target_rps * best.p50_ms / 1e3,
        best.p99_ms,
    )


def plot(stats: list[StepStats], out: Path, slo_p99_ms: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [s.offered_rps for s in stats]

    def figure(name: str, ylabel: str, title: str, draw) -> Path:
        fig, ax = plt.subplots(figsize=(6, 4))
        draw(ax)
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} against offered load (one replica)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        return out / name

    def latency(ax):
        for q, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
            ax.plot(offered, [getattr(s, q) for s in stats], marker="o", label=label)
        ax.axhline(slo_p99_ms, color="red", linestyle="--", label=f"p99 SLO {slo_p99_ms:g} ms")

    def throughput(ax):
        ax.plot(offered, [s.achieved_rps for s in stats], marker="o", label="achieved")
        ax.plot(offered, offered, linestyle=":", color="grey", label="offered = achieved")

    return [
        figure("latency.png", "latency (ms)", "Latency", latency),
        figure("throughput.png", "throughput (requests/s)", "Throughput", throughput),
    ]


def markdown(
    stats: list[StepStats],
    result: Plan | None,
    slo_p99_ms: float,
    error_budget: float,
    calls: dict[int, list[CallStats]] | None = None,
    catalog_share: float | None = None,
) -> str:
    """The plan as markdown; ``calls``: per-call statistics by step (users), shown after the steps."""
    mix = (
        f" Traffic: {catalog_share:.0%} catalogue calls (search_catalog / recommend_catalog), the rest "
        "re-ranking (search / recommend)."
        if catalog_share is not None
        else ""
    )
    lines = [
        "# Capacity plan (one replica)",
        "",
        f"SLO: p99 ≤ {slo_p99_ms:g} ms; error budget {error_budget:.2%}.{mix}",
        "",
        "| users | offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | errors | requests |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        lines.append(
            f"| {s.users} | {s.offered_rps:.0f} | {s.achieved_rps:.1f} | {s.p50_ms:.1f} | {s.p95_ms:.1f} | "
            f"{s.p99_ms:.1f} | {s.error_ratio:.2%} | {s.requests} |"
        )
    lines.append("")
    if result is None:
        lines.append(
            "**No step met the SLO**: one replica cannot serve even the lowest step. Lower the step "
            "size or look at the server first."
        )
    else:
        top = max(stats, key=lambda s: s.offered_rps)
        bound = (
            " The ramp's last step passed: that is a lower bound, not the replica's limit (ramp further: "
            "`--max-users`; past the generator's own limit, with Locust workers on other machines)."
            if result.sustainable_users == top.users
            else ""
        )
        lines += [
            f"- Sustainable rate of one replica: **{result.sustainable_rps:.1f} req/s** "
            f"(at {result.sustainable_users} users, p99 {result.p99_at_sustainable_ms:.1f} ms).{bound}",
            f"- Peak {result.peak_rps:g} req/s with {result.headroom:.0%} headroom needs "
            f"**{result.replicas} {'replica' if result.replicas == 1 else 'replicas'}**.",
            f"- Autoscaler targets per pod: **{result.target_rps_per_pod:.1f} req/s**, or "
            f"**{result.target_inflight_per_pod:.2f} requests in flight** (Little's law at p50).",
        ]
    for users, per_call in sorted((calls or {}).items()):
        lines += [
            "",
            f"Per call at the {users}-user step:",
            "",
            "| call | requests | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.name} | {c.requests} | {c.p50_ms:.1f} | {c.p99_ms:.1f} | {c.error_ratio:.2%} |" for c in per_call
        ]
    lines += ["", "![latency](latency.png) ![throughput](throughput.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peak-rps", type=float, required=True)
    p.add_argument("--headroom", type=float, default=0.3)
    p.add_argument("--slo-p99-ms", type=float, default=100.0)
    p.add_argument("--error-budget", type=float, default=0.001)
    p.add_argument("--target-utilization", type=float, default=0.7)
    add_shape_arguments(p)
    p.set_defaults(shape="step", step_s=15.0, max_users=24)
    p.add_argument("--samples", type=Path, default=None, help="analyse this samples.csv instead of running")
    p.add_argument("--repo", default=None)
    p.add_argument("--shop", default=None)
    p.add_argument(
        "--catalog-share",
        type=float,
        default=0.0,
        help="share of requests without candidates (search_catalog / recommend_catalog: a shop's search and "
        "product pages); 0: re-ranking only",
    )
    p.add_argument("--out", type=Path, default=Path("build/capacity"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    samples_path = args.samples
    if samples_path is None:
        run_args = [
            "--shape",
            "step",
            "--step-users",
            str(args.step_users),
            "--step-s",
            str(args.step_s),
            "--max-users",
            str(args.max_users),
            "--rate-per-user",
            str(args.rate_per_user),
            "--catalog-share",
            str(args.catalog_share),
            "--out",
            str(args.out),
        ]
        run_args += ["--repo", args.repo] if args.repo else []
        run_args += ["--shop", args.shop] if args.shop else []
        runner.main(run_args)
        samples_path = args.out / "samples.csv"
    shape = StepShape(args.step_users, args.step_s, args.max_users)
    samples = read_samples(samples_path)
    stats = step_stats(samples, shape.steps(), args.rate_per_user)
    best = sustainable(stats, args.slo_p99_ms, args.error_budget)
    result = plan(best, args.peak_rps, args.headroom, args.target_utilization) if best else None
    # each call at the sustainable step and at the step after it (the first that broke: which call broke it)
    ordered = sorted(stats, key=lambda s: s.offered_rps)
    shown = ordered[: 1 if best is None else ordered.index(best) + 2][-2:]
    step_of = {step[2]: step for step in shape.steps()}
    calls = {s.users: call_stats(samples, measured(step_of[s.users])) for s in shown}
    plot(stats, args.out, args.slo_p99_ms)
    text = markdown(stats, result, args.slo_p99_ms, args.error_budget, calls, args.catalog_share)
    (args.out / "capacity.md").write_text(text)
    print((args.out / "capacity.md").read_text())
    if result:
        print(asdict(result))
    return 0 if result else 1


if __name__ == "__main__":
    raise SystemExit(main())

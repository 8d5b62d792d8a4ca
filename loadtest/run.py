"""Run a headless Locust test against a local (or given) server and compare with the server's metrics.

    python -m loadtest.run --repo build/small/repo --shop build/small/data --shape soak --soak-s 20 \\
        --out build/loadtest/soak [--workers 2] [--host 127.0.0.1:8001] [-- extra locust args]

Writes ``<out>/locust_stats.csv`` (and the other CSVs), ``<out>/report.html``, ``<out>/samples.csv``
(every request; single-process runs only: in a distributed run the requests happen on the workers)
and ``<out>/summary.md``. The summary sets Locust's latency beside Triton's own per-model request
time from the metrics endpoint, read before and after the run. It also gives the load generator's CPU
use: when the generator needs a full core, it is the bottleneck, not the server.
Exit status: Locust's (non-zero when the SLO gate or a failure says so).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from loadtest.shapes import add_shape_arguments
from loadtest.traffic import TrafficProfile, prepare, save
from runtime import contract as c
from server.launcher import ServerOptions, TritonServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def _metric_line(label: str) -> re.Pattern[str]:
    return re.compile(rf'^([a-z_]+)\{{[^}}]*{label}="([^"]+)"[^}}]*\}}\s+([0-9.eE+-]+)$')


def spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start a Locust process with its output in `log_path` (the child keeps its own copy of the handle)."""
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def scrape(metrics_url: str, label: str = "model") -> dict[tuple[str, str], float]:
    """Triton's metrics (its own and the models' custom ones) by one label: {(metric, value of ``label``):
    value}, summed over the other labels; metrics without that label are left out."""
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        text = resp.read().decode()
    pattern = _metric_line(label)
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            out[(m.group(1), m.group(2))] = out.get((m.group(1), m.group(2)), 0.0) + float(m.group(3))
    return out


def server_latency(before: dict, after: dict, model: str) -> dict:
    """Mean request/queue/compute time per request of ``model`` between two scrapes (ms)."""
    n = after.get(("nv_inference_request_success", model), 0) - before.get(("nv_inference_request_success", model), 0)
    if n <= 0:
        return {"requests": 0}

    def mean(metric):
        return (after.get((metric, model), 0) - before.get((metric, model), 0)) / n / 1e3

    return {
        "requests": int(n),
        "request_ms": mean("nv_inference_request_duration_us"),
        "queue_ms": mean("nv_inference_queue_duration_us"),
        "compute_ms": mean("nv_inference_compute_infer_duration_us"),
    }


def locust_command(
    host: str, requests_file: Path, out: Path, args: argparse.Namespace, extra: list[str], role: list[str]
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--requests-file",
        str(requests_file),
        "--shape",
        args.shape,
        "--rate-per-user",
        str(args.rate_per_user),
        "--step-users",
        str(args.step_users),
        "--step-s",
        str(args.step_s),
        "--max-users",
        str(args.max_users),
        "--spike-users",
        str(args.spike_users),
        "--spike-s",
        str(args.spike_s),
        "--soak-users",
        str(args.soak_users),
        "--soak-s",
        str(args.soak_s),
        "--loglevel",
        "WARNING",
        # Stopping users lets each finish its request in flight: a killed user would cancel its gRPC
        # call, and Triton 24.10 can crash on such cancellations (server#7368, docs/serving.md).
        "--stop-timeout",
        "15",
    ]
    if "--worker" in role:  # workers send their stats to the master, which writes every report
        return cmd + role
    cmd += [
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--html",
        str(out / "report.html"),
        "--samples-file",
        str(out / "samples.csv"),
        "--only-summary",
    ]
    for flag, value in (
        ("--slo-p95-ms", args.slo_p95_ms),
        ("--slo-p99-ms", args.slo_p99_ms),
        ("--max-fail-ratio", args.max_fail_ratio),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd + role + extra


def run(args: argparse.Namespace, extra: list[str]) -> int:

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    requests_file = out / "requests.jsonl"
    profile = TrafficProfile(catalog_share=args.catalog_share)
    save(prepare(Path(args.repo), Path(args.shop), args.requests, profile, seed=args.seed), requests_file)
    server = None
    if args.host:
        host, metrics_url = args.host, args.metrics_url
    else:
        server = TritonServer(ServerOptions(model_repository=Path(args.repo), log_file=out / "tritonserver.log"))
        server.start()
        host, metrics_url = server.grpc_url, server.metrics_url
    try:
        before = scrape(metrics_url) if metrics_url else {}
        started = time.monotonic()
        if args.workers:
            port = free_port()
            master = spawn(
                locust_command(
                    host,
                    requests_file,
                    out,
                    args,
                    extra,
                    ["--master", "--expect-workers", str(args.workers), "--master-bind-port", str(port)],
                ),
                out / "locust.log",
            )
            workers = [
                spawn(
                    locust_command(host, requests_file, out, args, [], ["--worker", "--master-port", str(port)]),
                    out / f"worker{i}.log",
                )
                for i in range(args.workers)
            ]
            procs = [master] + workers
        else:
            master = spawn(locust_command(host, requests_file, out, args, extra, []), out / "locust.log")
            procs = [master]
        watched = [psutil.Process(p.pid) for p in procs]
        cpu = {p.pid: 0.0 for p in watched}
        while master.poll() is None:
            for w in watched:
                try:
                    t = w.cpu_times()
                    cpu[w.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.5)
        for p in procs[1:]:
            p.wait(timeout=30)
        wall = time.monotonic() - started
        after = scrape(metrics_url) if metrics_url else {}
    finally:
        if server is not None:
            server.stop()
    code = master.returncode
    write_summary(out, before, after, cpu, wall, args, code)
    print((out / "summary.md").read_text())
    print(f"reports in {out}")
    return code


def locust_rows(stats_csv: Path) -> dict[str, dict]:
    with open(stats_csv) as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def writes_per_s(row: dict) -> float:
    """An online-store write row's writes a second: batches a second times writes per batch (its length)."""
    return float(row["Average Content Size"] or 0) * float(row["Requests/s"] or 0)


def write_summary(out: Path, before: dict, after: dict, cpu: dict, wall: float, args, code: int) -> None:
    rows = locust_rows(out / "locust_stats.csv")
    ranking = [rows[n] for n in c.CALLS if n in rows]  # every public call the traffic sent
    count = sum(int(r["Request Count"]) for r in ranking)
    failures = sum(int(r["Failure Count"]) for r in ranking)
    rate = sum(float(r["Requests/s"] or 0) for r in ranking)
    lines = [
        f"# Load test: shape `{args.shape}`",
        "",
        f"Exit code {code}; {count} ranking requests, {failures} failures, "
        f"{rate:.1f} req/s over {wall:.0f} s "
        f"({'distributed, ' + str(args.workers) + ' workers' if args.workers else 'one Locust process'}).",
        "",
        "| request | Locust mean | Locust p50 | Locust p95 | Locust p99 | server mean (Triton metrics) | "
        "server queue | gap: client + network + generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in c.CALLS:
        if name not in rows:
            continue
        r = rows[name]
        s = server_latency(before, after, name)
        mean = float(r["Average Response Time"])
        if s.get("requests"):
            lines.append(
                f"| {name} | {mean:.1f} ms | {r['50%']} ms | {r['95%']} ms | {r['99%']} ms | "
                f"{s['request_ms']:.1f} ms | {s['queue_ms']:.2f} ms | {mean - s['request_ms']:.1f} ms |"
            )
        else:
            lines.append(f"| {name} | {mean:.1f} ms | {r['50%']} ms | {r['95%']} ms | {r['99%']} ms | - | - | - |")
    writes = [(n, rows[n]) for n in ("update", "click") if n in rows]
    if writes:
        lines += [
            "",
            "Online-store writes during the run (`--online-url`), pipelined batches:",
            "",
            "| write | batches | failed batches | writes/s | batch p50 | batch p99 |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in writes:
            lines.append(
                f"| {name} | {r['Request Count']} | {r['Failure Count']} | "
                f"{writes_per_s(r):.0f} | {r['50%']} ms | "
                f"{r['99%']} ms |"
            )
    busiest = max(cpu.values()) / wall if wall > 0 and cpu else 0.0
    lines += [
        "",
        f"Load generator CPU: busiest Locust process used {busiest:.0%} of one core "
        f"({sum(cpu.values()) / wall:.0%} over all its processes). A Locust process is single-threaded "
        "(gevent): near 100% it is the bottleneck, not the server.",
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default=str(REPO_ROOT / "build" / "small" / "repo"))
    p.add_argument("--shop", default=str(REPO_ROOT / "build" / "small" / "data"))
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "loadtest" / "run"))
    p.add_argument("--host", default="", help="gRPC host:port of a running server (default: start one)")
    p.add_argument("--metrics-url", default="", help="its metrics URL, with --host")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--catalog-share", type=float, default=0.0, help="share of requests without candidates")
    p.add_argument("--workers", type=int, default=0, help="distributed: a master and this many workers")
    add_shape_arguments(p)
    p.add_argument("--slo-p95-ms", type=float, default=None)
    p.add_argument("--slo-p99-ms", type=float, default=None)
    p.add_argument("--max-fail-ratio", type=float, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return run(args, extra)


if __name__ == "__main__":
    raise SystemExit(main())

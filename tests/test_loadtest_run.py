"""Headless Locust runs against the real local server: requests, reports, SLO gate, distributed."""

import csv

import pytest

from loadtest import run as runner
from loadtest.traffic import UNKNOWN_USER_BASE, TrafficProfile, prepare

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_prepared_traffic_has_the_configured_mix(small_repo):
    from tests.conftest import REPO_ROOT

    reqs = prepare(small_repo, REPO_ROOT / "build" / "small" / "data", 2000, TrafficProfile())
    search = [r for r in reqs if r["kind"] == "search"]
    assert 0.75 < len(search) / len(reqs) < 0.85
    assert 0.02 < sum(r["user_id"] >= UNKNOWN_USER_BASE for r in reqs) / len(reqs) < 0.08
    sizes = [len(r["candidates"]) for r in reqs]
    assert min(sizes) >= 10 and max(sizes) <= 300 and 40 < sorted(sizes)[len(sizes) // 2] < 90
    assert all(len(set(r["candidates"])) == len(r["candidates"]) for r in reqs)
    counts = {}
    for r in search:
        counts[r["query"]] = counts.get(r["query"], 0) + 1
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[0] > 10 * ranked[len(ranked) // 2]  # a head that repeats, a long tail that does not


def run(triton_server, tmp_path, *extra):
    from tests.conftest import REPO_ROOT

    repo = triton_server.options.model_repository
    args = [
        "--repo",
        str(repo),
        "--shop",
        str(REPO_ROOT / "build" / "small" / "data"),
        "--host",
        triton_server.grpc_url,
        "--metrics-url",
        triton_server.metrics_url,
        "--requests",
        "500",
        "--shape",
        "soak",
        "--soak-users",
        "3",
        "--soak-s",
        "8",
        "--out",
        str(tmp_path),
        *extra,
    ]
    return runner.main(args)


def test_short_headless_run_succeeds_and_writes_reports(triton_server, tmp_path):
    assert run(triton_server, tmp_path, "--slo-p99-ms", "2000", "--max-fail-ratio", "0") == 0
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) >= 40 and int(rows["Aggregated"]["Failure Count"]) == 0
    assert {"search", "recommend"} <= set(rows)
    assert "locust" in (tmp_path / "report.html").read_text().lower()
    with open(tmp_path / "samples.csv") as f:
        samples = len(list(csv.DictReader(f)))
    # Every request is a sample; users finishing their in-flight request during the stop (--stop-timeout)
    # may add one each after Locust's final statistics: 3 users here.
    requests = int(rows["Aggregated"]["Request Count"])
    assert requests <= samples <= requests + 3
    summary = (tmp_path / "summary.md").read_text()
    assert "server mean (Triton metrics)" in summary and "| search |" in summary


def test_slo_gate_fails_an_impossible_slo(triton_server, tmp_path):
    assert run(triton_server, tmp_path, "--slo-p99-ms", "0.001") == 1


def test_distributed_run_with_two_workers(triton_server, tmp_path):
    assert run(triton_server, tmp_path, "--workers", "2", "--max-fail-ratio", "0") == 0
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) >= 40
    assert "2 workers" in (tmp_path / "summary.md").read_text()

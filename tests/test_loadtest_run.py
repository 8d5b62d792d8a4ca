"""Headless Locust runs against the real local server: requests, reports, SLO gate, distributed."""

import csv

import pytest

from loadtest import run as runner
from loadtest.traffic import UNKNOWN_USER_BASE, TrafficProfile, prepare
from online.writer import OnlineWriter
from runtime import contract as c
from runtime.online_store import OnlineSettings, connect, recent_key

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


def test_prepared_traffic_mixes_in_catalogue_requests(small_repo):
    from tests.conftest import REPO_ROOT

    reqs = prepare(small_repo, REPO_ROOT / "build" / "small" / "data", 2000, TrafficProfile(catalog_share=0.3))
    catalogue = [r for r in reqs if r["kind"].endswith("_catalog")]
    assert 0.25 < len(catalogue) / len(reqs) < 0.35
    assert all("candidates" not in r and isinstance(r["exclude"], list) for r in catalogue)
    recs = [r for r in catalogue if r["kind"] == "recommend_catalog"]
    assert recs and any(r["context"] for r in recs) and any(not r["context"] for r in recs)
    assert all(r["query"] for r in catalogue if r["kind"] == "search_catalog")
    # what search and category pages send, valid for this release's catalogue (the server's own parser)
    from runtime.catalog import Catalog
    from runtime.options import parse_options
    from shoprank_client.listing import options_parameter

    catalog = Catalog.load(small_repo / "retrieve_search" / "1", "feature_store")
    searches = [r for r in catalogue if r["kind"] == "search_catalog"]
    assert all(r["listing"]["facets"] == ["brand", "price"] for r in searches)
    filtered = sum("filters" in r["listing"] for r in searches) / len(searches)
    paged = sum("offset" in r["listing"] for r in searches) / len(searches)
    assert 0.2 < filtered < 0.4 and 0.08 < paged < 0.22
    assert any(r["listing"].get("sort") == "price_asc" for r in searches)
    assert all(r["listing"] == {} for r in recs if r["context"])  # a product page sends none
    assert any("filters" in r["listing"] for r in recs if not r["context"])  # a category strip
    for r in catalogue:
        sent = options_parameter(**r["listing"])
        parse_options(None if sent is None else sent["shoprank_options"], catalog)  # raises if invalid
    plain = prepare(
        small_repo, REPO_ROOT / "build" / "small" / "data", 200, TrafficProfile(catalog_share=0.3, listing=False)
    )
    assert not any("listing" in r for r in plain)


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
    args = ("--slo-p99-ms", "2000", "--max-fail-ratio", "0", "--catalog-share", "0.3")
    assert run(triton_server, tmp_path, *args) == 0
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) >= 40 and int(rows["Aggregated"]["Failure Count"]) == 0
    assert {"search", "recommend", "search_catalog"} <= set(rows)  # the catalogue calls succeed under load
    assert "locust" in (tmp_path / "report.html").read_text().lower()
    with open(tmp_path / "samples.csv") as f:
        samples = len(list(csv.DictReader(f)))
    # Every request is a sample; users finishing their in-flight request during the stop (--stop-timeout)
    # may add one each after Locust's final statistics: 3 users here.
    requests = int(rows["Aggregated"]["Request Count"])
    assert requests <= samples <= requests + 3
    summary = (tmp_path / "summary.md").read_text()
    assert "server mean (Triton metrics)" in summary and "| search |" in summary
    assert "| search_catalog |" in summary  # every call sent has its row, and counts in the total
    calls = [n for n in c.CALLS if n in rows]
    assert f"; {sum(int(rows[n]['Request Count']) for n in calls)} ranking requests," in summary


def test_slo_gate_fails_an_impossible_slo(triton_server, tmp_path):
    assert run(triton_server, tmp_path, "--slo-p99-ms", "0.001") == 1


def test_distributed_run_with_two_workers(triton_server, tmp_path):
    assert run(triton_server, tmp_path, "--workers", "2", "--max-fail-ratio", "0") == 0
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["Aggregated"]["Request Count"]) >= 40
    assert "2 workers" in (tmp_path / "summary.md").read_text()


def test_run_with_online_writes_lands_them_in_redis_and_reports_them(triton_server, redis_server, tmp_path):
    """``--online-url``: item updates and clicks written into the real Redis during the run, reported as
    their own rows, and left out of the ranking requests' count and SLO gate."""
    import json

    client = connect(OnlineSettings(url=redis_server.url, timeout_s=5))
    writer = OnlineWriter(client, prefix="lt")
    writer.clear()
    code = run(
        triton_server,
        tmp_path,
        "--max-fail-ratio",
        "0",
        "--",
        "--online-url",
        redis_server.url,
        "--online-prefix",
        "lt",
        "--update-rate",
        "200",
    )
    assert code == 0
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(rows["update"]["Failure Count"]) == 0 and int(rows["click"]["Failure Count"]) == 0
    # 8 s at 50 batches/s: far more than 100 batches of each, unless the writer stalled.
    assert int(rows["update"]["Request Count"]) > 100 and int(rows["click"]["Request Count"]) > 100
    item_keys = list(client.scan_iter(match="lt:item:*", count=1000))
    recent_keys = list(client.scan_iter(match="lt:recent:*", count=1000))
    assert len(item_keys) > 100 and len(recent_keys) > 10
    users = {r["user_id"] for r in map(json.loads, (tmp_path / "requests.jsonl").read_text().splitlines())}
    assert all(int(k.rsplit(b":", 1)[1]) in users for k in recent_keys)  # clicks of the requests' users
    assert client.ttl(recent_key("lt", int(recent_keys[0].rsplit(b":", 1)[1]))) <= 30 * 60  # session expiry
    summary = (tmp_path / "summary.md").read_text()
    ranking = int(rows["search"]["Request Count"]) + int(rows["recommend"]["Request Count"])
    assert f"{ranking} ranking requests, 0 failures" in summary and "| update |" in summary
    writer.clear()

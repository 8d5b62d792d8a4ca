"""Odd but valid data: each small shop of ``tests/odd_shops.py`` builds and serves, or ``check-data`` refuses it
with a message that names what is wrong; none ends in a traceback.

A served shop is checked against a real tritonserver: its golden set (the build's own answers) through
``rollout verify``, and each of the four calls through the SDK, a filter included. What the data cannot
carry (no positions, no searches, ...) is said once in the build log and in ``build_report.json``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from builders.__main__ import check_data
from builders.build import build
from builders.data import config as cfg_mod
from builders.data.dataset import load_shop
from builders.learning.rows import propensities
from rollout.__main__ import main as rollout
from server.launcher import ServerOptions, TritonServer
from shoprank_client import Filters, RankingClient
from tests import odd_shops
from tests.helpers import logged

# what each odd shop's build must say it could not do (its "limits"); the others must have none
SAID = {
    "no positions": "no event has a position",
    "every position equal": "every known position is 0",
    "no item at two positions": "position bias cannot be measured",
    "recommendations only": "no list has a query",
    "searches only": "no homepage or product-page list",
    "every visitor anonymous": "every visitor is anonymous",
}


def write(folder: Path, catalogue, customers, events, config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(catalogue, folder / "catalogue.csv")
    if customers is not None:
        pq.write_table(customers, folder / "customers.parquet")
    pacsv.write_csv(events, folder / "events.csv")
    path = folder / "shoprank.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def checked(path: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = check_data(path)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.parametrize("odd", odd_shops.SERVED, ids=lambda o: o.name)
def test_odd_but_valid_data_builds_and_serves(odd, tmp_path):
    catalogue, customers, events, config = odd.tables()
    path = write(tmp_path / "data", catalogue, customers, events, config)
    code, said = checked(path)
    assert code == 0 and "follows the data contract" in said, said
    with logged() as logs:
        report = build(config=path, out=tmp_path / "repo", work=tmp_path / "work", progress=False, golden_size=40)
    limits = report["limits"]
    if odd.name in SAID:
        assert any(SAID[odd.name] in limit for limit in limits), limits
    else:
        assert limits == [], limits
    for limit in limits:  # said once in the build log, and by check-data
        assert logs.count(f"data: {limit}") == 1 and f"limit: {limit}" in said
    page = (tmp_path / "work" / "build_report.html").read_text()
    if any("position" in limit for limit in limits):  # judged on plain clicks, no debiased view
        assert "ndcg@10_ips" not in report["ranker"]["test"]["ranker"] and 'id="no-propensity"' in page
    else:
        assert np.isfinite(report["ranker"]["test"]["ranker"]["ndcg@10_ips"]) and 'id="no-propensity"' not in page

    skus = catalogue.column("sku").to_pylist()
    server = TritonServer(
        ServerOptions(model_repository=tmp_path / "repo", log_file=tmp_path / "triton.log", ready_timeout_s=180)
    )
    server.start()
    try:
        lines: list[str] = []
        assert rollout(["verify", "--golden", str(tmp_path / "repo"), "--url", server.http_url], lines.append) == 0
        assert "verify: PASSED" in "\n".join(lines)
        with RankingClient(server.grpc_url, timeout_s=20) as client:
            user = "client-0001" if customers is not None else "visitor"
            found = client.search(user, "fromages", skus[:40], k=5)
            assert len(found.item_ids) == 5 and set(found.item_ids) <= set(skus[:40])
            shown = client.recommend(user, skus[40:80], k=5)
            assert len(shown.item_ids) == 5 and set(shown.item_ids) <= set(skus[40:80])
            listing = client.search_catalog(user, "pâtes", k=8, filters=Filters(max_price=10.0))
            prices = dict(zip(skus, catalogue.column("unit_price").to_pylist(), strict=True))
            assert listing.item_ids and all(prices[i] < 10.0 for i in listing.item_ids)
            page = client.recommend_catalog(user, k=6, context=[skus[7]])
            assert len(page.item_ids) == 6 and set(page.item_ids) <= set(skus) and skus[7] not in page.item_ids
    finally:
        server.stop()


@pytest.mark.unit
@pytest.mark.parametrize("odd", odd_shops.REFUSED, ids=lambda o: o.name)
def test_data_that_cannot_carry_a_build_is_refused_by_check_data(odd, tmp_path):
    path = write(tmp_path / "data", *odd.tables())
    code, said = checked(path)
    assert code == 1 and odd.refused in said, said
    error = next(line for line in said.splitlines() if line.startswith("error:"))
    assert error.startswith("error: events.csv") and ("Export" in error or "export" in error)


@pytest.mark.unit
def test_positions_counted_from_one_read_as_the_same_shop(tmp_path):
    """``data.position_base: auto`` reads 1-based positions as the 0-based shop: the same positions, the same
    propensities; the data step says what it decided, and a position 0 under ``position_base: 1`` is an error."""
    catalogue, customers, events, config = odd_shops.base()
    zero = load_shop(cfg_mod.load(write(tmp_path / "zero", catalogue, customers, events, config)))
    one_tables = odd_shops.positions_from_one(catalogue, customers, events, config)
    one = load_shop(cfg_mod.load(write(tmp_path / "one", *one_tables)))
    np.testing.assert_array_equal(zero[0].imp_position, one[0].imp_position)
    assert propensities(zero[0])["propensity"] == propensities(one[0])["propensity"]
    assert zero[1].summary["position_base"].startswith("0 = top (decided from the data")
    assert one[1].summary["position_base"].startswith("1 = top (decided from the data")
    assert any("read as counted from 1" in w.message for w in one[1].warnings)
    forced = {**config, "data": {**config["data"], "position_base": 1}}
    code, said = checked(write(tmp_path / "forced", catalogue, customers, events, forced))
    assert code == 1 and "must be >= 1 (1 = top, data.position_base: 1), got 0" in said

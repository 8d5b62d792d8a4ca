"""The nightly retrain (retrain/) against a real tritonserver: a shop whose logs gained six days, a hundred
new items and a query trend is rebuilt from its cache, gated, and published under SDK load with no failed
request, and serves the new items and the trend's queries better; a candidate trained on shuffled labels is
refused and kept aside; a promoted release that fails is rolled back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tritonclient.utils import InferenceServerException

from builders import report_page
from builders.build import build
from builders.data import config as cfg_mod
from builders.data.dataset import ShopData
from loadtest.background import under_load
from retrain import gate
from retrain.__main__ import main as retrain_main
from retrain.loop import Served, promote
from runtime.query_stats import QueryStats
from runtime.repository import serving_version
from server.launcher import ServerOptions, TritonServer
from server.publish import Publisher
from server.raw_requests import request_inputs
from shoprank_client import RankingClient
from shoprank_client.types import ClientOptions, RetryPolicy
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.triton, pytest.mark.slow]

DEMO = REPO_ROOT / "build" / "small" / "demo_data"
NEW_DAYS = 6
# From day 50 of the 60 on, shoppers ask for the eight most asked things in new words: after the first build's
# held-out days begin (day 49, so its served tables cannot know them), before the retrain's (day 54).
TREND_DAY = 50
TREND = (
    "clean girl aesthetic",
    "mob wife era",
    "quiet luxury haul",
    "gorpcore drop",
    "coastal grandma vibes",
    "old money style",
    "blokecore pick",
    "cottagecore find",
)
CONFIG = """name: retrain-small
data:
  folder: .
features:
  user_segment: segment
evaluation:
  true_relevance: relevance
encoder:
  fine_tune: 'off'
retrain:
  watch_s: 3
"""


def with_trend(events: pa.Table) -> pa.Table:
    """``events`` whose eight most asked queries are asked in ``TREND``'s words from ``TREND_DAY`` on."""
    ts = events["timestamp"].cast(pa.int64()).to_numpy()
    counts = pc.value_counts(events["query"].drop_null()).to_pylist()
    head = [c["values"] for c in sorted(counts, key=lambda c: -c["counts"])[: len(TREND)]]
    words = dict(zip(head, TREND, strict=True))
    since = ts >= ts.min() + TREND_DAY * 86_400 * 10**6
    queries = [words.get(q, q) if late else q for q, late in zip(events["query"].to_pylist(), since, strict=True)]
    return events.set_column(events.schema.get_field_index("query"), "query", pa.array(queries, pa.string()))


def write_shop(folder: Path, events: pa.Table, items: pa.Table) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, folder / "events.parquet")
    pq.write_table(items, folder / "items.parquet")
    shutil.copyfile(DEMO / "users.parquet", folder / "users.parquet")
    (folder / "shoprank.yaml").write_text(CONFIG)
    return folder / "shoprank.yaml"


@pytest.fixture(scope="module")
def shop(small_build, tmp_path_factory):
    """``(config, work, served repository, new item ids)``: the small demo shop built six days ago (without
    its last six days of logs and without 100 of its items, new since), served from a copy of that build;
    then the shop's data folder gains the six days and the items, as a nightly export would. A query trend
    (``with_trend``) began four days before that build."""
    events, items = with_trend(pq.read_table(DEMO / "events.parquet")), pq.read_table(DEMO / "items.parquet")
    ts = events["timestamp"].cast(pa.int64()).to_numpy()
    cut = ts.max() - NEW_DAYS * 86_400 * 10**6
    new_items = np.random.default_rng(3).choice(items["item_id"].to_numpy(), 100, replace=False)
    new = pa.array(new_items)
    old_items = items.filter(pc.invert(pc.is_in(items["item_id"], new)))
    touches = pc.or_(pc.is_in(events["item_id"], new), pc.is_in(events["context_item_id"], new))
    old_events = events.filter(pc.and_(pa.array(ts < cut), pc.invert(pc.fill_null(touches, False))))
    root = tmp_path_factory.mktemp("retrain")
    config = write_shop(root / "shop", old_events, old_items)
    work = root / "work"
    served = root / "served" / "model_repository"
    build("cpu", None, out=served, work=work, progress=False, config=config)
    write_shop(root / "shop", events, items)  # the nightly export: six more days, 100 more items
    return config, work, served, set(new_items.tolist())


def test_the_nightly_retrain_reuses_the_build_gates_and_publishes_under_load_and_serves_new_items_better(
    shop, tmp_path
):

    config, work, served, new_items = shop
    live = ShopData.load(work / "data")
    users = [int(u) for u in live.user_ids[:20]]
    candidates = [int(i) for i in live.item_ids[:100]]
    options = ServerOptions(model_repository=served, model_control="explicit", log_file=tmp_path / "ts.log")
    with TritonServer(options) as server:
        client = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=1)))

        def ask(i: int):
            return client.search(users[i % len(users)], "dress", candidates, k=10).release

        argv = ["--config", str(config), "--work", str(work), "--repo", str(served), "--url", server.grpc_url]
        argv += ["--metrics-url", server.metrics_url, "--no-progress"]
        code, answers, failures = under_load(ask, lambda: retrain_main(argv))
        assert failures == [] and code == 0, report_page.read_history(work)
        assert {1, 2} <= set(answers) and serving_version(served) == 2

    report = json.loads((work / "build_report.json").read_text())
    # reused: the encoder, and every title it embedded six days ago; encoded: the new items' titles
    assert report["embeddings"]["titles_encoded"] == len(new_items)
    assert report["embeddings"]["titles_reused"] == report["embeddings"]["items"] - len(new_items)
    (entry,) = report_page.read_history(work)
    assert entry["decision"] == "promoted" and entry["release"] == 2 and entry["watch"]["rollback"] is False
    assert entry["watch"]["requests"] > 0  # the watch saw the new release serve
    page = (work / report_page.PAGE_FILE).read_text()
    assert 'id="plot-history"' in page and "promoted" in page

    # measured: the held-out lists that show new items rank better with the candidate (it knows their titles)
    shop_now = ShopData.load(work / "data")
    lists = gate.held_out(shop_now, 1500)
    with_new = [
        i for i in range(len(lists)) if new_items & set(lists.items[lists.offsets[i] : lists.offsets[i + 1]].tolist())
    ]
    assert len(with_new) >= 20
    from builders.learning.metrics import ndcg_per_list
    from builders.repository.pipeline import InProcessPipeline

    before, _ = gate.score(InProcessPipeline(served, 1), lists)
    after, _ = gate.score(InProcessPipeline(served, 2), lists)
    true = lists.gains["true"]
    ndcg_before = ndcg_per_list(true, before, lists.offsets, 10)
    ndcg_after = ndcg_per_list(true, after, lists.offsets, 10)
    assert np.nanmean(ndcg_after[with_new]) > np.nanmean(ndcg_before[with_new])

    # the trend's queries: unknown to the first release's query statistics, known to the candidate's (they
    # count the newest window before the held-out days), and its held-out lists rank better
    def stats(version: int) -> QueryStats:
        return QueryStats.load(served / "search_features" / str(version) / "feature_store")

    known = [w for w in TREND if stats(2).row(w) >= 0]  # a query needs two lists in the window (min_lists)
    assert all(stats(1).row(w) == -1 for w in TREND) and len(known) >= 5, known
    trend = [i for i, q in enumerate(lists.queries) if q in TREND]
    assert len(trend) >= 20
    assert np.nanmean(ndcg_after[trend]) > np.nanmean(ndcg_before[trend]), (
        np.nanmean(ndcg_before[trend]),
        np.nanmean(ndcg_after[trend]),
    )


def test_a_candidate_trained_on_shuffled_labels_is_refused_and_a_failing_promotion_is_rolled_back(shop, tmp_path):
    import tritonclient.grpc as grpcclient

    config, work, served, _ = shop
    events = pq.read_table(config.parent / "events.parquet")
    shuffled = events.set_column(
        events.schema.get_field_index("event"),
        "event",
        pa.array(np.random.default_rng(0).permutation(events["event"].to_numpy(zero_copy_only=False))),
    )
    bad_config = write_shop(tmp_path / "shuffled", shuffled, pq.read_table(config.parent / "items.parquet"))
    bad = build("cpu", None, out=tmp_path / "bad_repo", work=tmp_path / "bad_work", progress=False, config=bad_config)
    assert bad["ranker"]["kind"]
    truth = ShopData.load(work / "data")
    # the gate's latency margin wide: this test is about quality and rollback, on a machine other tests load too
    settings = cfg_mod.load(config).retrain.model_copy(update={"latency_margin": 10.0})
    live = tmp_path / "live"
    shutil.copytree(served, live)
    options = ServerOptions(model_repository=live, model_control="explicit", log_file=tmp_path / "ts.log")
    with TritonServer(options) as server:
        publisher = Publisher(live, grpcclient.InferenceServerClient(server.grpc_url), drain_s=0.5)
        at = Served(live, publisher, server.metrics_url)
        before = serving_version(live)
        entry = promote(at, tmp_path / "bad_repo", truth, settings, tmp_path / "bad_work")
        assert entry["decision"] == "refused" and "NDCG@10" in entry["reasons"][0]
        assert serving_version(live) == before
        kept = Path(entry["kept_at"])
        assert json.loads((kept / "gate.json").read_text())["promote"] is False and (kept / "ranker").is_dir()

        # a good candidate, promoted, then made to fail during its watch: it is rolled back
        good = tmp_path / "good_repo"
        build("cpu", None, out=good, work=work, progress=False, config=config)  # the new logs' build (cached)
        client = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=1)))
        for _ in range(30):  # the live release's record: requests that succeed
            client.recommend(int(truth.user_ids[0]), [int(i) for i in truth.item_ids[:50]], k=10)

        raw = grpcclient.InferenceServerClient(server.grpc_url)

        def failing(seconds: float) -> None:
            for _ in range(30):  # the new release answers errors: here, requests it must refuse (TOP_K 0)
                with pytest.raises(InferenceServerException, match="TOP_K"):
                    raw.infer("recommend", request_inputs(int(truth.user_ids[0]), truth.item_ids[:50], 0))

        entry = promote(at, good, truth, settings, tmp_path / "good_work", wait=failing)
        assert entry["decision"] == "rolled back", entry
        assert entry["watch"]["error_rate"] > entry["watch"]["error_rate_before"]
        assert serving_version(live) == before
        history = report_page.read_history(tmp_path / "good_work")
        assert [h["decision"] for h in history] == ["rolled back"]

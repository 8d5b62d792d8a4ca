"""The learned search signal holds on the second shop: built through the build like any shop (market-small),
the served ranker with the query statistics beats the ranker before them and popularity, where the
catalogue's words say nothing ("hygge", "wachmacher"). The numbers of docs/quality.md come from the
same code (``benchmarks.search_quality``) on the full-size shops."""

from __future__ import annotations

import pytest

from benchmarks.search_quality import evaluate
from builders.build import build
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def market_small(tmp_path_factory):

    work = REPO_ROOT / "build" / "market-small"
    report = build(
        "cpu",
        "market-small",
        out=tmp_path_factory.mktemp("market") / "repo",
        work=work,
        progress=False,
    )
    return work, report


def test_the_build_reports_the_click_prior_beside_the_ranker(market_small):
    _, report = market_small
    test = report["ranker"]["test"]
    assert {"ranker", "popularity", "click_prior", "random"} <= set(test)
    assert report["query-stats"]["kept_queries"] > 50 and report["query-stats"]["share_of_lists_covered"] > 0.7


def test_query_statistics_lift_the_searches_the_lexicon_cannot_read(market_small):

    work, _ = market_small
    result = evaluate(work)
    head_true = result["differences"]["head / true"]["ranker - ranker before"]
    assert head_true[1] > 0.05, head_true  # the interval's lower end: a clear gain on head queries
    head = result["ndcg@10"]["head / logged"]
    assert head["ranker"] > head["popularity"] and head["ranker"] > head["ranker before"]
    unseen = result["ndcg@10"]["unseen / true"]
    assert unseen["ranker"] > unseen["ranker before"]  # borrowed from the nearest head queries

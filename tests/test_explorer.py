"""The explorer's logic and the report page's rendering, without a browser (tests/test_pages_browser.py has the
pages in Chromium)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders import report_page
from explorer.__main__ import releases
from explorer.explain import ExplorerError, Release, check_k
from runtime import contract as c
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow
SMALL = REPO_ROOT / "build" / "small"


@pytest.fixture(scope="module")
def release(small_repo):
    return Release(small_repo, SMALL)


def test_search_answers_as_the_pipeline_and_its_reasons_replay(release):
    answer = release.search("running shoes", "", 6)
    ids, scores = release.pipeline.search_catalog(-1, "running shoes", 6)
    assert [i.item_id for i in answer.items] == ids.tolist()
    np.testing.assert_allclose([i.score for i in answer.items], scores, atol=1e-4)
    assert answer.model == "search_catalog" and answer.candidates >= 6
    top = answer.items[0]
    assert top.title and top.category and top.found and top.moved_by
    # replay the first reason: the item's features with that one replaced by the candidates' mean
    feats = release.pipeline.retriever(False).search(
        np.array([-1]),
        np.array([b"running shoes"], object),
        release.pipeline.query_embedding("running shoes"),
        np.zeros(0, np.int64),
    )
    j = list(feats[c.ITEM_IDS]).index(top.item_id)
    name, delta = top.moved_by[0]
    col = c.DENSE_COLUMNS.index(name)
    dense = feats[c.DENSE_FEATURES][j : j + 1].copy()

    def run(d):
        cat = feats[c.CAT_FEATURES][j : j + 1]
        return release.pipeline.ranker.run([c.LOGIT, c.SIM_WEIGHT], {c.CAT_FEATURES: cat, c.DENSE_FEATURES: d})

    logit, weight = run(dense)
    dense[0, col] = feats[c.DENSE_FEATURES][:, col].mean()
    logit2, weight2 = run(dense)
    sim = top.similarity_term / float(weight[0, 0]) if weight[0, 0] else 0.0
    assert float(logit[0, 0] + weight[0, 0] * sim - (logit2[0, 0] + weight2[0, 0] * sim)) == pytest.approx(
        delta, abs=2e-3
    )


def test_recommend_follows_the_viewed_item_and_validates_it(release):
    viewed = int(release.shop.item_ids[3])
    answer = release.recommend("", str(viewed), 5)
    ids, _ = release.pipeline.recommend_catalog(-1, 5, context=np.array([viewed]))
    assert [i.item_id for i in answer.items] == ids.tolist() and viewed not in ids.tolist()
    with pytest.raises(ExplorerError, match=r"^CONTEXT_ITEM_IDS: item 1 is not in this build's catalogue"):
        release.recommend("", "1", 5)
    with pytest.raises(ExplorerError, match=r"^CONTEXT_ITEM_IDS: 'abc' is not an item id"):
        release.recommend("", "abc", 5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.search("  ", "", 5), r"^QUERY: blank"),
        (lambda r: r.search("tent", "x1", 5), r"^USER_ID: 'x1' is not a number"),
        (lambda r: r.search("tent", "987654321", 5), r"^USER_ID: 987654321 is not a user this build knows"),
        (lambda r: r.search("tent", "", 0), r"^K: 0 is outside 1\.\.50"),
    ],
)
def test_bad_input_names_the_field(release, call, message):
    with pytest.raises(ExplorerError, match=message):
        call(release)


def test_check_k_bounds():
    assert check_k(1) == 1 and check_k(50) == 50
    with pytest.raises(ExplorerError):
        check_k(51)


def test_the_report_page_renders_a_real_shops_report_without_true_relevance(small_build, tmp_path):

    report = json.loads((SMALL / "build_report.json").read_text())
    for name, view in report["ranker"]["test_views"].items():
        if name != "lists":
            view.pop("true", None)
            view.pop("true_vs_popularity", None)
    (tmp_path / "data").mkdir()
    html = report_page.render(report, tmp_path)  # no validation.json, no variants: said so, not an error
    assert "No true relevance in real logs" in html and "true relevance</th>" not in html
    assert "No variants measured for this build" in html
    assert html.count("data:image/png;base64,") >= 3


def test_the_pareto_plot_draws_each_measured_variant():

    variants = {
        "encoder": {"fp32": {"speed": {"p50_ms_8tok": 2.0}, "quality": {"ndcg@10": 0.5}}},
        "ranker": {
            name: {"speed": {"p50_ms_200rows": ms}, "quality": {"ndcg@10": q}}
            for name, ms, q in (("fp32", 0.2, 0.53), ("pruned", 0.12, 0.52), ("int8-dynamic", 0.15, 0.5))
        },
    }
    uri = report_page.pareto_figure(variants)
    assert uri is not None and uri.startswith("data:image/png;base64,") and len(uri) > 5000
    assert report_page.pareto_figure({"ranker": {"fp32": variants["ranker"]["fp32"]}}) is None  # one point: no plot


def test_a_served_repository_shows_its_current_and_previous_release(small_repo, tmp_path):
    """After a publish a served repository holds two version folders per model: the live release and the one
    rollback returns to. The explorer shows the newest first and the previous beside it."""
    import shutil

    live = tmp_path / "live"
    shutil.copytree(small_repo, live, symlinks=True)
    for model in (p for p in live.iterdir() if (p / "1").is_dir()):
        shutil.copytree(model / "1", model / "2", symlinks=True)
    shown = releases(live, SMALL, None, None)
    assert [r.version for r in shown] == [2, 1] and shown[0].label != shown[1].label
    assert [i.item_id for i in shown[0].search("tent", "", 3).items] == [
        i.item_id for i in shown[1].search("tent", "", 3).items
    ]  # the same files twice: the same answers
    only = releases(small_repo, SMALL, None, None)
    assert [r.version for r in only] == [1]

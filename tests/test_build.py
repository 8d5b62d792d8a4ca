"""The build itself: parity checks, model quality against baselines, caching."""

import json

import pytest

from builders.__main__ import main
from builders.build import PARITY_MAX_ABS, PARITY_MIN_COSINE, BuildError, build
from tests.helpers import logged

pytestmark = pytest.mark.slow


def test_encoder_matches_pytorch_on_real_titles(small_build):
    _, report = small_build
    assert report["encoder"]["n"] >= 100
    assert report["encoder"]["min_cosine"] >= PARITY_MIN_COSINE


def test_ranker_onnx_matches_its_library(small_build):
    """The served ONNX of the kept kind against PyTorch (DCN) or LightGBM (GBDT) on the same rows."""
    _, report = small_build
    parity = report["ranker"]["parity"]
    assert parity["max_abs_diff"] <= PARITY_MAX_ABS * max(1.0, parity["max_abs_output"])


def test_ranker_beats_popularity_and_random_on_the_test_split(small_build):
    test = small_build[1]["ranker"]["test"]
    assert test["ranker"]["ndcg@10_true"] > test["popularity"]["ndcg@10_true"] > test["random"]["ndcg@10_true"]
    assert test["ranker"]["auc"] > test["random"]["auc"] + 0.1
    assert test["ground_truth"]["ndcg@10_true"] == pytest.approx(1.0)


def test_auto_trains_both_kinds_keeps_the_better_and_reports_three_views(small_build):
    from tests.conftest import REPO_ROOT

    rk = small_build[1]["ranker"]
    trained = rk["kinds"]
    assert set(trained) == {"dcn", "gbdt"}
    assert rk["kind"] == max(trained, key=lambda k: trained[k]["val_ndcg@10_selection"])
    assert "debiased (IPS)" in rk["selection"]
    views = rk["test_views"]
    for name in ("ranker", "ranker_dcn", "ranker_gbdt", "popularity", "ground_truth"):
        for view in ("logged", "ips", "true"):
            value, low, high = views[name][view]
            assert low <= value <= high
    assert views["ranker"] == views[f"ranker_{rk['kind']}"]
    # the oracle ranks best on the debiased view too, and the debiased view moves away from the logged one
    assert views["ground_truth"]["ips"][0] > views["popularity"]["ips"][0]
    assert views["ranker"]["ips_vs_popularity"][0] == pytest.approx(
        views["ranker"]["ips"][0] - views["popularity"]["ips"][0], abs=1e-3
    )
    curve = rk["propensity"]["propensity"]
    assert curve[0] == 1.0 and curve[1] < 0.9 and curve[10] < curve[1]
    assert len(trained["dcn"]["learned_examination"]) == len(curve)  # PAL's own examination curve
    files = {p.name for p in (REPO_ROOT / "build" / "small" / "ranker").iterdir()}
    assert {"ranker.pt", "gbdt", "model.onnx", "report.json"} <= files  # both kinds kept, the kept one exported


def test_second_build_uses_the_cache(small_build, tmp_path):
    from tests.conftest import REPO_ROOT

    with logged() as logs:
        build("cpu", "small", out=tmp_path / "repo", work=REPO_ROOT / "build" / "small", progress=False)
    for step in ("demo-data", "data", "encoder", "embeddings", "features", "ranker"):
        assert f"[{step}] cached" in logs
    saved = json.loads((REPO_ROOT / "build" / "small" / "build_report.json").read_text())
    assert saved["profile"] == "small" and saved["manifest"]["embed_dim"] == 384


def test_unknown_target_or_profile_is_refused_with_a_clear_message(tmp_path):

    with pytest.raises(BuildError, match=r"unknown target 'tpu'; choose one of \('cpu', 'gpu'\)"):
        build("tpu", "small", out=tmp_path, work=tmp_path)
    with pytest.raises(BuildError, match="unknown profile 'huge'.*or pass --config"):
        build("cpu", "huge", out=tmp_path, work=tmp_path)


def test_variants_need_a_finished_build(tmp_path, capsys):

    assert main(["variants", "--work", str(tmp_path / "nothing")]) == 1
    assert "no finished build" in capsys.readouterr().err

"""The gradient-boosted ranker, the propensities harvested from the logs and the debiased metrics (unit)."""

from __future__ import annotations

import numpy as np
import pytest

from builders.data import config as cfg_mod
from builders.data.config import GBDTConfig
from builders.data.shop import ShopProfile, examination, generate
from builders.learning import gbdt
from builders.learning import propensity as prop
from builders.learning.metrics import ListNDCG, ndcg_at_k, pooled_interval
from builders.learning.rows import Rows
from runtime.contract import CAT_FEATURES, DENSE_FEATURES, LOGIT, N_CAT, N_DENSE, SIM_WEIGHT
from runtime.ort_runner import make_session

pytestmark = pytest.mark.unit


def pbm_logs(curve: np.ndarray, n_lists: int = 4000, seed: int = 0):
    """Lists of 12 items drawn from 300 (key, item) pairs, shown in a random order by one of two loggers
    (so one pair is logged at many positions), clicked with curve[position] * relevance."""
    rng = np.random.default_rng(seed)
    relevance = rng.uniform(0.05, 0.9, (5, 300))
    keys, items, positions, clicks = [], [], [], []
    for _ in range(n_lists):
        key = int(rng.integers(5))
        shown = rng.choice(300, 12, replace=False)
        order = np.argsort(-relevance[key, shown] + rng.normal(0, 0.3, 12))  # a logger that knows a bit
        shown = shown[order] if rng.random() < 0.5 else rng.permutation(shown)
        pos = np.arange(12)
        keys.append(np.full(12, key))
        items.append(shown)
        positions.append(pos)
        clicks.append(rng.random(12) < curve[pos] * relevance[key, shown])
    return (np.concatenate(a) for a in (keys, items, positions, clicks))


def test_harvested_propensities_recover_the_examination_curve():
    curve = 1.0 / (1.0 + np.arange(12)) ** 0.7
    keys, items, positions, clicks = pbm_logs(curve)
    est = prop.estimate(keys, items, positions, clicks.astype(np.int8), 12)
    got = np.array(est["propensity"])
    assert got[0] == 1.0
    np.testing.assert_allclose(got, curve / curve[0], atol=0.05)
    assert est["groups"] > 1000 and sum(est["shown_per_position"]) == est["impressions"]


def test_a_click_rate_by_position_alone_would_be_confounded():
    """The logger that knows a bit puts relevant items on top: the raw click rate by position falls faster than
    the examination curve, and the harvested estimate does not."""
    curve = 1.0 / (1.0 + np.arange(12)) ** 0.7
    keys, items, positions, clicks = pbm_logs(curve)
    raw = np.array([clicks[positions == k].mean() for k in range(12)])
    est = np.array(prop.estimate(keys, items, positions, clicks.astype(np.int8), 12)["propensity"])
    assert abs(raw[11] / raw[0] - curve[11]) > 2 * abs(est[11] - curve[11])


def test_position_that_never_varies_is_not_identifiable():
    items = np.arange(10)
    with pytest.raises(ValueError, match="not identifiable"):
        prop.estimate(np.zeros(10, np.int64), items, np.arange(10), np.ones(10), 10)


def test_ips_gains_are_clipped_and_unknown_positions_keep_their_gain():
    curve = np.array([1.0, 0.5, 0.01])
    got = prop.ips_gains(np.ones(4), np.array([0, 1, 2, -1]), curve, clip=10.0)
    np.testing.assert_allclose(got, [1.0, 2.0, 10.0, 1.0])
    deeper = prop.ips_gains(np.ones(1), np.array([7]), curve, clip=1000.0)  # deeper positions share the last
    assert deeper[0] == pytest.approx(100.0)


def test_the_demo_logs_give_back_the_generators_examination_curve():

    shop = generate(ShopProfile("tiny", n_items=400, n_users=150, n_sessions=3000, min_candidates=8, max_candidates=20))
    est = np.array(prop.from_shop(shop, np.arange(len(shop.session_user)), 10)["propensity"])
    true = examination(np.arange(10)) / examination(0)
    np.testing.assert_allclose(est[:8], true[:8], atol=0.08)


def test_list_ndcg_matches_ndcg_at_k_and_pools_by_sum():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 25, 300)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    gains = (rng.random(offsets[-1]) < 0.2) * rng.uniform(0.5, 5, offsets[-1])
    scores = rng.integers(0, 4, offsets[-1]).astype(float)  # ties: the same stable order as ndcg_at_k
    assert ListNDCG(gains, offsets)(scores) == pytest.approx(ndcg_at_k(gains, scores, offsets, 10))
    pooled = ListNDCG(gains, offsets, pooled=True)
    assert pooled(scores) == pytest.approx(pooled.dcg(scores).sum() / pooled.idcg.sum())
    assert pooled(gains) == pytest.approx(1.0)  # the ideal order


def test_pooled_ndcg_weighs_a_deep_click_by_its_weight():
    """Two lists with one click each: a per-list mean cannot see the inverse-propensity weights, the pooled
    ratio can (the deep click, weight 5, counts five times)."""
    offsets = np.array([0, 3, 6])
    gains = np.array([1.0, 0, 0, 0, 0, 5.0])
    scores = np.array([3.0, 2, 1, 3, 2, 1])  # first list right, second wrong
    mean = ListNDCG(gains, offsets)(scores)
    pooled = ListNDCG(gains, offsets, pooled=True)(scores)
    assert mean == pytest.approx(ListNDCG(np.array([1.0, 0, 0, 0, 0, 1.0]), offsets)(scores))
    assert pooled == pytest.approx((1.0 + 5.0 / np.log2(4)) / 6.0)


def test_pooled_interval_brackets_the_value_and_a_self_difference_is_zero():
    rng = np.random.default_rng(1)
    dcg, idcg = rng.uniform(0, 1, 500), np.ones(500)
    value, low, high = pooled_interval(dcg, idcg)
    assert low <= value <= high and high - low < 0.1
    assert pooled_interval(dcg, idcg, minus=dcg) == [0.0, 0.0, 0.0]


def tree_rows(n_lists: int = 300, seed: int = 0) -> Rows:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 15, n_lists)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    cat = rng.integers(0, 8, (n, N_CAT)).astype(np.int64)
    dense = rng.normal(size=(n, N_DENSE)).astype(np.float32)
    dense[:, 3] = np.round(dense[:, 3], 1)  # repeated values: thresholds between close floats
    sim = rng.normal(size=n).astype(np.float32)
    click = (dense[:, 0] + 0.5 * cat[:, 2] / 8 + 0.7 * sim + rng.normal(0, 0.5, n) > 1.2).astype(np.float32)
    gain = (2.0**click - 1).astype(np.float32)
    position = np.concatenate([np.arange(k) for k in lengths]).astype(np.int64)
    none = np.zeros(n, np.int64)
    return Rows(cat, dense, sim, sim, click, gain, None, offsets, none, none, None, position)


@pytest.fixture(scope="module")
def trained():

    tr, va = tree_rows(seed=0), tree_rows(seed=1)
    metric = ListNDCG(va.gain, va.offsets)
    model, history = gbdt.train(tr, va, GBDTConfig(rounds=40, sim_weights=(0.0, 1.0)), True, metric)
    return model, history, va


def test_gbdt_learns_and_keeps_the_better_similarity_weight(trained):
    model, history, va = trained
    assert [h["sim_weight"] for h in history] == [0.0, 1.0]
    best = max(history, key=lambda h: h["val"])
    assert model.sim_weight == best["sim_weight"] == 1.0  # the clicks follow sim: its weight helps
    logit, weight = model.parts(va.cat, va.dense)
    rand = np.random.default_rng(2).random(len(logit))
    assert ListNDCG(va.gain, va.offsets)(logit + weight * va.sim) > ListNDCG(va.gain, va.offsets)(rand) + 0.2


def test_a_validation_tie_goes_to_the_larger_similarity_weight_and_a_clear_win_to_the_winner():
    history = [
        {"sim_weight": 0.0, "val": 0.43884},
        {"sim_weight": 0.5, "val": 0.43877},
        {"sim_weight": 1.0, "val": 0.4343},
    ]
    assert gbdt.choose(history, 0.001) == 1  # 0.00007 apart: a tie, the title's similarity kept
    assert gbdt.choose(history, 0.0) == 0  # no tolerance: the best value
    assert gbdt.choose(history, 0.01) == 2
    history[0]["val"] = 0.45
    assert gbdt.choose(history, 0.001) == 0  # a clear win stays a win


def test_gbdt_onnx_has_the_rankers_interface_and_matches_lightgbm(trained, tmp_path):
    import onnx

    model, _, va = trained
    path = gbdt.export_onnx(model, tmp_path / "model.onnx")
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == [CAT_FEATURES, DENSE_FEATURES]
    assert [o.name for o in proto.graph.output] == [LOGIT, SIM_WEIGHT]
    report = gbdt.parity(model, path, va.cat, va.dense)
    assert report["n"] == len(va) and report["max_abs_diff"] < 1e-5
    logit, weight = make_session(str(path)).run([LOGIT, SIM_WEIGHT], {CAT_FEATURES: va.cat, DENSE_FEATURES: va.dense})
    assert logit.shape == weight.shape == (len(va), 1) and (weight == model.sim_weight).all()


def test_float32_thresholds_predict_what_the_booster_did(trained):
    model, _, va = trained
    x = gbdt.features(va.cat, va.dense)
    again = gbdt.float32_thresholds(model.booster)
    np.testing.assert_array_equal(again.predict(x, raw_score=True), model.booster.predict(x, raw_score=True))


def test_gbdt_round_trips_through_its_folder(trained, tmp_path):
    model, _, va = trained
    model.save(tmp_path / "gbdt")
    loaded = gbdt.GBDTRanker.load(tmp_path / "gbdt")
    assert loaded.sim_weight == model.sim_weight
    np.testing.assert_array_equal(loaded.parts(va.cat, va.dense)[0], model.parts(va.cat, va.dense)[0])


def test_ranker_kind_is_validated():

    with pytest.raises(cfg_mod.ConfigError, match=r"ranker\.kind"):
        cfg_mod.parse({"ranker": {"kind": "xgb"}}, "test config")

"""The retrain's watch (retrain/watch.py) on Triton's metrics text, without a server."""

from __future__ import annotations

import pytest

from retrain.watch import Window, parse, verdict

pytestmark = pytest.mark.unit

PAGE = """# HELP nv_inference_request_success Number of successful inference requests
nv_inference_request_success{model="search",version="1"} 90
nv_inference_request_failure{model="search",reason="OTHER",version="1"} 6
nv_inference_request_failure{model="search",reason="BACKEND",version="1"} 4
nv_inference_request_duration_us{model="search",version="1"} 450000
nv_inference_request_success{model="search_fused",version="2"} 100
nv_inference_request_success{model="recommend",version="1"} 10
"""


def test_the_counters_of_the_named_models_are_summed_over_reasons():
    w = parse(PAGE, {"search"})
    assert (w.success, w.failure, w.requests) == (90, 10, 100)
    assert w.error_rate == pytest.approx(0.1) and w.mean_ms == pytest.approx(5.0)
    assert parse(PAGE, {"search", "recommend"}).success == 100
    assert (parse(PAGE, {"search"}) - parse(PAGE, {"search"})).requests == 0


def test_a_release_is_rolled_back_for_errors_or_time_beyond_the_margins_and_kept_otherwise():
    before = Window(success=990, failure=10, duration_us=990 * 4000)
    same = Window(success=99, failure=1, duration_us=99 * 4200)
    assert verdict(before, same, 0.01, 0.5)["rollback"] is False
    failing = Window(success=80, failure=20, duration_us=80 * 4000)
    got = verdict(before, failing, 0.01, 0.5)
    assert got["rollback"] and "error rate 20.0%" in got["reasons"][0]
    slow = Window(success=100, failure=0, duration_us=100 * 9000)
    got = verdict(before, slow, 0.01, 0.5)
    assert got["rollback"] and "mean request time 9.00 ms" in got["reasons"][0]
    assert verdict(before, Window(), 0.01, 0.5)["rollback"] is False  # no request: nothing to judge


def test_the_candidate_is_built_in_the_served_repositorys_layout_and_sizes(small_repo, ensemble_repo):
    from builders.repository.model_specs import ENSEMBLE, FUSED, FusedSizes
    from retrain.__main__ import served_shape

    assert served_shape(small_repo) == (FUSED, FusedSizes())
    assert served_shape(ensemble_repo) == (ENSEMBLE, None)

"""Load shapes, the SLO gate and the capacity calculator, on synthetic data with known answers."""

import numpy as np
import pytest

from loadtest.capacity import Plan, StepStats, markdown, plan, plot, step_stats, sustainable
from loadtest.capacity import main as capacity_main
from loadtest.online_writes import WritePlan
from loadtest.shapes import SoakShape, SpikeShape, StepShape, make_shape
from loadtest.slo import Slo

pytestmark = pytest.mark.unit


def test_step_shape_ramps_and_stops():
    shape = StepShape(step_users=2, step_s=10, max_users=6)
    assert [shape(t)[0] for t in (0, 9.9, 10, 25)] == [2, 2, 4, 6]
    assert shape(30) is None
    assert shape.steps() == [(0, 10, 2), (10, 20, 4), (20, 30, 6)]


def test_spike_and_soak_shapes():
    spike = SpikeShape(base_users=2, spike_users=10, warm_s=5, spike_s=3, cool_s=5)
    assert [spike(t)[0] for t in (0, 5, 7.9, 8, 12.9)] == [2, 10, 10, 2, 2]
    assert spike(13) is None
    assert SoakShape(users=3, duration_s=60)(59) == (3, 10.0) and SoakShape(3, 60)(60) is None
    with pytest.raises(ValueError, match="--shape"):
        make_shape("ramp")


def test_slo_gate():
    slo = Slo(p95_ms=50, p99_ms=100, max_fail_ratio=0.01)
    assert slo.check(40, 90, 0.0, 100) == []
    problems = slo.check(60, 120, 0.05, 100)
    assert len(problems) == 3 and "p99 latency 120.0 ms > SLO 100 ms" in problems[1]
    assert slo.check(1, 1, 0, 0) == ["no request was made"]
    assert Slo().check(1e9, 1e9, 1.0, 10) == []  # no limits configured: nothing to break


def synthetic_samples(capacity_rps: float, rate_per_user: float, steps, seed=0):
    """A replica that serves up to ``capacity_rps``: fast (10-20 ms) below it, queueing (300+ ms) above."""
    rng = np.random.default_rng(seed)
    rows = []
    for start, end, users in steps:
        offered = users * rate_per_user
        achieved = min(offered, capacity_rps)
        n = int(achieved * (end - start))
        starts = start + np.arange(n) / achieved  # evenly spaced: the achieved rate is exact
        slow = offered > capacity_rps
        ms = rng.uniform(300, 400, n) if slow else rng.uniform(10, 20, n)
        rows += [(s, m, 1) for s, m in zip(starts, ms, strict=True)]
    return np.array(rows, dtype=[("start", float), ("ms", float), ("ok", int)])


def test_capacity_finds_the_knee_and_plans_replicas():
    shape = StepShape(step_users=2, step_s=20, max_users=20)
    stats = step_stats(synthetic_samples(55.0, 5.0, shape.steps()), shape.steps(), 5.0)
    assert [s.offered_rps for s in stats] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    best = sustainable(stats, slo_p99_ms=100, error_budget=0.001)
    assert best.users == 10 and best.achieved_rps == pytest.approx(50, rel=0.05)
    result = plan(best, peak_rps=400, headroom=0.25, target_utilization=0.7)
    assert result.replicas == 10  # ceil(400 * 1.25 / ~50)
    assert result.target_rps_per_pod == pytest.approx(0.7 * best.achieved_rps)
    assert result.target_inflight_per_pod == pytest.approx(result.target_rps_per_pod * best.p50_ms / 1e3)


def test_errors_beyond_the_budget_disqualify_a_step():
    stats = [StepStats(2, 10, 10, 10, 12, 15, 0.0, 100), StepStats(4, 20, 20, 10, 12, 15, 0.02, 200)]
    assert sustainable(stats, 100, 0.01).users == 2
    assert sustainable(stats, 1, 0.01) is None  # impossible SLO


def test_saturated_steps_do_not_count_even_with_low_latency():
    stats = [StepStats(2, 10, 10, 10, 12, 15, 0.0, 100), StepStats(8, 40, 20, 10, 12, 15, 0.0, 200)]
    assert sustainable(stats, 100, 0.01).users == 2  # 20 of 40 offered: the generator or server fell behind


def test_report_and_plots(tmp_path):
    stats = [StepStats(2, 10, 10, 10, 12, 15, 0.0, 100), StepStats(4, 20, 20, 11, 14, 18, 0.0, 200)]
    result = plan(stats[1], 100, 0.3)
    text = markdown(stats, result, 50, 0.001)
    assert "**7 replicas**" in text and "| 4 | 20 | 20.0 |" in text
    assert "lower bound" in text  # the last step passed: the knee was not reached
    assert "lower bound" not in markdown(stats, plan(stats[0], 100, 0.3), 50, 0.001)
    assert "**1 replica**" in markdown(stats, plan(stats[1], 10, 0.3), 50, 0.001)
    assert "No step met the SLO" in markdown(stats, None, 50, 0.001)
    for path in plot(stats, tmp_path, 50):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(result, Plan)


def test_a_step_that_passes_after_a_failing_one_does_not_count():
    stats = [
        StepStats(2, 10, 10, 10, 12, 15, 0.0, 100),
        StepStats(4, 20, 20, 10, 12, 200, 0.0, 200),
        StepStats(6, 30, 30, 10, 12, 90, 0.0, 300),
    ]
    assert sustainable(stats, 100, 0.01).users == 2


def test_online_write_plan_splits_each_tick_into_updates_and_clicks():

    assert WritePlan(rate=1000, click_share=0.2, ticks_per_s=50).batch() == (16, 4)
    assert WritePlan(rate=10, click_share=0.0, ticks_per_s=50).batch() == (1, 0)  # never an empty tick
    with pytest.raises(ValueError, match="--update-rate"):
        WritePlan(rate=0)
    with pytest.raises(ValueError, match="--click-share"):
        WritePlan(click_share=1.5)


def test_the_plan_shows_each_call_at_the_sustainable_step_and_the_one_that_broke(tmp_path):
    """A mix where search_catalog queues past 60 req/s and recommend stays fast: the plan's per-call tables
    name the call that broke the SLO, from the same samples.csv the locustfile writes."""
    shape = StepShape(step_users=4, step_s=20, max_users=20)  # 20, 40, ..., 100 req/s at 5 per user
    rng = np.random.default_rng(0)
    rows = []
    for start, end, users in shape.steps():
        for t in np.sort(rng.uniform(start, end, int(users * 5 * (end - start)))):
            name = "search_catalog" if rng.random() < 0.5 else "recommend"
            ms = 5.0 if name == "recommend" else (20.0 if users * 5 <= 60 else 400.0) + rng.uniform(0, 5)
            rows.append(f"{1000 + t + ms / 1e3:.6f},{name},{ms:.3f},1")
    samples = tmp_path / "samples.csv"
    samples.write_text("time,name,ms,ok\n" + "\n".join(rows) + "\n")
    argv = ["--samples", str(samples), "--peak-rps", "120", "--slo-p99-ms", "100", "--out", str(tmp_path)]
    argv += ["--step-users", "4", "--step-s", "20", "--max-users", "20", "--rate-per-user", "5"]
    assert capacity_main([*argv, "--catalog-share", "0.5"]) == 0
    text = (tmp_path / "capacity.md").read_text()
    assert "Traffic: 50% catalogue calls" in text and "req/s** (at 12 users" in text
    at_60, at_80 = text.split("Per call at the 12-user step:")[1].split("Per call at the 16-user step:")
    rows_60 = {line.split("|")[1].strip(): line.split("|") for line in at_60.splitlines() if line.startswith("| ")}
    rows_80 = {line.split("|")[1].strip(): line.split("|") for line in at_80.splitlines() if line.startswith("| ")}
    assert float(rows_60["search_catalog"][4]) < 30 and float(rows_80["search_catalog"][4]) >= 400
    assert float(rows_80["recommend"][4]) == pytest.approx(5.0)

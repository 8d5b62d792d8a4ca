"""``python -m rollout compare``: the arms of an online test read from event logs with a planted difference
and with none; the intervals account for the user being the unit of randomisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from rollout.__main__ import main
from rollout.compare import CompareError, Lists, compare, rate, read_events

pytestmark = pytest.mark.unit


def traffic(users: int, click: dict[str, float], seed: int, spread: float = 1.0) -> Lists:
    """Lists of ``users`` users, each in one arm by a stable hash, 1 to 8 lists each; a list is clicked with
    the arm's rate times the user's own propensity (a lognormal of ``spread``: heavy and light users)."""
    rng = np.random.default_rng(seed)
    arms = sorted(click)
    arm_of = np.array([arms[(u * 2654435761) % 4093 % len(arms)] for u in range(users)], object)  # stable
    propensity = rng.lognormal(-(spread**2) / 2, spread, users)  # mean 1
    per_user = rng.integers(1, 9, users)
    unit = np.repeat(np.arange(users), per_user)
    arm = arm_of[unit]
    p = np.clip(np.array([click[a] for a in arm]) * propensity[unit], 0, 1)
    clicked = rng.random(len(unit)) < p
    carted = clicked & (rng.random(len(unit)) < 0.3)
    bought = carted & (rng.random(len(unit)) < 0.4)
    outcomes = {"click_rate": clicked | carted | bought, "add_to_cart_rate": carted, "purchase_rate": bought}
    return Lists(unit.astype(np.int64), arm, outcomes, 0)


def click_diff(lists: Lists, **kw):
    return next(d for d in compare(lists, **kw) if d.metric.startswith("click_rate"))


def test_a_planted_difference_in_click_rate_is_found_with_an_interval_around_it():
    lists = traffic(8000, {"a": 0.10, "b": 0.12}, seed=1)
    d = click_diff(lists)
    assert d.significant and d.p_value < 0.01
    assert abs(d.delta - 0.02) < 3 * d.se  # the planted difference (the propensities' mean is 1)
    lo, hi = d.interval
    assert hi - lo < 0.02
    assert d.control.value == pytest.approx(0.10, abs=0.01) and d.treatment.value == pytest.approx(0.12, abs=0.01)


def test_identical_arms_differ_about_as_often_as_the_significance_level_says():
    significant = sum(click_diff(traffic(1500, {"a": 0.1, "b": 0.1}, seed=s)).significant for s in range(60))
    assert significant <= 8  # 3 expected at 5% (4 here); an interval per list, not per user, flags 10


def test_the_interval_counts_users_not_lists_when_users_differ():
    lists = traffic(3000, {"a": 0.1, "b": 0.1}, seed=7, spread=1.5)
    r = rate(lists.unit[lists.arm == "a"], lists.outcomes["click_rate"][lists.arm == "a"])
    naive = math.sqrt(r.value * (1 - r.value) / r.lists)  # as if every list were independent
    assert r.se > 1.2 * naive
    single = traffic(3000, {"a": 0.1, "b": 0.1}, seed=7, spread=0.0)  # no heterogeneity, 1-8 lists each
    r1 = rate(single.unit[single.arm == "a"], single.outcomes["click_rate"][single.arm == "a"])
    assert r1.se == pytest.approx(math.sqrt(r1.value * (1 - r1.value) / r1.lists), rel=0.15)


def test_the_sample_size_is_the_textbook_one_for_one_list_per_user():
    rng = np.random.default_rng(3)
    n = 20000
    unit = np.arange(n, dtype=np.int64)
    arm = np.where(unit % 2 == 0, "a", "b").astype(object)
    clicked = rng.random(n) < 0.1
    lists = Lists(unit, arm, {"click_rate": clicked}, 0)
    (d,) = compare(lists, effect=0.05)
    p = d.control.value
    textbook = (1.959964 + 0.841621) ** 2 * 2 * p * (1 - p) / (0.05 * p) ** 2
    assert d.units_needed == pytest.approx(textbook, rel=0.05)
    assert d.units_still_needed == d.units_needed - 10000


def write_events(path, lists_per_arm: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("timestamp", "session_id", "user_id", "query", "item_id", "event", "arm")}
    session = 0
    for arm, n in lists_per_arm.items():
        for _ in range(n):
            session += 1
            user = None if session % 5 == 0 else f"user-{session % 97}-{arm}"  # some anonymous visitors
            for position in range(3):
                rows_event = ["impression"] + (["click", "purchase"] if rng.random() < 0.3 and position == 0 else [])
                for event in rows_event:
                    for key, value in (
                        ("timestamp", 1_700_000_000 + session),
                        ("session_id", f"s{session}"),
                        ("user_id", user),
                        ("query", "red shoes" if session % 2 else None),
                        ("item_id", position),
                        ("event", event),
                        ("arm", arm),
                    ):
                        rows[key].append(value)
    pcsv.write_csv(pa.table(rows), path)


def test_lists_are_read_from_the_shops_event_files(tmp_path):
    path = tmp_path / "events.csv"
    write_events(path, {"live": 300, "candidate": 200})
    lists = read_events([path], "arm")
    assert len(lists.unit) == 500 and sorted(set(lists.arm.tolist())) == ["candidate", "live"]
    assert lists.outcomes["purchase_rate"].sum() == lists.outcomes["click_rate"].sum() > 0
    assert lists.outcomes["add_to_cart_rate"].sum() == 0
    assert len(np.unique(lists.unit)) < 500  # a user's sessions share a unit


def test_the_command_reports_each_metric_and_json(tmp_path):
    path = tmp_path / "events.csv"
    write_events(path, {"live": 400, "candidate": 400})
    lines: list[str] = []
    assert main(["compare", str(path), "--control", "live"], out=lines.append) == 0
    text = "\n".join(lines)
    for metric in ("click_rate (candidate - live)", "add_to_cart_rate", "purchase_rate", "still needed"):
        assert metric in text
    lines.clear()
    assert main(["compare", str(path), "--control", "live", "--json", "--effect", "0.1"], out=lines.append) == 0
    payload = json.loads(lines[0])
    assert len(payload["comparisons"]) == 3 and payload["mixed_lists"] == 0
    assert all(row["units_needed"] > 0 for row in payload["comparisons"][:1])


def test_bad_input_is_refused_naming_the_file_and_column(tmp_path):
    path = tmp_path / "events.csv"
    write_events(path, {"live": 20, "candidate": 20})
    lines: list[str] = []
    assert main(["compare", str(path), "--arm-column", "variant"], out=lines.append) == 2
    assert "events.csv: no column 'variant'" in lines[-1]
    assert main(["compare", str(path), "--control", "other"], out=lines.append) == 2
    assert "--control 'other': no such arm (arms: candidate, live)" in lines[-1]
    one = tmp_path / "one.csv"
    write_events(one, {"live": 20})
    with pytest.raises(CompareError, match="1 arm .*need 2"):
        compare(read_events([one], "arm"))
    assert main(["compare", str(tmp_path / "missing.csv")], out=lines.append) == 2
    assert "missing.csv: no such file" in lines[-1]


def test_a_list_served_by_two_arms_is_left_out_and_counted(tmp_path):
    path = tmp_path / "events.csv"
    table = pa.table(
        {
            "session_id": ["s1", "s1", "s2", "s3"],
            "event": ["impression", "click", "impression", "impression"],
            "arm": ["a", "b", "a", "b"],
        }
    )
    pcsv.write_csv(table, path)
    lists = read_events([path], "arm")
    assert lists.mixed == 1 and sorted(lists.arm.tolist()) == ["a", "b"]

"""The retrain's watch (retrain/watch.py) on Triton's metrics text, its release volume (retrain/volume.py) and
where refused candidates are kept (retrain/loop.py:keep_aside), and the gate's latency verdict
(retrain/gate.py: the releases timed in turns), without a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from retrain import gate
from retrain import volume as volume_mod
from retrain.loop import keep_aside
from retrain.volume import ReleaseVolume, VolumeError, adopt
from retrain.watch import Window, parse, since, total, verdict

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


class _Timed:
    """A release whose every call takes ``cost`` ms times the machine's load at the moment, on a fake clock."""

    def __init__(self, clock: list[float], load, cost: float) -> None:
        self.clock, self.load, self.cost = clock, load, cost

    def _answer(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.clock[0] += self.cost * self.load(self.clock[0]) / 1e3
        return items, np.arange(len(items), 0, -1, dtype=np.float32)

    def search(self, user_id: int, query: str, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._answer(item_ids)

    def recommend(self, user_id: int, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._answer(item_ids)


def test_the_gate_times_the_releases_in_turns_so_a_load_that_comes_and_goes_weighs_on_both(monkeypatch):
    n = 400
    lists = gate.HeldOut(
        users=np.arange(n, dtype=np.int64),
        queries=["dress" if i % 2 else None for i in range(n)],
        offsets=np.arange(0, 5 * n + 1, 5),
        items=np.arange(5 * n, dtype=np.int64),
    )
    clock = [0.0]
    monkeypatch.setattr(gate, "CLOCK", lambda: clock[0])

    def burst(t: float) -> float:  # the machine 1.6x slower for the first second, then idle
        return 1.6 if t < 1.0 else 1.0

    def verdict(live_ms: float, candidate_ms: float) -> float:
        clock[0] = 0.0
        got = gate.score_side_by_side(
            {"live": _Timed(clock, burst, live_ms), "candidate": _Timed(clock, burst, candidate_ms)}, lists
        )
        assert (got["live"][0] == got["candidate"][0]).all()  # the scores do not depend on the timing
        return gate.time_ratio(got["live"][1], got["candidate"][1])

    # a release against itself: 0 within the load's own steps, though the burst covered most of the live
    # release's lists had they run first (one after the other: the candidate's lists all after the burst)
    assert verdict(3.0, 3.0) == pytest.approx(0.0, abs=1e-9)
    alone = {}
    clock[0] = 0.0
    for name in ("live", "candidate"):
        alone[name] = gate.score(_Timed(clock, burst, 3.0), lists)[1]
    assert gate.time_ratio(alone["live"], alone["candidate"]) < -0.3  # what one after the other would say
    assert verdict(3.0, 4.5) == pytest.approx(0.5, abs=0.01)
    assert verdict(3.0, 2.4) == pytest.approx(-0.2, abs=0.01)
    # a list the live release timed at 0 ms (a clock too coarse) is left out, not divided by
    assert gate.time_ratio(np.zeros(3), np.ones(3)) == 0.0
    assert gate.time_ratio(np.array([0.0, 1.0, 1.0]), np.array([5.0, 2.0, 2.0])) == pytest.approx(1.0)


def test_the_candidate_is_built_in_the_served_repositorys_layout_and_sizes(small_repo, ensemble_repo):
    from builders.repository.model_specs import ENSEMBLE, FUSED, FusedSizes
    from retrain.__main__ import served_shape

    assert served_shape(small_repo) == (FUSED, FusedSizes())
    assert served_shape(ensemble_repo) == (ENSEMBLE, None)


def test_the_watch_sums_pods_and_counts_a_pod_started_since_whole_and_a_gone_one_not():
    start = {"a": Window(10, 1, 1000), "b": Window(5, 0, 500)}
    now = {"a": Window(30, 2, 3000), "c": Window(4, 4, 400)}  # b went away, c started
    assert total(start) == Window(15, 1, 1500)
    assert since(now, start) == Window(24, 5, 2400)


def _built(folder: Path, tag: str) -> Path:
    (folder / "ranker" / "1").mkdir(parents=True)
    (folder / "ranker" / "1" / "model.onnx").write_text(tag)
    (folder / "golden.json").write_text("{}")
    return folder


def test_a_release_volume_adopts_adds_flips_atomically_and_prunes_old_releases(tmp_path):
    vol = ReleaseVolume(tmp_path / "vol")
    with pytest.raises(VolumeError, match="no release link; adopt a built repository first"):
        vol.live()
    with pytest.raises(VolumeError, match="not a built model repository"):
        adopt(vol.root, tmp_path)
    first = adopt(vol.root, _built(tmp_path / "b1", "one"))
    assert vol.live() == first and (tmp_path / "b1").is_dir()  # adopt copies
    assert os.readlink(vol.link) == f"releases/{first}"  # relative: the same wherever the volume is mounted
    assert (vol.link / "ranker" / "1" / "model.onnx").read_text() == "one"
    second = vol.add(_built(tmp_path / "b2", "two"))
    third = vol.add(_built(tmp_path / "b3", "three"))
    assert second != third and not (tmp_path / "b2").exists()  # moved in; ids unique within one second
    assert vol.live() == first and vol.names() == [first, second, third]
    assert vol.flip(second) == first and vol.live() == second
    assert (vol.link / "ranker" / "1" / "model.onnx").read_text() == "two"
    assert not [p for p in vol.root.iterdir() if p.name.startswith(".")]  # no temporary link left
    with pytest.raises(VolumeError, match="no such release"):
        vol.flip("19990101T000000Z")
    with pytest.raises(VolumeError, match="exists already"):
        vol.add(_built(tmp_path / "b4", "four"), third)
    # keep 1: the newest stays, and the live one, and the protected one (the release before the last publish)
    assert vol.prune(1, protect={first}) == [] and vol.names() == [first, second, third]
    assert vol.prune(1) == [first] and vol.names() == [second, third] and vol.live() == second


def test_a_volume_whose_link_points_elsewhere_is_refused_with_the_path(tmp_path):
    vol = ReleaseVolume(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    vol.link.symlink_to("elsewhere")
    with pytest.raises(VolumeError, match=r"current -> elsewhere: not a folder under releases/"):
        vol.live()
    assert volume_mod.main(["list", str(tmp_path)]) == 2
    assert volume_mod.main(["adopt", str(tmp_path / "v"), str(_built(tmp_path / "b", "x"))]) == 0
    assert ReleaseVolume(tmp_path / "v").names() == [ReleaseVolume(tmp_path / "v").live()]


def _candidate(folder: Path, marker: str) -> Path:
    (folder / "ranker" / "1").mkdir(parents=True)
    (folder / "ranker" / "1" / "model.onnx").write_text(marker)
    return folder


def test_refused_candidates_are_kept_newest_first_up_to_keep_and_the_older_ones_deleted(tmp_path):
    refused = tmp_path / "work" / "retrain" / "refused"
    stamps = ["2026-12-01T02:00:00Z", "2026-12-02T02:00:00Z", "2026-12-03T02:00:00Z", "2026-12-04T02:00:00Z"]
    deleted_each = []
    for i, stamp in enumerate(stamps):
        verdict = {"promote": False, "reasons": [f"night {i}"]}
        aside, deleted = keep_aside(_candidate(tmp_path / f"cand{i}", f"m{i}"), refused, stamp, verdict, keep=2)
        assert aside == refused / stamp.replace(":", "") and not (tmp_path / f"cand{i}").exists()
        assert json.loads((aside / "gate.json").read_text())["reasons"] == [f"night {i}"]
        assert (aside / "ranker" / "1" / "model.onnx").read_text() == f"m{i}"
        deleted_each.append(deleted)
    assert deleted_each == [[], [], ["2026-12-01T020000Z"], ["2026-12-02T020000Z"]]
    assert sorted(p.name for p in refused.iterdir()) == ["2026-12-03T020000Z", "2026-12-04T020000Z"]

    # two refusals in the same second: both kept, the second under a suffix
    again, deleted = keep_aside(_candidate(tmp_path / "cand5", "m5"), refused, stamps[-1], {"promote": False}, keep=3)
    assert again == refused / "2026-12-04T020000Z-1" and deleted == []
    assert (refused / "2026-12-04T020000Z" / "ranker" / "1" / "model.onnx").read_text() == "m3"


def test_keep_zero_deletes_a_refused_candidate_at_once(tmp_path):
    refused = tmp_path / "refused"
    aside, deleted = keep_aside(_candidate(tmp_path / "cand", "m"), refused, "2026-12-05T02:00:00Z", {}, keep=0)
    assert aside is None and deleted == ["2026-12-05T020000Z"]
    assert list(refused.iterdir()) == [] and not (tmp_path / "cand").exists()

"""The node's occupancy file (runtime/occupancy.py): slots taken by live processes, busy flags seen across
processes, how long the others have been idle, the stale mark of a dead process cleared, and an instance
without a slot never alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.occupancy import SLOTS, Occupancy
from tests.conftest import REPO_ROOT

CHILD = """
import sys
from runtime.occupancy import Occupancy
occ = Occupancy(sys.argv[1])
with occ.serving():
    print(occ.slot, flush=True)
    sys.stdin.readline()  # serves until the parent says, or dies serving
"""


@pytest.mark.unit
def test_instances_take_their_own_slots_and_see_each_other_serve(tmp_path):
    path = tmp_path / "occupancy"
    a, b = Occupancy(path), Occupancy(path)
    assert a.active and b.active and a.slot != b.slot
    assert a.alone() and b.alone()
    assert a.idle_for() == float("inf")  # nobody has served yet
    with b.serving():
        assert a.idle_for() == 0.0
        assert a.others() == 1 and not a.alone()
        assert b.others() == 0 and b.alone()  # its own request does not count
        with a.serving():
            assert not b.alone()
    assert a.alone() and b.alone()
    # b has just finished: alone, but not quiet for a minute
    assert 0.0 < a.idle_for() < 60 and not a.alone(quiet_s=60) and a.alone(quiet_s=0.0)
    slot = b.slot
    b.close()
    assert not b.active and not b.alone()
    c = Occupancy(path)
    assert c.slot == slot  # a freed slot is taken again
    for occ in (a, c):
        occ.close()


@pytest.mark.unit
def test_a_serving_process_is_seen_and_its_mark_is_cleared_when_it_dies(tmp_path):
    path = tmp_path / "occupancy"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        child_slot = int(child.stdout.readline())
        mine = Occupancy(path)
        assert mine.slot != child_slot  # the child's lock holds its slot
        assert mine.others() == 1 and not mine.alone()
    finally:
        child.kill()
        child.wait()
    assert mine.others() == 1  # the dead process's mark is still there ...
    later = Occupancy(path)  # ... until the next instance starts and finds its slot unheld
    assert mine.others() == 0 and mine.alone() and later.alone()
    for occ in (mine, later):
        occ.close()


@pytest.mark.unit
def test_without_a_file_or_a_free_slot_an_instance_is_never_alone(tmp_path, caplog):
    lost = Occupancy(tmp_path / "no such folder" / "occupancy")
    assert not lost.active and not lost.alone() and lost.others() == 0
    with lost.serving():  # serving still works: it just never widens
        pass
    assert "keeps its narrow settings" in caplog.text
    path = tmp_path / "occupancy"
    held = [Occupancy(path) for _ in range(SLOTS)]
    assert all(o.active for o in held)
    extra = Occupancy(path)
    assert not extra.active and not extra.alone()
    assert f"all {SLOTS} slots are taken" in caplog.text
    for occ in held:
        occ.close()

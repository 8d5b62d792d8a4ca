"""Counters added in process and sent to the server's metrics by a background thread (runtime/counters.py).

The metrics here are plain recorders of ``increment(n)``; the real ``pb_utils.Metric`` path is covered on the
served repository (tests/test_response_cache.py reads ``shoprank_query_cache_total`` from the metrics port).
"""

from __future__ import annotations

import threading
import time

import pytest

from runtime import counters
from runtime.counters import DeferredCounters, close_all


class Recorder:
    def __init__(self, fail: int = 0):
        self.sent: list[float] = []
        self.fail = fail  # raise on this many sends first
        self.threads: set[str] = set()

    def increment(self, n: float) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("server process gone")
        self.sent.append(n)


def wait_until(check, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_adds_are_summed_and_sent_once_per_counter_per_flush():
    hit, miss = Recorder(), Recorder()
    counts = DeferredCounters({"hit": hit, "miss": miss}, flush_s=60)  # the thread stays out of it
    try:
        for _ in range(5):
            counts.add("hit")
        counts.add("miss", 2)
        assert hit.sent == [] and miss.sent == []  # nothing sent on the request path
        assert counts.pending() == {"hit": 5, "miss": 2}
        counts.flush()
        assert hit.sent == [5] and miss.sent == [2]
        assert counts.pending() == {}
        counts.flush()  # nothing changed: nothing sent
        assert hit.sent == [5] and miss.sent == [2]
    finally:
        counts.close()


def test_the_background_thread_sends_within_its_interval():
    hit = Recorder()
    counts = DeferredCounters({"hit": hit}, flush_s=0.05)
    try:
        counts.add("hit")
        counts.add("hit")
        assert wait_until(lambda: sum(hit.sent) == 2)
        assert hit.threads == {"shoprank-counters"}  # sent by the thread, not by the caller
        counts.add("hit")
        assert wait_until(lambda: sum(hit.sent) == 3)
    finally:
        counts.close()


def test_close_sends_what_is_pending_and_stops_the_thread():
    hit = Recorder()
    counts = DeferredCounters({"hit": hit}, flush_s=60)
    counts.add("hit", 3)
    counts.close()
    assert hit.sent == [3]
    assert not counts.running


def test_close_all_closes_every_open_counter_of_the_process():
    a, b = Recorder(), Recorder()
    first, second = DeferredCounters({"x": a}, flush_s=60), DeferredCounters({"x": b}, flush_s=60)
    first.add("x")
    second.add("x", 4)
    close_all()
    assert (a.sent, b.sent) == ([1], [4])
    assert not first.running and not second.running
    assert first not in counters._open and second not in counters._open


def test_a_failed_send_loses_that_interval_and_the_thread_keeps_sending(caplog):
    hit = Recorder(fail=1)
    counts = DeferredCounters({"hit": hit}, flush_s=0.05)
    try:
        counts.add("hit", 7)  # this interval's send fails
        assert wait_until(lambda: hit.fail == 0)
        counts.add("hit")
        assert wait_until(lambda: hit.sent == [1])
        assert counts.running
    finally:
        counts.close()
    assert "could not send" in caplog.text


def test_an_unknown_counter_or_interval_is_refused():
    counts = DeferredCounters({"hit": Recorder()}, flush_s=60)
    try:
        with pytest.raises(KeyError, match="no counter 'hot'"):
            counts.add("hot")
    finally:
        counts.close()
    with pytest.raises(ValueError, match="flush_s"):
        DeferredCounters({"hit": Recorder()}, flush_s=0)

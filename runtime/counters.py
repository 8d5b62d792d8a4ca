"""Counters added to in process and sent to the server's metrics by a background thread.

In the python backend each ``pb_utils.Metric.increment`` is a round trip from the stub process to the server
process, which the calling thread waits for: about 60 µs on the 2-core machine of docs/benchmarks.md, so a
search that counted two query-cache lookups waited about 0.12 ms for its metrics. Here a request adds to a
dict under a lock (a microsecond), and a daemon thread sends what changed every ``flush_s`` seconds, one
round trip per changed counter. Nothing here imports Triton: the metrics are any objects with
``increment(n)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping
from typing import Any

log = logging.getLogger(__name__)

FLUSH_S = 0.5  # how late a scrape may see a count; Prometheus scrapes every 15-30 s

_open: list[DeferredCounters] = []  # this process's counters, closed by close_all() (a model's finalize)
_open_lock = threading.Lock()


class DeferredCounters:
    """The counters ``metrics`` by key, incremented by ``add`` and sent in the background.

    A scrape sees a count at most ``flush_s`` late. ``close()`` stops the thread and sends what is pending;
    a stub process killed without ``finalize`` loses at most the last interval's counts."""

    def __init__(self, metrics: Mapping[Hashable, Any], flush_s: float = FLUSH_S):
        if flush_s <= 0:
            raise ValueError(f"flush_s must be > 0, got {flush_s}")
        self.metrics = dict(metrics)
        self.flush_s = flush_s
        self._pending: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoprank-counters", daemon=True)
        self._thread.start()
        with _open_lock:
            _open.append(self)

    def add(self, key: Hashable, n: float = 1) -> None:
        """Count ``n`` on ``key`` (one of ``metrics``' keys: another is a KeyError, raised here)."""
        if key not in self.metrics:
            raise KeyError(f"no counter {key!r}; known: {sorted(map(str, self.metrics))}")
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + n

    def pending(self) -> dict[Hashable, float]:
        """What is added and not yet sent, by key."""
        with self._lock:
            return dict(self._pending)

    def flush(self) -> None:
        """Send what is pending now, one ``increment`` per changed counter."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, n in pending.items():
            self.metrics[key].increment(n)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception as err:  # a failed send loses that interval's counts, never the thread
                log.warning("counters: could not send to the server's metrics: %s: %s", type(err).__name__, err)

    def close(self) -> None:
        """Stop the thread and send what is pending."""
        self._stop.set()
        self._thread.join()
        self.flush()
        with _open_lock:
            if self in _open:
                _open.remove(self)


def close_all() -> None:
    """Close every counter of this process (a Python-backend model's ``finalize``)."""
    with _open_lock:
        todo = list(_open)
    for counters in todo:
        counters.close()

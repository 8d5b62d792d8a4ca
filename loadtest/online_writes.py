"""Online-store writes during a load test: item updates at a steady rate plus session clicks.

The shop's backends write to the online store while shoppers search (``docs/online.md``). With
``--online-url``, the Locust run (``loadtest/locustfile.py``) starts one ``OnlineLoad`` beside its users:
``rate`` writes a second into the same Redis the server reads, ``click_share`` of them clicks of the
users the requests come from (so the next search of that user reads a changed recent list), the rest
price and stock updates of the candidates the requests rank. The writes are sent in ``ticks_per_s``
pipelined batches a second and reported to Locust as requests of type ``redis`` (``update`` and
``click``), so their count, latency and failures appear in the same report.

It runs in the process that does not send the search requests in a distributed run (the master), or in
the only process otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from online.writer import Interaction, ItemUpdate, OnlineWriter

Report = Callable[[str, float, int, Exception | None], None]


@dataclass(frozen=True)
class WritePlan:
    rate: float = 1000.0  # writes per second, updates and clicks together
    click_share: float = 0.2
    ticks_per_s: int = 50

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"--update-rate: expected writes per second > 0, got {self.rate}")
        if not 0 <= self.click_share <= 1:
            raise ValueError(f"--click-share: expected a share from 0 to 1, got {self.click_share}")

    def batch(self) -> tuple[int, int]:
        """(updates, clicks) per tick."""
        per_tick = max(1, round(self.rate / self.ticks_per_s))
        clicks = round(per_tick * self.click_share)
        return per_tick - clicks, clicks


class OnlineLoad:
    """Writes ``plan`` into ``writer`` until ``stop()``: the ids come from the load test's own requests."""

    def __init__(self, writer: OnlineWriter, plan: WritePlan, requests: list[dict], seed: int = 0):
        self.writer = writer
        self.plan = plan
        self.items = np.unique(np.concatenate([np.asarray(r["candidates"], np.int64) for r in requests]))
        self.users = np.unique(np.asarray([r["user_id"] for r in requests], np.int64))
        self.rng = np.random.default_rng(seed)
        self.written = 0
        self._stopped = False

    def tick(self, report: Report) -> None:
        """One batch: the updates in one transaction, the clicks in one pipeline; each reported."""
        n_updates, n_clicks = self.plan.batch()
        ids = self.rng.choice(self.items, n_updates + n_clicks)
        prices = self.rng.uniform(5, 200, n_updates)
        stock = self.rng.integers(0, 20, n_updates)
        updates = [
            ItemUpdate(int(i), {"price": float(p), "stock": float(s)})
            for i, p, s in zip(ids[:n_updates], prices, stock, strict=True)
        ]
        clicks = [
            Interaction(int(u), int(i), "click", session=True)
            for u, i in zip(self.rng.choice(self.users, n_clicks), ids[n_updates:], strict=True)
        ]
        for name, send, n in (
            ("update", lambda: self.writer.write(updates), n_updates),
            ("click", lambda: self.writer.record(clicks), n_clicks),
        ):
            if not n:
                continue
            start = time.perf_counter()
            error: Exception | None = None
            try:
                send()
                self.written += n
            except Exception as err:  # a failed write is reported to Locust, the run goes on
                error = err
            report(name, (time.perf_counter() - start) * 1e3, n, error)

    def run(self, report: Report, sleep: Callable[[float], None] = time.sleep) -> None:
        """Ticks on a fixed schedule (a late tick is not made up by bursts beyond one tick)."""
        period = 1.0 / self.plan.ticks_per_s
        next_at = time.perf_counter()
        while not self._stopped:
            self.tick(report)
            next_at = max(next_at + period, time.perf_counter() - period)
            sleep(max(0.0, next_at - time.perf_counter()))

    def stop(self) -> None:
        self._stopped = True

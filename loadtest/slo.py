"""SLO gate: a run fails when p95/p99 latency or the failure ratio break their limits.

Locust itself checks neither percentile. ``check`` is pure; the locustfile calls it when the run
quits and sets the process exit code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slo:
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_fail_ratio: float | None = None

    def check(self, p95_ms: float, p99_ms: float, fail_ratio: float, requests: int) -> list[str]:
        """Every violated limit, as a sentence; empty when the run passes."""
        problems = []
        if requests == 0:
            return ["no request was made"]
        if self.p95_ms is not None and p95_ms > self.p95_ms:
            problems.append(f"p95 latency {p95_ms:.1f} ms > SLO {self.p95_ms:g} ms")
        if self.p99_ms is not None and p99_ms > self.p99_ms:
            problems.append(f"p99 latency {p99_ms:.1f} ms > SLO {self.p99_ms:g} ms")
        if self.max_fail_ratio is not None and fail_ratio > self.max_fail_ratio:
            problems.append(f"failure ratio {fail_ratio:.2%} > limit {self.max_fail_ratio:.2%}")
        return problems

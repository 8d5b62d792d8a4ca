"""After a promotion: does the new release serve as well as the one before? From Triton's own metrics.

Triton counts each model's successes, failures and request time (``nv_inference_request_success``,
``nv_inference_request_failure``, ``nv_inference_request_duration_us``). They are read on the public
ensembles, which see every request: a step's error reaches Triton as the ensemble's failure (measured on
24.10: a request the fused step refuses counts as that step's success and the ensemble's failure). The
ensembles keep one version across releases, so the windows are told apart by time: the old release's is
everything counted before the switch, the new release's is what is counted over ``watch_s`` after it.
The new release is rolled back when its error rate is above the old one's by more than ``error_margin``
(absolute) or its mean request time above the old one's by more than ``latency_margin`` (relative).
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

LINE = re.compile(r"^(nv_inference_request_(?:success|failure|duration_us))\{([^}]*)\}\s+([0-9.eE+-]+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Window:
    """One release's requests over a window: how many, how many failed, their total time."""

    success: float = 0.0
    failure: float = 0.0
    duration_us: float = 0.0

    @property
    def requests(self) -> float:
        return self.success + self.failure

    @property
    def error_rate(self) -> float:
        return self.failure / self.requests if self.requests else 0.0

    @property
    def mean_ms(self) -> float:
        return self.duration_us / self.success / 1e3 if self.success else 0.0

    def __add__(self, other: Window) -> Window:
        return Window(self.success + other.success, self.failure + other.failure, self.duration_us + other.duration_us)

    def __sub__(self, other: Window) -> Window:
        return Window(self.success - other.success, self.failure - other.failure, self.duration_us - other.duration_us)


def parse(text: str, models: set[str]) -> Window:
    """The counters of ``models`` (every version, every failure reason), summed, from a Prometheus text page."""
    got = {"success": 0.0, "failure": 0.0, "duration_us": 0.0}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2)))
        if labels.get("model") in models:
            got[m.group(1).removeprefix("nv_inference_request_")] += float(m.group(3))
    return Window(**got)


def scrape(metrics_url: str, models: set[str]) -> Window:
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        return parse(resp.read().decode(), models)


def total(windows: dict[str, Window]) -> Window:
    """Every server's (or pod's) window, summed."""
    return sum(windows.values(), Window())


def since(now: dict[str, Window], start: dict[str, Window]) -> Window:
    """What each server counted after ``start``, summed: a pod that started since counts whole; one gone since
    is left out (its last requests with it)."""
    return total({k: w - start.get(k, Window()) for k, w in now.items()})


def verdict(before: Window, after: Window, error_margin: float, latency_margin: float) -> dict:
    """``{"rollback": bool, "reasons": [...], ...}``: the new release's window (``after``) against the old one's."""
    reasons = []
    if after.requests == 0:
        return {"rollback": False, "reasons": [], "requests": 0, "note": "no request reached the new release"}
    if after.error_rate > before.error_rate + error_margin:
        reasons.append(
            f"error rate {after.error_rate:.1%} against {before.error_rate:.1%} before "
            f"(margin +{error_margin:.1%}, {int(after.requests)} requests)"
        )
    if before.mean_ms > 0 and after.mean_ms > before.mean_ms * (1 + latency_margin):
        reasons.append(
            f"mean request time {after.mean_ms:.2f} ms against {before.mean_ms:.2f} ms before "
            f"(margin +{latency_margin:.0%})"
        )
    return {
        "rollback": bool(reasons),
        "reasons": reasons,
        "requests": int(after.requests),
        "error_rate": round(after.error_rate, 4),
        "error_rate_before": round(before.error_rate, 4),
        "mean_ms": round(after.mean_ms, 3),
        "mean_ms_before": round(before.mean_ms, 3),
    }

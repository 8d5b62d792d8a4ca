"""Wait for a rollout to finish: every pod ready on the current template, Triton ready on each, the
pods agreeing, then the golden set passing on every pod. Progress is printed when it changes.

The clock, the sleep and the two checks are passed in, so the loop is tested on a sequence of
release states without waiting for real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rollout.status import ReleaseStatus
from rollout.verify import Verdict


@dataclass
class WaitResult:
    ok: bool
    message: str
    status: ReleaseStatus | None = None
    verdict: Verdict | None = None
    waited_s: float = 0.0


def progress_line(st: ReleaseStatus) -> str:
    current = sum(1 for r in st.pods if r.current and r.ready and r.triton_ready)
    line = f"{current}/{st.want_replicas} pods ready on the current template"
    old = sum(1 for r in st.pods if not r.current)
    if old:
        line += f", {old} old"
    if st.problems:
        line += f"; waiting for: {st.problems[0]}" + (
            f" (+{len(st.problems) - 1} more)" if len(st.problems) > 1 else ""
        )
    return line


def wait(
    fetch: Callable[[], ReleaseStatus],
    run_verify: Callable[[], Verdict] | None,
    timeout_s: float,
    interval_s: float = 5.0,
    out: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll ``fetch`` until the release has no problem, then run ``run_verify`` once (a wrong answer does
    not fix itself: a failed verify ends the wait at once). Gives up after ``timeout_s``."""
    start = clock()
    last_line, st = "", None
    while True:
        st = fetch()
        line = progress_line(st)
        if line != last_line:
            out(f"[{clock() - start:6.1f}s] {line}")
            last_line = line
        if st.ok and st.pods:
            break
        if clock() - start + interval_s > timeout_s:
            why = "; ".join(st.problems[:3]) or "no pods"
            return WaitResult(False, f"timed out after {timeout_s:g}s: {why}", st, None, clock() - start)
        sleep(interval_s)
    if run_verify is None:
        return WaitResult(
            True, "rollout finished (no golden set given: answers not verified)", st, None, clock() - start
        )
    out(f"[{clock() - start:6.1f}s] rollout finished; verifying every pod's answers")
    verdict = run_verify()
    if not verdict.ok:
        return WaitResult(False, "rollout finished but verify FAILED", st, verdict, clock() - start)
    return WaitResult(True, "rollout finished and verified", st, verdict, clock() - start)

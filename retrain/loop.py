"""One nightly retrain: build a candidate from the newest logs, gate it, publish it or keep it aside, watch it.

1. **Build** the candidate with the shop's config into ``<work>/candidate/model_repository``, in the build's
   own cache folder: every step whose inputs did not change is reused (``builders/driver.py``), and the
   embeddings step encodes only the titles it has not embedded with the same encoder before.
2. **Gate** it against the live release (``retrain/gate.py``) on the newest held-out lists.
3. A refused candidate is **kept aside** (``<work>/retrain/refused/<time>/``, with ``gate.json`` saying why;
   the newest ``retrain.keep_refused`` of them, the older ones deleted); the live release is untouched. A
   passed one is **published** where it is served (a ``Target``): by the zero-failure switch of a running
   server (``Served``, ``server/publish.py``), or on Kubernetes by rolling the Deployment onto the release
   volume's new release (``retrain/cluster.py``).
4. The promoted release is **watched** for ``watch_s`` on Triton's metrics (``retrain/watch.py``) and
   **rolled back** when its served error rate or request time is worse than the release before.
5. Each decision is one JSON line of ``<work>/retrain/history.jsonl`` (shown on the build's report page).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from builders import report_page
from builders.data.config import RetrainConfig
from builders.data.dataset import ShopData
from retrain import gate, watch
from runtime.errors import ShoprankError
from runtime.repository import layout, serving_version
from server.publish import Publisher

logger = logging.getLogger(__name__)

CANDIDATE = Path("candidate") / "model_repository"
REFUSED = Path("retrain") / "refused"


class RolloutFailed(ShoprankError, RuntimeError):
    """The published release did not come up serving its golden set; it was switched back to ``back``."""

    def __init__(self, message: str, back: int | str | None):
        super().__init__(message)
        self.back = back


class Target(Protocol):
    """Where releases are served: a running server (``Served``) or a Deployment on a volume
    (``retrain.cluster.OnKubernetes``)."""

    def live(self) -> tuple[Path, int]:
        """The live release's repository folder and the version its ensembles name (what the gate ranks)."""
        ...

    def counters(self) -> dict[str, watch.Window] | None:
        """The public ensembles' counters per server or pod; None: nothing to watch."""
        ...

    def publish(self, candidate: Path) -> int | str:
        """Serve ``candidate`` (raises ``RolloutFailed`` after switching back); returns its release."""
        ...

    def rollback(self) -> int | str:
        """Serve the release before the last publish again; returns it."""
        ...


@dataclass(frozen=True)
class Served:
    """The running server: the repository it serves, its publisher and its metrics page."""

    repo: Path
    publisher: Publisher
    metrics_url: str | None  # None: no watch (the promotion is kept)

    def live(self) -> tuple[Path, int]:
        return self.repo, serving_version(self.repo)

    def counters(self) -> dict[str, watch.Window] | None:
        if not self.metrics_url:
            return None
        return {"server": watch.scrape(self.metrics_url, set(layout(self.repo).ensembles))}

    def publish(self, candidate: Path) -> int:
        return self.publisher.publish(candidate)

    def rollback(self) -> int:
        return self.publisher.rollback()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def keep_aside(
    candidate: Path, refused: Path, stamp: str, verdict: dict[str, Any], keep: int
) -> tuple[Path | None, list[str]]:
    """Move a refused ``candidate`` to ``refused/<stamp>/`` with ``gate.json`` (the verdict), then delete all but
    the newest ``keep`` candidates there (each is a whole repository: a nightly refusal must not fill the disk;
    ``history.jsonl`` keeps every verdict). ``keep`` 0: the candidate is deleted at once. Returns where it was
    kept (None when ``keep`` is 0) and the names deleted, oldest first."""
    refused.mkdir(parents=True, exist_ok=True)
    name = stamp.replace(":", "")
    aside = refused / name
    n = 0
    while aside.exists():  # two refusals in one second
        n += 1
        aside = refused / f"{name}-{n}"
    shutil.move(str(candidate), aside)
    (aside / "gate.json").write_text(json.dumps(verdict, indent=1))
    kept = sorted(p for p in refused.iterdir() if p.is_dir())  # names are UTC times: oldest first
    doomed = kept[: max(len(kept) - keep, 0)]
    for path in doomed:
        shutil.rmtree(path)
    return (aside if keep > 0 else None), [p.name for p in doomed]


def record(work: Path, entry: dict[str, Any]) -> None:
    """One decision, appended to the history (and the report page written again where the build's report is)."""
    path = work / report_page.HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")
    report = work / "build_report.json"
    if report.exists():
        report_page.write(json.loads(report.read_text()), work)


def promote(
    served: Target,
    candidate: Path,
    shop: ShopData,
    settings: RetrainConfig,
    work: Path,
    wait: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Gate ``candidate`` (a build's repository) against the live release; publish, keep aside or roll back."""
    live_repo, live = served.live()
    gate_settings = gate.GateSettings(settings.margin, settings.latency_margin, settings.max_lists)
    verdict = gate.compare((live_repo, live), (candidate, 1), shop, gate_settings)
    entry: dict[str, Any] = {"time": _now(), "live": live, "candidate": str(candidate), "gate": verdict}
    if not verdict["promote"]:
        aside, deleted = keep_aside(candidate, work / REFUSED, entry["time"], verdict, settings.keep_refused)
        entry.update(decision="refused", reasons=verdict["reasons"], kept_at=str(aside) if aside else None)
        where = f"kept at {aside}" if aside else "not kept (retrain.keep_refused is 0)"
        logger.warning(f"candidate refused, {where}: {'; '.join(verdict['reasons'])}")
        if deleted:
            entry["deleted"] = deleted
            logger.info(f"refused candidates deleted (keeping {settings.keep_refused}): {', '.join(deleted)}")
        record(work, entry)
        return entry
    before = served.counters()  # every request's outcome on the public ensembles (retrain/watch.py)
    try:
        release = served.publish(candidate)
    except RolloutFailed as err:
        entry.update(decision="rolled back", reasons=[str(err)], release=err.back)
        logger.warning(f"candidate rolled back to {err.back}: {err}")
        record(work, entry)
        return entry
    entry.update(decision="promoted", release=release, reasons=[])
    logger.info(f"release {release} promoted (NDCG@10 {verdict['relative']:+.2%} against release {live})")
    if before is not None and settings.watch_s > 0:
        start = served.counters() or {}
        wait(settings.watch_s)
        after = watch.since(served.counters() or {}, start)
        seen = watch.verdict(watch.total(before), after, settings.error_margin, settings.watch_latency_margin)
        entry["watch"] = seen
        if seen["rollback"]:
            back = served.rollback()
            entry.update(decision="rolled back", reasons=seen["reasons"], release=back)
            logger.warning(f"release {release} rolled back to {back}: {'; '.join(seen['reasons'])}")
    record(work, entry)
    return entry

"""The small driver every build runs on: named steps, each cached by a key of its inputs, with progress and times.

A step is a plain function with its inputs, its output files and a cache key (``Step``). ``Driver``
runs a list of them in order: a step whose stamp (``<work>/<name>.stamp.json``) has the same key
and whose outputs all exist is skipped ("cached"); otherwise it runs and its report is stamped.
Nothing here knows what a step does, and no step imports the driver's caller.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class Step:
    name: str
    run: Callable[[], dict | None]
    key: dict | None = None  # None: always run (cheap steps whose output may have been edited)
    outputs: list[Path] = field(default_factory=list)


@dataclass
class Driver:
    work: Path
    report: dict = field(default_factory=dict)

    def cached(self, name: str, key: dict, outputs: list[Path], make: Callable[[], dict | None]) -> dict:
        """Run ``make`` unless the stamp for ``name`` has the same key and every output exists."""
        stamp = self.work / f"{name}.stamp.json"
        if stamp.exists() and all(p.exists() for p in outputs):
            saved = json.loads(stamp.read_text())
            if saved.get("key") == key:
                logger.info(f"[{name}] cached")
                self.report[name] = saved.get("report", {})
                return self.report[name]
        report = self._timed(name, make)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps({"key": key, "report": report}, indent=1, default=str))
        return report

    def _timed(self, name: str, make: Callable[[], dict | None]) -> dict:
        started = time.perf_counter()
        logger.info(f"[{name}] building...")
        report = make() or {}
        report["seconds"] = round(time.perf_counter() - started, 1)
        logger.info(f"[{name}] done in {report['seconds']} s")
        self.report[name] = report
        return report

    def run(self, steps: list[Step]) -> dict:
        self.work.mkdir(parents=True, exist_ok=True)
        for step in steps:
            if step.key is None:
                self._timed(step.name, step.run)
            else:
                self.cached(step.name, step.key, step.outputs, step.run)
        return self.report

    def forget(self, names: list[str]) -> None:
        """Drop the stamps of ``names`` so those steps rerun."""
        for name in names:
            stamp = self.work / f"{name}.stamp.json"
            if stamp.exists():
                stamp.unlink()

"""Which of the node's fused instances are serving a request right now, seen from every one of them.

The fused models' instances are separate processes (Python-backend stubs) sharing the node's cores. Each
takes a slot in one small shared file for its life: it holds a lock on the slot's first byte, so the slot
of a process that died is free again, and the slot holds when its instance last finished a request
(``time.monotonic()``, one clock for the whole machine), or infinity while it serves one. An instance that
finds every other one idle, and idle for a moment (``alone(quiet_s)``), has the cores to itself and may run
its encoder on more threads (``runtime/fused.py``): at concurrency 1 nobody waits for them; under load each
instance keeps to its own thread.

The file lives in shared memory (``/dev/shm``, which Triton's Python backend needs anyway), one per user, so
every server of the node counts (they share its cores). Where no file or slot can be had, the instance counts
as never alone: it keeps its narrow settings, the safe choice under load.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import mmap
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from runtime.arrays import Array

logger = logging.getLogger(__name__)

SLOTS = 256  # instances per node that can take part; one more finds none and stays narrow
SLOT_BYTES = 8  # each slot's value: when its instance last finished a request (monotonic s), inf while serving
SHARED_DIR = Path("/dev/shm")


def default_path() -> Path:
    """``/dev/shm/shoprank-occupancy-<uid>`` (the temporary folder where there is no ``/dev/shm``)."""
    folder = SHARED_DIR if SHARED_DIR.is_dir() and os.access(SHARED_DIR, os.W_OK) else Path(tempfile.gettempdir())
    return folder / f"shoprank-occupancy-{os.getuid()}"


class Occupancy:
    """This instance's slot in the node's occupancy file; ``slot`` is None where it has none (then ``alone()``
    is always False). ``close()`` frees the slot (a process that exits frees it too; its mark of serving, if
    it died serving, is cleared by the next instance that starts)."""

    _taken: ClassVar[dict[str, set[int]]] = {}  # slots held in this process (its own locks never conflict)

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self.slot: int | None = None
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._times: Array = np.zeros(0, np.float64)
        try:
            self._open()
        except OSError as err:
            logger.warning(f"occupancy: {self.path}: {err}; this instance keeps its narrow settings")
            self.close()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < SLOTS * SLOT_BYTES:
            os.ftruncate(self._fd, SLOTS * SLOT_BYTES)
        taken = self._taken.setdefault(str(self.path), set())
        for slot in range(SLOTS):
            if slot in taken:
                continue
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot, os.SEEK_SET)
            except OSError:
                continue  # another live process holds it
            taken.add(slot)
            self.slot = slot
            break
        if self.slot is None:
            raise OSError(f"all {SLOTS} slots are taken")
        self._map = mmap.mmap(self._fd, SLOTS * SLOT_BYTES)
        self._times = np.frombuffer(self._map, np.float64)
        self._clear_stale(taken)

    def _clear_stale(self, taken: set[int]) -> None:
        """Marks idle the slots no live process holds (one that died while serving)."""
        if self.slot is not None:
            self._times[self.slot] = 0.0
        for slot in np.flatnonzero(np.isinf(self._times)).tolist():
            if slot in taken:
                continue  # this process's own, serving
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot, os.SEEK_SET)
            except OSError:
                continue  # held: a live instance serving
            self._times[slot] = 0.0
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, slot, os.SEEK_SET)

    @property
    def active(self) -> bool:
        return self.slot is not None

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Marks this instance busy for the ``with`` block, and when it ended."""
        if self.slot is None:
            yield
            return
        self._times[self.slot] = np.inf
        try:
            yield
        finally:
            self._times[self.slot] = time.monotonic()

    def _others(self) -> Array:
        if self.slot is None:
            return self._times
        others: Array = np.delete(self._times, self.slot)
        return others

    def others(self) -> int:
        """How many other instances are serving a request now."""
        return int(np.isinf(self._others()).sum()) if self.slot is not None else 0

    def idle_for(self) -> float:
        """Seconds since the last other instance finished a request: 0.0 while one serves, inf if none ever did
        (or this instance has no slot: then 0.0)."""
        if self.slot is None:
            return 0.0
        last = float(self._others().max(initial=0.0))
        return 0.0 if math.isinf(last) else (math.inf if last == 0.0 else max(0.0, time.monotonic() - last))

    def alone(self, quiet_s: float = 0.0) -> bool:
        """True where this instance has a slot, no other instance is serving, and none finished a request in
        the last ``quiet_s`` seconds."""
        idle = self.idle_for()
        return self.slot is not None and idle > 0.0 and idle >= quiet_s

    def close(self) -> None:
        if self.slot is not None:
            self._times[self.slot] = 0.0
            self._taken.get(str(self.path), set()).discard(self.slot)
            with contextlib.suppress(OSError):
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self.slot, os.SEEK_SET)
        self._times = np.zeros(0, np.float64)
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.slot = None

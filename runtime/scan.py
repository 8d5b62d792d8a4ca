"""Retrieval through the ``item_scan`` model: an exact inner-product scan of the item table.

The gpu target serves ``item_scan`` (``builders/repository/item_scan.py``) on a GPU instance, and the retrieval
models call it instead of searching the FAISS index: ``ScanIndex`` has ``ItemIndex``'s ``size``,
``settings`` and ``search``, so ``Retriever`` does not know which one it holds. A scan is exact: every
item row is scored, so its recall@N against exact search is 1 up to the table's float16 rounding.

``Scan`` is the call itself, ``(vector [D], depth) -> (rows, scores)`` best first:

* ``runtime.backend.bls_scan``: inside Triton, a BLS request to the ``item_scan`` model (served);
* ``ort_scan``: the same ONNX file in-process with ONNX Runtime (the in-process pipeline, tests and
  the build's checks answer exactly what the served model does).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime import contract as c
from runtime.arrays import Array, Floats, Int64s
from runtime.ort_runner import make_session

Scan = Callable[[Floats, int], tuple[Int64s, Floats]]


class ScanIndex:
    """The item index as calls to the scan model; ``size`` item rows (the table without its zero row)."""

    def __init__(self, scan: Scan, size: int, settings: Any):
        self.scan = scan
        self.size = int(size)
        self.settings = settings

    def search(self, vector: Floats, n: int) -> tuple[Int64s, Floats]:
        """The ``n`` nearest rows to ``vector [D]`` and their inner products, best first."""
        n = max(1, min(int(n), self.size))
        rows, scores = self.scan(vector, n)  # scan_inputs makes the float32 [1, D] the model takes
        rows, scores = np.asarray(rows, np.int64).reshape(-1), np.asarray(scores, np.float32).reshape(-1)
        if len(rows) < n or len(scores) != len(rows):
            raise RuntimeError(f"{c.ITEM_SCAN}: asked for {n} rows, got {len(rows)} rows and {len(scores)} scores")
        return rows[:n], scores[:n]


def scan_inputs(vector: Floats, depth: int) -> dict[str, Array]:
    """One request's inputs to the scan model: ``VECTOR [1, D]``, ``DEPTH [1, 1]``."""
    return {
        c.SCAN_VECTOR: np.ascontiguousarray(vector, np.float32).reshape(1, -1),
        c.SCAN_DEPTH: np.array([[depth]], np.int64),
    }


def ort_scan(model: str | Path, threads: int = 1) -> Scan:
    """The scan model run in-process by ONNX Runtime on the CPU."""

    session = make_session(str(model), threads)

    def scan(vector: Floats, depth: int) -> tuple[Int64s, Floats]:
        scores, rows = session.run([c.SCAN_SCORES, c.SCAN_ROWS], scan_inputs(vector, depth))
        return rows[0], scores[0]

    return scan

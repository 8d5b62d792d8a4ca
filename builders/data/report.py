"""The validation report: every problem names the file, the column, the first rows and what is wrong.

Rows are 1-based data rows (the header of a CSV file is not counted: row 1 is the CSV's line 2).
Errors stop the build before any training; warnings say what the build did about them (dropped,
kept as cold items, sorted) and are kept in ``build/<name>/data/validation.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import ShoprankError

SHOW_ROWS = 5


@dataclass(frozen=True)
class Problem:
    level: str  # "error" | "warning"
    file: str  # e.g. "items.csv"
    column: str | None
    message: str
    rows: tuple[int, ...] = ()  # the first rows, 1-based
    count: int = 0  # how many rows in all (0: not about rows)

    def __str__(self) -> str:
        column = self.column if self.column is None or self.column.startswith("'") else f"'{self.column}'"
        where = self.file + (f", column {column}" if column else "")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows)
            where += f", row{'s' if self.count > 1 else ''} {shown}"
            if self.count > len(self.rows):
                where += f" and {self.count - len(self.rows)} more"
            elif self.count > 1:
                where += f" ({self.count} rows)"
        return f"{self.level}: {where}: {self.message}"


def first_rows(mask_or_index: np.ndarray) -> tuple[tuple[int, ...], int]:
    """``(first 1-based rows, count)`` of a boolean mask or an array of 0-based row indices."""
    arr = np.asarray(mask_or_index)
    idx = np.flatnonzero(arr) if arr.dtype == bool else np.sort(arr.astype(np.int64))
    return tuple(int(i) + 1 for i in idx[:SHOW_ROWS]), int(idx.size)


def sample(values, mask_or_index: np.ndarray, n: int = 3) -> str:
    """A few offending values, for the message: ``'abc', 'n/a'``."""
    arr = np.asarray(mask_or_index)
    idx = np.flatnonzero(arr) if arr.dtype == bool else np.sort(arr.astype(np.int64))
    return ", ".join(repr(values[int(i)]) for i in idx[:n])


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)  # table -> what an export format's reader mapped (GA4, a feed)

    def error(self, file: str, column: str | None, message: str, rows: np.ndarray | None = None) -> None:
        self._add("error", file, column, message, rows)

    def warning(self, file: str, column: str | None, message: str, rows: np.ndarray | None = None) -> None:
        self._add("warning", file, column, message, rows)

    def _add(self, level, file, column, message, rows) -> None:
        shown, count = first_rows(rows) if rows is not None else ((), 0)
        self.problems.append(Problem(level, file, column, message, shown, count))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def text(self) -> str:
        lines = [str(p) for p in self.errors + self.warnings]
        if self.summary:
            lines.append("summary: " + ", ".join(f"{k} {v}" for k, v in self.summary.items()))
        return "\n".join(lines)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise DataError(self)

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps({"problems": [asdict(p) for p in self.problems], "summary": self.summary}, indent=1, default=str)
        )


class DataError(ShoprankError, ValueError):
    """The shop's data breaks the contract; ``report`` lists every problem (errors first)."""

    def __init__(self, report: ValidationReport | str):
        if isinstance(report, str):
            rep = ValidationReport()
            rep.problems.append(Problem("error", "data", None, report))
            report = rep
        self.report = report
        n = len(report.errors)
        super().__init__(f"the data has {n} error{'s' if n != 1 else ''}; nothing was built:\n{report.text()}")

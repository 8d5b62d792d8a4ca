"""Compare the arms of an online test from the shop's own events: click, add-to-cart and purchase rate per
arm, the difference with its interval, and the sample size still needed for a chosen effect.

The events are the shop's event log in the build's format (docs/data.md: ``session_id``, ``user_id``,
``query``, ``context_item_id``, ``event``) with one more column, the arm that served each list
(``--arm-column``, default ``arm``): what the response said and the shop logged with its events.

* **A list** is one session's events for one query (or homepage, or product page), as the build reads
  them. A list's arm is the arm of its events (a list whose events name two arms is an error, counted).
* **Rates per list**: the share of lists with a click, with an add-to-cart, with a purchase.
* **The unit of randomisation** is the user (a visitor without one: the session). The lists of one
  user are not independent, so each rate is a ratio of per-unit sums and its variance comes from the
  delta method over units (Deng et al., "Applying the Delta Method in Metric Analytics", 2018): the
  interval does not shrink by counting one heavy user's lists many times.
* **The difference** of two arms' rates (treatment minus control), its 95% interval (normal, the two
  arms independent) and its p-value; **sample size**: the units per arm that detect a relative change
  of ``--effect`` at 5% two-sided significance with 80% power, and how many each arm still lacks.

Plain numpy and pyarrow; no server, no cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from runtime.errors import ShoprankError

METRICS = {
    "click_rate": ("click", "add_to_cart", "purchase"),
    "add_to_cart_rate": ("add_to_cart",),
    "purchase_rate": ("purchase",),
}
Z_95 = NormalDist().inv_cdf(0.975)
Z_POWER = NormalDist().inv_cdf(0.8)


class CompareError(ShoprankError, ValueError):
    """The events cannot be compared; the message names the file, the column and the problem."""


@dataclass(frozen=True)
class Lists:
    """Per list: its unit (user or session) and arm, and whether it had each outcome."""

    unit: np.ndarray  # int64, a dense index of the randomisation unit
    arm: np.ndarray  # object: the arm's label
    outcomes: dict[str, np.ndarray]  # metric -> bool per list
    mixed: int  # lists whose events named more than one arm (left out)


@dataclass(frozen=True)
class Rate:
    value: float
    units: int
    lists: int
    unit_variance: float  # the per-unit variance of the linearised ratio (delta method), for sample sizes

    @property
    def se(self) -> float:
        return math.sqrt(self.unit_variance / self.units) if self.units else math.inf


def read_events(paths: list[Path], arm_column: str) -> Lists:
    """The lists of the event files (Parquet, or CSV with a header), with their arm."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    tables = []
    for path in paths:
        if not path.exists():
            raise CompareError(f"{path}: no such file")
        table = pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)
        for name in ("session_id", "event", arm_column):
            if name not in table.column_names:
                raise CompareError(f"{path}: no column '{name}' (columns: {', '.join(table.column_names)})")
        keep = ["session_id", "event", arm_column] + [
            c for c in ("user_id", "query", "context_item_id") if c in table.column_names
        ]
        tables.append(pa.table({c: table[c].cast(pa.string()) for c in keep}))
    table = pa.concat_tables(tables, promote_options="default")
    if table.num_rows == 0:
        raise CompareError(f"{', '.join(map(str, paths))}: no events")
    if table[arm_column].null_count:
        raise CompareError(f"column '{arm_column}': {table[arm_column].null_count} events name no arm")

    def column(name: str) -> np.ndarray:
        if name not in table.column_names:
            return np.full(table.num_rows, "", object)
        return np.asarray(pc.fill_null(table[name], "").to_pylist(), object)

    session, user, events, arms = column("session_id"), column("user_id"), column("event"), column(arm_column)
    list_key = session + "\x1f" + column("query") + "\x1f" + column("context_item_id")
    _, list_of = np.unique(list_key, return_inverse=True)
    n_lists = int(list_of.max()) + 1
    # a list's arm: the arm of its events; a list whose events name two arms is left out
    list_arm = np.empty(n_lists, object)
    list_arm[list_of] = arms
    mixed = np.zeros(n_lists, bool)
    np.logical_or.at(mixed, list_of, arms != list_arm[list_of])
    unit_label = np.where(user != "", "u:" + user, "s:" + session)
    list_unit = np.empty(n_lists, object)
    list_unit[list_of] = unit_label
    _, unit = np.unique(list_unit, return_inverse=True)
    outcomes = {}
    for metric, kinds in METRICS.items():
        hit = np.zeros(n_lists, bool)
        np.logical_or.at(hit, list_of, np.isin(events, kinds))
        outcomes[metric] = hit[~mixed]
    return Lists(unit[~mixed].astype(np.int64), list_arm[~mixed], outcomes, int(mixed.sum()))


def rate(unit: np.ndarray, outcome: np.ndarray) -> Rate:
    """Share of lists with the outcome, as a ratio of per-unit sums, with its delta-method variance."""
    units, index = np.unique(unit, return_inverse=True)
    n = np.bincount(index).astype(np.float64)  # lists per unit
    y = np.bincount(index, weights=outcome.astype(np.float64))
    r = float(y.sum() / n.sum())
    mean_n = float(n.mean())
    linear = (y - r * n) / mean_n  # per unit: the ratio's linearisation
    variance = float(linear.var(ddof=1)) if len(units) > 1 else math.inf
    return Rate(r, len(units), int(n.sum()), variance)


@dataclass(frozen=True)
class Difference:
    metric: str
    control: Rate
    treatment: Rate
    effect: float  # the relative change to detect, for the sample size

    @property
    def delta(self) -> float:
        return self.treatment.value - self.control.value

    @property
    def se(self) -> float:
        return math.sqrt(self.control.se**2 + self.treatment.se**2)

    @property
    def interval(self) -> tuple[float, float]:
        return self.delta - Z_95 * self.se, self.delta + Z_95 * self.se

    @property
    def p_value(self) -> float:
        if self.se == 0:
            return 1.0 if self.delta == 0 else 0.0
        return 2 * (1 - NormalDist().cdf(abs(self.delta) / self.se))

    @property
    def significant(self) -> bool:
        lo, hi = self.interval
        return lo > 0 or hi < 0

    @property
    def units_needed(self) -> int:
        """Units per arm that detect a relative change of ``effect`` of the control's rate (5%, 80% power)."""
        change = self.effect * self.control.value
        if change <= 0:
            return 0
        pooled = (self.control.unit_variance + self.treatment.unit_variance) / 2
        return math.ceil((Z_95 + Z_POWER) ** 2 * 2 * pooled / change**2)

    @property
    def units_still_needed(self) -> int:
        return max(0, self.units_needed - min(self.control.units, self.treatment.units))


def compare(lists: Lists, control: str | None = None, effect: float = 0.02) -> list[Difference]:
    """Each metric, every other arm against ``control`` (default: the first arm by name)."""
    arms = sorted(set(lists.arm.tolist()))
    if len(arms) < 2:
        raise CompareError(
            f"the events name {len(arms)} arm{'' if len(arms) == 1 else 's'} ({', '.join(arms)}): need 2"
        )
    control = control if control is not None else arms[0]
    if control not in arms:
        raise CompareError(f"--control {control!r}: no such arm (arms: {', '.join(arms)})")
    out = []
    for treatment in (a for a in arms if a != control):
        for metric, outcome in lists.outcomes.items():
            rates = {a: rate(lists.unit[lists.arm == a], outcome[lists.arm == a]) for a in (control, treatment)}
            out.append(Difference(f"{metric} ({treatment} - {control})", rates[control], rates[treatment], effect))
    return out


def report(diffs: list[Difference], mixed: int) -> str:
    lines = [
        "| metric | control | treatment | difference | 95% interval | p | units per arm | still needed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in diffs:
        lo, hi = d.interval
        lines.append(
            f"| {d.metric} | {d.control.value:.4f} ({d.control.lists} lists) | {d.treatment.value:.4f} "
            f"({d.treatment.lists} lists) | {d.delta:+.4f} | [{lo:+.4f}, {hi:+.4f}] | {d.p_value:.3f} | "
            f"{min(d.control.units, d.treatment.units)} | {d.units_still_needed} |"
        )
    effect = diffs[0].effect if diffs else 0.0
    lines.append("")
    lines.append(
        f"still needed: units (users, or sessions of anonymous visitors) per arm to detect a {effect:.0%} relative "
        "change at 5% significance, 80% power"
    )
    if mixed:
        lines.append(f"left out: {mixed} lists whose events name more than one arm")
    return "\n".join(lines)

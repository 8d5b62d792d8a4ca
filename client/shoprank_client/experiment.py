"""The user split of an online test the server runs (``server/experiment.py`` in the serving repository).

While a test runs, each public model's config holds it (parameter ``shoprank_experiment``, JSON): its name,
the share of users the treatment gets and the treatment's model. The SDK reads that config at first use and
every ``ClientOptions.experiment_refresh_s`` (0: never, always the control), and sends a call to the
treatment's model when ``bucket(name, unit)`` falls below the share. ``unit`` is the caller's user id (or
``split_by``: a session id for visitors without an account) as the SDK sends it: a string id is its stable
INT64 (``shoprank_client.ids``). The bucket is a hash, so a unit keeps its arm on every client for the whole
test, and another test's name reshuffles the units. No I/O here: the clients read the config.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shoprank_client.ids import stable_id

EXPERIMENT_PARAMETER = "shoprank_experiment"  # the serving repository's runtime/contract.py names it too


def bucket(name: str, unit: int) -> float:
    """Where ``unit`` falls in ``[0, 1)`` for the test ``name``: uniform over units, fixed for a unit."""
    digest = hashlib.blake2b(f"{name}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def unit_id(value: int | str) -> int:
    """The INT64 a user (or session) id is sent and split as."""
    return stable_id(value) if isinstance(value, str) else int(value)


@dataclass(frozen=True)
class Split:
    """A running test, as one public model's config holds it."""

    name: str
    share: float
    control: int  # the releases
    treatment: int
    arm: str  # the treatment's model

    def treated(self, unit: int) -> bool:
        return bucket(self.name, unit) < self.share


def parse_split(config: Mapping[str, Any]) -> Split | None:
    """The test in a model config (``get_model_config(..., as_json=True)``), or None."""
    params = config.get("config", config).get("parameters", {})
    raw = params.get(EXPERIMENT_PARAMETER, {}).get("string_value", "")
    if not raw:
        return None
    fields = json.loads(raw)
    return Split(
        str(fields["name"]),
        float(fields["share"]),
        int(fields["control"]),
        int(fields["treatment"]),
        str(fields["arm"]),
    )


class Splits:
    """The tests of the models a client calls, each re-read after ``refresh_s``."""

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic):
        self.refresh_s = refresh_s
        self.clock = clock
        self._known: dict[str, tuple[float, Split | None]] = {}

    def stale(self, model: str) -> bool:
        if self.refresh_s <= 0:
            return False
        known = self._known.get(model)
        return known is None or self.clock() - known[0] >= self.refresh_s

    def learn(self, model: str, config: Mapping[str, Any]) -> None:
        self._known[model] = (self.clock(), parse_split(config))

    def forget(self, model: str) -> None:
        """Re-read at the next call (the treatment's model failed: the test may have stopped)."""
        self._known.pop(model, None)

    def target(self, model: str, unit: int) -> str:
        """The model that serves ``unit``'s call to ``model``: the treatment's, or ``model`` itself."""
        known = self._known.get(model)
        split = known[1] if known else None
        return split.arm if split is not None and split.treated(unit) else model

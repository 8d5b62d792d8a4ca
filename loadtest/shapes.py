"""Load shapes as plain functions of time: ``shape(t) -> (users, spawn_rate)``, or ``None`` to stop.

* ``step``: capacity ramp, ``step_users`` more users every ``step_s`` seconds up to ``max_users``.
* ``spike``: a steady base, a burst to ``spike_users`` for ``spike_s``, back to base.
* ``soak``: a constant load for a long time (leaks, drift, slow degradation).

Each user paces itself to ``rate_per_user`` requests per second (Locust ``constant_pacing``), so the
offered load is ``users * rate_per_user`` until the server (or the generator) saturates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Tick = tuple[int, float] | None


@dataclass(frozen=True)
class StepShape:
    step_users: int = 2
    step_s: float = 20.0
    max_users: int = 20

    def __call__(self, t: float) -> Tick:
        step = int(t // self.step_s) + 1
        users = step * self.step_users
        if users > self.max_users:
            return None
        return users, float(self.step_users * 10)

    def steps(self) -> list[tuple[float, float, int]]:
        """(start, end, users) of every step."""
        n = self.max_users // self.step_users
        return [(i * self.step_s, (i + 1) * self.step_s, (i + 1) * self.step_users) for i in range(n)]


@dataclass(frozen=True)
class SpikeShape:
    base_users: int = 4
    spike_users: int = 20
    warm_s: float = 20.0
    spike_s: float = 10.0
    cool_s: float = 20.0

    def __call__(self, t: float) -> Tick:
        if t < self.warm_s:
            return self.base_users, 10.0
        if t < self.warm_s + self.spike_s:
            return self.spike_users, 100.0  # as fast as Locust spawns: a real spike
        if t < self.warm_s + self.spike_s + self.cool_s:
            return self.base_users, 100.0
        return None


@dataclass(frozen=True)
class SoakShape:
    users: int = 8
    duration_s: float = 1800.0

    def __call__(self, t: float) -> Tick:
        return (self.users, 10.0) if t < self.duration_s else None


SHAPES: dict[str, Callable[..., Callable[[float], Tick]]] = {"step": StepShape, "spike": SpikeShape, "soak": SoakShape}


def make_shape(name: str, **params) -> Callable[[float], Tick]:
    if name not in SHAPES:
        raise ValueError(f"--shape: unknown shape {name!r}; choose one of {sorted(SHAPES)}")
    return SHAPES[name](**params)


def add_shape_arguments(parser) -> None:
    """The shape and pacing options, shared by the locustfile, ``loadtest.run`` and ``loadtest.capacity``."""
    parser.add_argument("--shape", default="soak", choices=sorted(SHAPES), help="load shape")
    parser.add_argument("--rate-per-user", type=float, default=5.0, help="requests per second each user paces to")
    parser.add_argument("--step-users", type=int, default=2, help="step: users added per step")
    parser.add_argument("--step-s", type=float, default=20.0, help="step: seconds per step")
    parser.add_argument("--max-users", type=int, default=20, help="step: last step's users")
    parser.add_argument("--spike-users", type=int, default=20, help="spike: users during the spike")
    parser.add_argument("--spike-s", type=float, default=10.0, help="spike: seconds of the spike")
    parser.add_argument("--soak-users", type=int, default=4, help="soak: users")
    parser.add_argument("--soak-s", type=float, default=20.0, help="soak: seconds")

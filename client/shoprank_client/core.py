"""Endpoint choice and retry decisions, shared by the sync and the asyncio client (no I/O but DNS).

* ``EndpointPool``: the servers. ``"host:port"`` is one endpoint; ``"dns:name:port"`` expands to every
  address the name resolves to, re-resolved every ``dns_refresh_s``. That is how the SDK spreads
  load over the pods behind a headless Kubernetes Service: gRPC keeps one HTTP/2 connection per
  channel, so a normal ClusterIP Service would pin a client to one pod. Calls go round-robin over
  healthy endpoints (or always to the first healthy one with ``balance="failover"``); an endpoint
  that was unavailable is skipped for ``down_cooldown_s``.
* ``CallPlan``: one call's deadline, attempts and backoff. Only retryable errors (Unavailable,
  Overloaded) are retried, at most ``max_attempts`` in all, and never past the deadline.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from shoprank_client.errors import DeadlineExceeded, RankingError, Unavailable
from shoprank_client.types import ClientOptions

DNS_PREFIX = "dns:"


def resolve(endpoint: str) -> list[str]:
    """``dns:name:port`` -> every ``ip:port`` it resolves to (sorted); other endpoints unchanged."""
    if not endpoint.startswith(DNS_PREFIX):
        return [endpoint]
    hostport = endpoint[len(DNS_PREFIX) :].lstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r}: expected dns:NAME:PORT")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise Unavailable(f"cannot resolve {host}: {err}", endpoint=endpoint) from None
    addrs = sorted({str(info[4][0]) for info in infos})
    return [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addrs]


class EndpointPool:
    def __init__(
        self, endpoints: str | Sequence[str], options: ClientOptions, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("at least one endpoint is needed, e.g. '127.0.0.1:8001'")
        self._configured = list(endpoints)
        self._has_dns = any(e.startswith(DNS_PREFIX) for e in self._configured)
        self._options = options
        self._clock = clock
        self._lock = threading.Lock()
        self._down_until: dict[str, float] = {}
        self._resolved_at = -float("inf")
        self._endpoints: list[str] = []
        self._counter = itertools.count()

    def endpoints(self) -> list[str]:
        if self._endpoints and not self._has_dns:
            return self._endpoints
        now = self._clock()
        if not self._endpoints or now - self._resolved_at >= self._options.dns_refresh_s:
            resolved: list[str] = []
            for e in self._configured:
                resolved += [r for r in resolve(e) if r not in resolved]
            with self._lock:
                self._endpoints, self._resolved_at = resolved, now
        return self._endpoints

    def pick(self, tried: set[str]) -> str:
        """The next endpoint: healthy and not yet tried in this call if possible, else the least bad."""
        all_eps = self.endpoints()
        now = self._clock()
        healthy = [e for e in all_eps if self._down_until.get(e, 0.0) <= now]

        def groups() -> Iterator[
            list[str]
        ]:  # each fallback is built only if the one before it is empty; most calls take the first
            yield [e for e in healthy if e not in tried]
            yield healthy
            yield [e for e in all_eps if e not in tried]
            yield all_eps

        for group in groups():
            if group:
                if self._options.balance == "failover":
                    return group[0]
                return group[next(self._counter) % len(group)]
        raise Unavailable("no endpoint configured")  # unreachable: all_eps is never empty

    def mark_down(self, endpoint: str) -> None:
        with self._lock:
            self._down_until[endpoint] = self._clock() + self._options.down_cooldown_s

    def mark_up(self, endpoint: str) -> None:
        if endpoint in self._down_until:
            with self._lock:
                self._down_until.pop(endpoint, None)

    def is_down(self, endpoint: str) -> bool:
        return self._down_until.get(endpoint, 0.0) > self._clock()


class CallPlan:
    """State of one call: which endpoints it tried, how many attempts, how much time is left."""

    def __init__(
        self,
        pool: EndpointPool,
        options: ClientOptions,
        timeout_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        timeout = options.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError("timeout_s must be > 0")
        self.pool, self.policy, self.clock, self.rand = pool, options.retry, clock, rand
        self.started = clock()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.attempts = 0
        self.tried: set[str] = set()

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def attempt_timeout(self) -> float:
        """How long the client waits for the next RPC: what is left of the call's deadline (>= 1 ms)."""
        return max(self.remaining(), 1e-3)

    def deadline_error(self, endpoint: str) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"deadline of {self.timeout * 1e3:.0f} ms passed waiting for the server (attempt {self.attempts})",
            "DEADLINE_EXCEEDED",
            endpoint,
        )

    def next_endpoint(self, last_error: RankingError | None = None) -> str:
        if self.remaining() <= 0:
            raise DeadlineExceeded(
                f"deadline of {self.timeout * 1e3:.0f} ms passed after {self.attempts} attempt(s)"
                + (f"; last error: {last_error.message}" if last_error else "")
            )
        self.attempts += 1
        endpoint = self.pool.pick(self.tried)
        self.tried.add(endpoint)
        return endpoint

    def on_error(self, error: RankingError) -> float:
        """Seconds to sleep before the next attempt, or raise ``error`` when it must not be retried."""
        if isinstance(error, Unavailable) and error.endpoint:
            self.pool.mark_down(error.endpoint)
        if not error.retryable or self.attempts >= self.policy.max_attempts:
            raise error
        sleep = self.rand(0.0, self.policy.backoff_cap(self.attempts))
        if sleep >= self.remaining():
            raise error
        return sleep

    def elapsed_ms(self) -> float:
        return (self.clock() - self.started) * 1e3

"""Locust load test of the ranking ensembles over gRPC, through the client SDK.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:8001 --stop-timeout 15 \\
        --requests-file build/loadtest/requests.jsonl --shape step --step-users 2 --step-s 20 \\
        --max-users 20 --rate-per-user 5 --slo-p99-ms 100 --csv build/loadtest/run --html build/loadtest/run.html

Locust has no gRPC user: ``RankingUser`` calls the SDK and reports every call to Locust's
``request`` event: the name (``search``, ``recommend``, ``search_catalog``, ``recommend_catalog``), the
response time, and failures with their gRPC status. Always give ``--stop-timeout`` (``loadtest.run``
does): users then finish their request in flight when stopped, instead of cancelling it, which can
crash Triton 24.10 (server#7368). The request mix is read from a prepared file
(``python -m loadtest.traffic``), so a user does no heavy work per request. The shape comes from
``--shape`` (``loadtest/shapes.py``). When
the run quits, the SLO gate (``loadtest/slo.py``) sets a non-zero exit code if p95/p99 or the failure
ratio break their limits. With ``--online-url``, one ``OnlineLoad`` (``loadtest/online_writes.py``)
writes item updates and session clicks into that Redis during the run, reported as ``redis`` requests.
"""

from __future__ import annotations

import csv
import itertools
import time
import types

from locust import LoadTestShape, User, constant_pacing, events, task
from locust.runners import WorkerRunner

from loadtest.online_writes import OnlineLoad, WritePlan
from loadtest.shapes import add_shape_arguments, make_shape
from loadtest.slo import Slo
from loadtest.traffic import load
from online.writer import OnlineWriter
from runtime.online_store import OnlineSettings, connect
from shoprank_client import NO_RETRY, RankingClient, RankingError

_SAMPLES: list[tuple[float, str, float, int]] = []


@events.init_command_line_parser.add_listener
def _arguments(parser):
    g = parser.add_argument_group("shoprank")
    g.add_argument("--requests-file", default="build/loadtest/requests.jsonl", help="prepared requests (jsonl)")
    add_shape_arguments(g)
    g.add_argument("--base-users", type=int, default=4, help="spike: users before and after the spike")
    g.add_argument("--timeout-s", type=float, default=10.0, help="SDK deadline per call")
    g.add_argument("--slo-p95-ms", type=float, default=None)
    g.add_argument("--slo-p99-ms", type=float, default=None)
    g.add_argument("--max-fail-ratio", type=float, default=None)
    g.add_argument("--samples-file", default="", help="write every request (time, name, ms, ok) to this CSV")
    g.add_argument("--online-url", default="", help="redis:// URL: write item updates and clicks there too")
    g.add_argument("--online-prefix", default="shoprank", help="the server's SHOPRANK_ONLINE_PREFIX")
    g.add_argument("--update-rate", type=float, default=1000.0, help="online writes per second")
    g.add_argument("--click-share", type=float, default=0.2, help="share of the online writes that are clicks")


@events.init.add_listener
def _init(environment, **_):
    # gRPC must cooperate with gevent, which Locust runs on; this must happen before any channel.
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()
    if environment.parsed_options and environment.parsed_options.samples_file:
        environment.events.request.add_listener(_record_sample)


def _record_sample(request_type, name, response_time, response_length, exception=None, **_):
    _SAMPLES.append((time.time(), name, response_time, 0 if exception else 1))


class RankingUser(User):
    """One shopper session after another: searches and homepage recommendations, as prepared."""

    _requests: list[dict] = []
    _cursor = itertools.count()

    def on_start(self):

        opts = self.environment.parsed_options
        if not RankingUser._requests:
            RankingUser._requests = load(opts.requests_file)
        self.wait_time = types.MethodType(constant_pacing(1.0 / opts.rate_per_user), self)
        # Exact deadlines (no cancel grace): blocking gRPC calls cooperate with gevent. No retries:
        # a load test measures what the server does with each request.
        self.client = RankingClient(self.host, timeout_s=opts.timeout_s, retry=NO_RETRY, cancel_grace_s=0)

    def on_stop(self):
        self.client.close()

    @task
    def rank(self):

        req = RankingUser._requests[next(RankingUser._cursor) % len(RankingUser._requests)]
        start = time.perf_counter()
        error = None
        length = 0
        try:
            kind = req["kind"]
            listing = req.get("listing", {})  # a catalogue page's facets, filter, page, sort (loadtest/traffic.py)
            if kind == "search":
                result = self.client.search(req["user_id"], req["query"], req["candidates"], req["k"])
            elif kind == "recommend":
                result = self.client.recommend(req["user_id"], req["candidates"], req["k"])
            elif kind == "search_catalog":
                result = self.client.search_catalog(req["user_id"], req["query"], req["k"], req["exclude"], **listing)
            else:
                result = self.client.recommend_catalog(
                    req["user_id"], req["k"], req["context"], req["exclude"], **listing
                )
            length = len(result.items)
        except RankingError as err:
            error = RuntimeError(f"{err.status or type(err).__name__}: {err.message}")
        self.environment.events.request.fire(
            request_type="grpc",
            name=req["kind"],
            response_time=(time.perf_counter() - start) * 1e3,
            response_length=length,
            exception=error,
            context={},
        )


class ConfiguredShape(LoadTestShape):
    """The shape named by ``--shape``, with its parameters from the command line."""

    _shape = None

    def tick(self):
        if self._shape is None:
            o = self.runner.environment.parsed_options
            params = {
                "step": dict(step_users=o.step_users, step_s=o.step_s, max_users=o.max_users),
                "spike": dict(
                    base_users=o.base_users,
                    spike_users=o.spike_users,
                    warm_s=o.spike_s * 2,
                    spike_s=o.spike_s,
                    cool_s=o.spike_s * 2,
                ),
                "soak": dict(users=o.soak_users, duration_s=o.soak_s),
            }[o.shape]
            self._shape = make_shape(o.shape, **params)
        return self._shape(self.get_run_time())


_ONLINE: list = []


@events.test_start.add_listener
def _start_online_writes(environment, **_):
    opts = environment.parsed_options
    if not (opts and opts.online_url) or isinstance(environment.runner, WorkerRunner):
        return
    import gevent  # type: ignore[import-untyped]

    writer = OnlineWriter(connect(OnlineSettings(url=opts.online_url, timeout_s=5)), prefix=opts.online_prefix)
    load_ = OnlineLoad(writer, WritePlan(opts.update_rate, opts.click_share), load(opts.requests_file))

    def report(name, ms, n, error):
        environment.events.request.fire(
            request_type="redis", name=name, response_time=ms, response_length=n, exception=error, context={}
        )

    _ONLINE.append((load_, gevent.spawn(load_.run, report, gevent.sleep)))


@events.test_stop.add_listener
def _stop_online_writes(environment, **_):
    while _ONLINE:
        load_, greenlet = _ONLINE.pop()
        load_.stop()
        greenlet.join(timeout=5)
        print(f"online writes: {load_.written} written")


def ranking_total(stats):
    """The ranking requests (gRPC) aggregated: the SLO gate leaves the online store's writes out."""
    from locust.stats import StatsEntry

    total = StatsEntry(stats, "ranking", "grpc")
    for (_, method), entry in stats.entries.items():
        if method == "grpc":
            total.extend(entry)
    return total


@events.quitting.add_listener
def _quitting(environment, **_):
    opts = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        return
    if opts.samples_file:
        with open(opts.samples_file, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["time", "name", "ms", "ok"])
            writer.writerows(_SAMPLES)
    total = ranking_total(environment.stats)
    slo = Slo(opts.slo_p95_ms, opts.slo_p99_ms, opts.max_fail_ratio)
    problems = slo.check(
        total.get_response_time_percentile(0.95) or 0.0,
        total.get_response_time_percentile(0.99) or 0.0,
        total.fail_ratio,
        total.num_requests,
    )
    if problems:
        print("SLO gate: FAILED: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print(
            f"SLO gate: passed ({total.num_requests} requests, p95 "
            f"{total.get_response_time_percentile(0.95)} ms, p99 {total.get_response_time_percentile(0.99)} ms, "
            f"failures {total.fail_ratio:.2%})"
        )

"""What a new fused instance's first requests cost, with and without its warm-up request
(``make bench-first-request``; results in docs/benchmarks.md).

Each round starts the server twice on a copy of ``--repo`` (a cpu build, fused layout): once without the fused
models' warm-up request (``cold``: their configs without ``model_warmup``) and once as shipped (``warm``), the
order alternating from round to round.
Once it is ready (strict readiness: every model loaded, so the warm-up has run), per call, the calls in turn:

* the first request, alone: the first instance's first;
* 2 requests at once, 4 times: the second instance meets its first (the instances are taken in a fixed order);
* 40 requests one at a time: the steady state.

Then the same build is published as the next release (``server/publish.py``) while one client per call sends
requests one at a time, and the first answers of the new release are timed: a publish loads new instances, as a
start or a scale-out does, while the old ones serve. The requests are ``make bench-peer``'s (``plan``), new to
every server. Prints a markdown table naming the machine; not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from benchmarks.peer import CALLS, emit, plan, triton_inputs
from benchmarks.pipeline import fused_variant, machine
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from server.launcher import ServerOptions, TritonServer
from server.publish import Publisher

MODES = ("cold", "warm")
LABELS = {"cold": "none", "warm": "as shipped"}
PAIRS = 4  # rounds of 2 requests at once after the first request
STEADY = 40
AFTER_PUBLISH = 4  # the new release's first answers timed, per call


class Caller:
    """One gRPC client; ``__call__`` times a request and says which release answered (RESULT_INFO)."""

    def __init__(self, url: str):
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)

    def __call__(self, name: str, r: dict) -> tuple[float, int | None]:
        t0 = time.perf_counter()
        result = self.client.infer(name, triton_inputs(name, r))
        ms = (time.perf_counter() - t0) * 1e3
        info = json.loads(result.as_numpy("RESULT_INFO")[0])
        return ms, info.get("release")


def first_requests(url: str, name: str, reqs: list[dict]) -> dict[str, float]:
    """The first request, the slowest of the next ``PAIRS`` pairs sent at once, and the p50 of ``STEADY`` after."""
    callers = [Caller(url), Caller(url)]
    callers[0].client.is_server_live()  # the channel is open before the first request is timed
    callers[1].client.is_server_live()
    first, _ = callers[0](name, reqs[0])
    pairs = []
    with ThreadPoolExecutor(2) as pool:
        for i in range(PAIRS):
            two = reqs[1 + 2 * i : 3 + 2 * i]
            pairs += [ms for ms, _ in pool.map(lambda a: a[0](name, a[1]), zip(callers, two, strict=True))]
    start = 1 + 2 * PAIRS
    steady = [callers[0](name, r)[0] for r in reqs[start : start + STEADY]]
    return {"first": first, "pairs_max": max(pairs), "steady_p50": statistics.median(steady)}


def during_publish(server: TritonServer, repo: Path, build: Path, requests: dict[str, list[dict]]) -> dict:
    """Per call, the new release's first ``AFTER_PUBLISH`` answers (ms) while ``build`` is published."""
    import tritonclient.grpc as grpcclient

    publisher = Publisher(repo, grpcclient.InferenceServerClient(server.grpc_url), drain_s=2.0)
    target = publisher.status()["serving"] + 1
    published, stop = threading.Event(), threading.Event()
    answers: dict[str, list[tuple[float, int | None]]] = {name: [] for name in CALLS}

    def send(name: str) -> None:
        caller, reqs, i = Caller(server.grpc_url), requests[name], 0
        while not stop.is_set():  # until the new release has answered AFTER_PUBLISH times (or the publish failed)
            answers[name].append(caller(name, reqs[i % len(reqs)]))
            i += 1
            if published.is_set() and sum(rel == target for _, rel in answers[name]) >= AFTER_PUBLISH:
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=send, args=(name,)) for name in CALLS]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        publisher.publish(build)
        published.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    out = {}
    for name in CALLS:
        new = [ms for ms, rel in answers[name] if rel == target][:AFTER_PUBLISH]
        old = [ms for ms, rel in answers[name] if rel != target]
        out[name] = {"new_max": max(new), "new_first": new[0], "old_p50": statistics.median(old)}
    return out


def one_server(build: Path, live: Path, requests: dict, offset: int, publish: bool) -> dict:
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(build, live)
    options = ServerOptions(
        model_repository=live, ready_timeout_s=600, response_cache_bytes=0, model_control="explicit"
    )
    t0 = time.monotonic()
    with TritonServer(options) as server:
        ready_s = time.monotonic() - t0
        n = 1 + 2 * PAIRS + STEADY
        out: dict = {name: first_requests(server.grpc_url, name, requests[name][offset : offset + n]) for name in CALLS}
        out["ready_s"] = ready_s
        if publish:
            later = {name: reqs[offset + n :] for name, reqs in requests.items()}
            for name, result in during_publish(server, live, build, later).items():
                out[name].update(result)
    return out


def run(build: Path, rounds: int, publish: bool) -> dict[str, list[dict]]:
    pipeline = InProcessPipeline(build)
    per_server = 1 + 2 * PAIRS + STEADY + 400
    requests = plan(pipeline, rounds * len(MODES) * per_server // 2 + per_server)
    del pipeline
    live = build.parent / "first_request_repo"
    builds = {"cold": fused_variant(build, build.parent / "first_request_cold", warm_up=False), "warm": build}
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    k = 0
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            results[mode].append(one_server(builds[mode], live, requests, k * per_server, publish))
            k += 1
    shutil.rmtree(live, ignore_errors=True)
    shutil.rmtree(builds["cold"], ignore_errors=True)
    return results


def table(results: dict[str, list[dict]], rounds: int, publish: bool) -> str:
    def med(mode: str, name: str, key: str) -> str:
        values = [r[name][key] for r in results[mode]]
        return f"{statistics.median(values):.1f} ({', '.join(f'{v:.0f}' for v in values)})"

    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; {rounds} rounds, the server started cold "
        "(the fused configs without `model_warmup`) and warm (as shipped) in each, the order alternating; ms, the "
        "median over the rounds and each round's value in brackets (`make bench-first-request`, "
        "benchmarks/first_request.py).",
        "",
        "| call | warm-up request | first request | slowest of the next 8 (2 at once) | p50 of the 40 after |"
        + (
            " the new release's slowest of its first 4 (publish) | the old release's p50 meanwhile |" if publish else ""
        ),
        "|---|---|---|---|---|" + ("---|---|" if publish else ""),
    ]
    for name in CALLS:
        for mode in MODES:
            row = f"| `{name}` | {LABELS[mode]} | {med(mode, name, 'first')} | {med(mode, name, 'pairs_max')} | "
            row += f"{med(mode, name, 'steady_p50')} |"
            if publish:
                row += f" {med(mode, name, 'new_max')} | {med(mode, name, 'old_p50')} |"
            lines.append(row)
    ready = {mode: statistics.median(r["ready_s"] for r in results[mode]) for mode in MODES}
    lines += ["", "Start to ready: " + ", ".join(f"{mode} {s:.1f} s" for mode, s in ready.items()) + " (median)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, required=True, help="a cpu build (fused layout), e.g. build/default/bench_repo")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-publish", action="store_true", help="starts only, no publish")
    p.add_argument("--out", type=Path, default=None, help="write the table into this markdown file's section")
    args = p.parse_args(argv)
    results = run(args.repo.resolve(), args.rounds, not args.no_publish)
    emit(table(results, args.rounds, not args.no_publish), args.out, "first-request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: our served CPU path against the service a team would write instead, same requests, one run.

``python -m benchmarks.peer [--profile default] [--requests 400] [--out docs/benchmarks.md]`` (``make bench-peer``)

The peer is FastAPI + uvicorn around the same ONNX files run by ONNX Runtime in process
(``benchmarks/peer_service.py``), with 1 and with 2 worker processes. Ours is the built repository on the
bundled tritonserver, called with raw ``tritonclient`` over gRPC, in the cpu target's two layouts
(``builders/repository/model_specs.py``): ``fused`` (the default; its in-process query-embedding cache on, as
shipped, and off; its instances in priority order, as shipped, and taking turns) and ``ensemble`` (Triton's
response cache off); and the fused step called directly, without its one-step ensemble, which prices that
hop. Each system runs alone on this machine, in turn, on
the same requests:

* ``search``: one query from the shop's query pool (popular ones more often), 100 candidates, k = 10;
* ``search_catalog``: unique queries (brand x category x attribute phrases), k = 10;
* ``recommend_catalog``: a known user on a product page (one context item), k = 10.

Measured per call: p50 and p99 at concurrency 1, then req/s and p99 with 8 requests in flight (8 client
threads, each with its own connection) on as many *other* requests drawn the same way (a cache warmed by
the first pass meets new catalogue queries). The client runs on the same machine and takes CPU from the
server. Top-k parity: the ids of every answer, at concurrency 1 and under load, against the in-process
pipeline's. Not a test: nothing asserts.

``--interleaved`` (``make bench-peer INTERLEAVED=1``) instead prices concurrency 1 alone, with less of this
machine's drift: ours as shipped, its fused step called directly (without the one-step ensemble) and the
peer with 1 worker are all up, and each call's requests go to them in turn in blocks of ``BLOCK`` (the
order reversed every other block), so a slow phase falls on all three; the ratio of the p50s, the median
over blocks of the ratio of each block's p50s, and the median over blocks of the ensemble's hop (ours minus
the step alone), in 3 runs.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pipeline import fused_variant, machine, make_requests, percentiles, without_query_cache, write_section
from benchmarks.search_cost import request as triton_request
from builders.build import build
from builders.repository.model_specs import ENSEMBLE
from builders.repository.pipeline import InProcessPipeline
from runtime import cli_logging
from runtime.fused import FUSED_SUFFIX
from runtime.lexicon import category_phrase
from server.launcher import ServerOptions, TritonServer, free_ports

CALLS = ("search", "search_catalog", "recommend_catalog")
IN_FLIGHT = 8
BLOCK = 20  # requests per system and turn in --interleaved


def plan(pipeline: InProcessPipeline, n: int, seed: int = 0) -> dict[str, list[dict]]:
    """The same requests for every system: ``{call: [{"user_id", "query"?, "item_ids"?, "context"?, "k"}]}``, ``2n``
    per call: the first ``n`` at concurrency 1, the others under load."""
    rng = np.random.default_rng(seed)
    search = [
        {"user_id": int(u), "query": q, "item_ids": [int(i) for i in items], "k": k}
        for u, q, items, k in make_requests(pipeline, 2 * n, 100, seed)
    ]
    lex = pipeline.search_store.lexicon
    phrases = [category_phrase(cat) for cat in lex.categories]
    adjectives = [a for a in lex.attributes if a.isalpha()][:40] or ["new"]
    combos = {f"{a} {b.lower()} {p}" for a in adjectives for b in lex.brands for p in phrases}
    unique = sorted(combos)
    rng.shuffle(unique)
    users = pipeline.search_store.tables.user_ids_sorted
    items = pipeline.search_store.tables.item_ids_sorted
    catalog = [{"user_id": int(rng.choice(users)), "query": q, "k": 10} for q in unique[: 2 * n]]
    pages = [{"user_id": int(rng.choice(users)), "context": [int(rng.choice(items))], "k": 10} for _ in range(2 * n)]
    return {"search": search, "search_catalog": catalog, "recommend_catalog": pages}


class Peer:
    """The FastAPI service in its own process(es), on a free port."""

    def __init__(self, repo: Path, workers: int, log: Path):
        self.port = free_ports(1)[0]
        env = {**os.environ, "SHOPRANK_PEER_REPO": str(repo)}
        cmd = [sys.executable, "-m", "uvicorn", "benchmarks.peer_service:app", "--port", str(self.port)]
        cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if self.connection().request("GET", "/ready") is None:
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the peer did not start; see {log}")

    def connection(self) -> PeerConnection:
        return PeerConnection(self.port)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class PeerConnection:
    """One keep-alive HTTP connection to the peer. uvicorn closes a connection idle for 5 s (its default
    ``--timeout-keep-alive``), as a load step of a slow pass can leave it: a request that finds it closed is
    sent again on a new connection, once, as HTTP clients do for a request that may be repeated (the peer's
    calls only read; the first request after a pause is a warm-up, not timed)."""

    STALE = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: dict | None = None):
        payload = json.dumps(body) if body else None

        def send() -> http.client.HTTPResponse:
            self.conn.request(method, path, payload, {"Content-Type": "application/json"})
            return self.conn.getresponse()

        try:
            resp = send()
        except self.STALE:
            self.conn.close()
            resp = send()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
        return None if method == "GET" else json.loads(data)["item_ids"]


def triton_caller(url: str, suffix: str = "") -> Callable[[str, dict], list[int]]:
    """Calls of the model ``<call><suffix>`` (``_fused``: the fused step itself, without its ensemble)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)

    def call(name: str, r: dict) -> list[int]:
        return client.infer(name + suffix, triton_inputs(name, r)).as_numpy("TOP_ITEM_IDS").tolist()

    return call


def triton_inputs(name: str, r: dict) -> list:
    """The input tensors of one request of ``plan`` to the call ``name``."""
    if name == "search":
        return triton_request("search", r["user_id"], r["query"], np.asarray(r["item_ids"], np.int64), r["k"])
    if name == "search_catalog":
        return triton_request("search_catalog", r["user_id"], r["query"], None, r["k"])
    return [
        _tensor("USER_ID", np.array([r["user_id"]], np.int64), "INT64"),
        _tensor("CONTEXT_ITEM_IDS", np.asarray(r["context"], np.int64), "INT64"),
        _tensor("EXCLUDE_IDS", np.zeros(0, np.int64), "INT64"),
        _tensor("TOP_K", np.array([r["k"]], np.int32), "INT32"),
    ]


def _tensor(name: str, value: np.ndarray, dtype: str):
    import tritonclient.grpc as grpcclient

    t = grpcclient.InferInput(name, list(value.shape), dtype)
    t.set_data_from_numpy(value)
    return t


def in_turn(systems: dict[str, Any], block: int) -> list[str]:
    """The order in which the systems take block number ``block``: reversed every other block, so none always
    goes first (on caches another system just used) or last."""
    return list(systems)[:: 1 if block % 2 == 0 else -1]


def timed(caller: Callable[[str, Any], Any], name: str, reqs: list) -> tuple[list[float], list]:
    """Each request of ``reqs`` to ``name`` in turn: (latencies in ms, answers)."""
    times, answers = [], []
    for r in reqs:
        t0 = time.perf_counter()
        answers.append(caller(name, r))
        times.append((time.perf_counter() - t0) * 1e3)
    return times, answers


def measure(make_caller: Callable[[], Callable[[str, dict], list[int]]], requests: dict, warmup: int = 20) -> dict:
    """Per call: p50/p99 at concurrency 1 (and the answers), then req/s and p99 with IN_FLIGHT in flight."""
    out: dict = {}
    caller = make_caller()
    for name in CALLS:
        half = len(requests[name]) // 2
        reqs, others = requests[name][:half], requests[name][half:]
        for r in others[:warmup]:  # the load pass's requests: the concurrency-1 pass meets its own cold
            caller(name, r)
        times, answers = timed(caller, name, reqs)
        p50, p99 = percentiles(times)
        latencies, elapsed, under_load = loaded(make_caller, name, others)
        out[name] = {
            "p50": p50,
            "p99": p99,
            "rps": len(others) / elapsed,
            "p99_load": percentiles(latencies)[1],
            "answers": answers + under_load,
        }
    return out


def loaded(make_caller: Callable[[], Callable[[str, dict], list[int]]], name: str, reqs: list[dict]):
    """Every request of ``reqs`` by IN_FLIGHT threads, each with its own caller: (latencies in ms, seconds, the
    answers in the order of ``reqs``)."""
    callers = [make_caller() for _ in range(IN_FLIGHT)]
    chunks = [reqs[i::IN_FLIGHT] for i in range(IN_FLIGHT)]

    def one(i: int) -> tuple[list[float], list]:
        return timed(callers[i], name, chunks[i])

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        t0 = time.perf_counter()
        done = list(pool.map(one, range(IN_FLIGHT)))
        elapsed = time.perf_counter() - t0
    answers: list = [None] * len(reqs)
    for i, (_, got) in enumerate(done):
        answers[i::IN_FLIGHT] = got
    return [x for lat, _ in done for x in lat], elapsed, answers


def peer_caller(peer: Peer) -> Callable[[str, dict], list[int]]:
    conn = peer.connection()
    return lambda name, r: conn.request("POST", f"/{name}", r)


FUSED_OURS = "Triton, fused layout (ours: the cpu target's default)"
IN_TURN = "Triton, fused layout, its instances taking turns (no priorities)"


def run(repo: Path, ensemble_repo: Path, n: int, logs: Path, rounds: int = 1) -> dict:
    """Every system on the same requests, ``rounds`` times, the order reversed each other round; each number
    is the median over the rounds (this machine has slow phases of a minute or more, which one pass of one
    system can fall into) and the parity is the first round's."""
    per_round = [_run_once(repo, ensemble_repo, n, logs, reverse=bool(r % 2)) for r in range(rounds)]
    results: dict = {}
    for system in per_round[0]:
        results[system] = {}
        for name in CALLS:
            runs = [one[system][name] for one in per_round]
            merged = {k: float(np.median([r[k] for r in runs])) for k in ("p50", "p99", "rps", "p99_load")}
            parity = {k: runs[0][k] for k in ("parity", "parity_load", "n")}
            results[system][name] = {**merged, **parity}
    return results


def _run_once(repo: Path, ensemble_repo: Path, n: int, logs: Path, reverse: bool = False) -> dict:
    pipeline = InProcessPipeline(repo)
    requests = plan(pipeline, n)
    want = {
        "search": [
            pipeline.search(r["user_id"], r["query"], np.asarray(r["item_ids"]), r["k"])[0].tolist()
            for r in requests["search"]
        ],
        "search_catalog": [
            pipeline.search_catalog(r["user_id"], r["query"], r["k"])[0].tolist() for r in requests["search_catalog"]
        ],
        "recommend_catalog": [
            pipeline.recommend_catalog(r["user_id"], r["k"], np.asarray(r["context"]))[0].tolist()
            for r in requests["recommend_catalog"]
        ],
    }
    del pipeline
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    uncached = without_query_cache(repo, repo.parent / "bench_repo_no_query_cache")
    in_turn = fused_variant(repo, repo.parent / "bench_repo_in_turn", in_turn=True)
    servers = (
        (FUSED_OURS, repo, ""),
        (IN_TURN, in_turn, ""),
        ("Triton, fused layout, its step called without the ensemble", repo, FUSED_SUFFIX),
        ("Triton, fused layout, query cache off", uncached, ""),
        ("Triton, ensemble layout, response cache off", ensemble_repo, ""),
    )
    systems: list[tuple[str, Callable[[], dict]]] = [
        (system, functools.partial(_served, served, suffix, requests)) for system, served, suffix in servers
    ]
    for workers in (1, 2):
        label = f"FastAPI + ONNX Runtime, {workers} worker{'s' if workers > 1 else ''}"
        systems.append((label, functools.partial(_peer, repo, workers, logs, requests)))
    for system, measure_system in reversed(systems) if reverse else systems:
        results[system] = measure_system()
    results = {system: results[system] for system, _ in systems}  # the table's order
    for result in results.values():
        for name in CALLS:
            same = [a == b for a, b in zip(result[name].pop("answers"), want[name], strict=True)]
            result[name]["parity"], result[name]["parity_load"] = sum(same[:n]), sum(same[n:])
            result[name]["n"] = n
    return results


def _served(repo: Path, suffix: str, requests: dict) -> dict:
    options = ServerOptions(model_repository=repo, ready_timeout_s=600, response_cache_bytes=0)
    with TritonServer(options) as server:
        return measure(functools.partial(triton_caller, server.grpc_url, suffix), requests)


def _peer(repo: Path, workers: int, logs: Path, requests: dict) -> dict:
    peer = Peer(repo, workers, logs / f"peer_{workers}.log")
    try:
        return measure(functools.partial(peer_caller, peer), requests)
    finally:
        peer.stop()


def interleaved(repo: Path, n: int, logs: Path, rounds: int = 3, block: int = BLOCK) -> dict:
    """Ours as shipped, its fused step called directly and the peer (1 worker), all up, ``n`` requests per call
    in blocks taken in turn, in ``rounds`` runs (the systems started again each, new requests each: the
    catalogue queries stay unique): ``{call: {"ours", "step", "peer" (median p50s, ms), "ratios" (each run's
    ratio of ours' and the peer's p50s), "block_ratios" (each run's median over blocks), "hops" (each run's
    median over blocks of ours' p50 minus the step's, ms), "same" (ours' top-k ids equal the peer's), "same_step"
    (equal the step's), "n"}}``."""
    pipeline = InProcessPipeline(repo)
    requests = plan(pipeline, n * rounds)
    del pipeline
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(rounds):
        part = {
            name: (reqs[i * n : (i + 1) * n], reqs[(rounds + i) * n : (rounds + i) * n + 20])
            for name, reqs in requests.items()
        }
        runs.append(_interleaved_once(repo, part, logs, block))
    out: dict = {}
    for name in CALLS:
        one = [run[name] for run in runs]
        out[name] = {
            "ours": float(np.median([r["ours"] for r in one])),
            "step": float(np.median([r["step"] for r in one])),
            "peer": float(np.median([r["peer"] for r in one])),
            "ratios": [r["ours"] / r["peer"] for r in one],
            "block_ratios": [r["block_ratio"] for r in one],
            "hops": [r["hop"] for r in one],
            "same": sum(r["same"] for r in one),
            "same_step": sum(r["same_step"] for r in one),
            "n": sum(r["n"] for r in one),
        }
    return out


def _interleaved_once(repo: Path, requests: dict[str, tuple[list, list]], logs: Path, block: int) -> dict:
    peer = Peer(repo, 1, logs / "peer_interleaved.log")
    out: dict = {}
    try:
        options = ServerOptions(model_repository=repo, ready_timeout_s=600, response_cache_bytes=0)
        with TritonServer(options) as server:
            systems = {
                "ours": triton_caller(server.grpc_url),
                "step": triton_caller(server.grpc_url, FUSED_SUFFIX),
                "peer": peer_caller(peer),
            }
            for name in CALLS:
                reqs, warm = requests[name]
                for r in warm:  # other requests, every system
                    for call in systems.values():
                        call(name, r)
                times: dict[str, list[float]] = {s: [] for s in systems}
                ratios, hops, same, same_step = [], [], 0, 0
                for b, start in enumerate(range(0, len(reqs), block)):
                    chunk = reqs[start : start + block]
                    answers: dict[str, list] = {}
                    block_p50: dict[str, float] = {}
                    for system in in_turn(systems, b):
                        lat, answers[system] = timed(systems[system], name, chunk)
                        times[system] += lat
                        block_p50[system] = float(np.median(lat))
                    ratios.append(block_p50["ours"] / block_p50["peer"])
                    hops.append(block_p50["ours"] - block_p50["step"])
                    same += sum(a == b for a, b in zip(answers["ours"], answers["peer"], strict=True))
                    same_step += sum(a == b for a, b in zip(answers["ours"], answers["step"], strict=True))
                out[name] = {
                    **{system: float(np.median(lat)) for system, lat in times.items()},
                    "block_ratio": float(np.median(ratios)),
                    "hop": float(np.median(hops)),
                    "same": same,
                    "same_step": same_step,
                    "n": len(reqs),
                }
    finally:
        peer.stop()
    return out


def interleaved_table(results: dict, profile: str, n: int) -> str:
    rounds = len(next(iter(results.values()))["ratios"])
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; profile `{profile}`, {n} requests per call and run "
        f"at concurrency 1; ours as shipped (fused layout, query cache on), its fused step called directly "
        f"(without the one-step ensemble) and the peer with 1 worker all up, the requests sent to them in turn "
        f"in blocks of {BLOCK}, the order reversed every other block; {rounds} runs, the systems started "
        "again and new requests each (`make bench-peer INTERLEAVED=1`, benchmarks/peer.py). Medians over the "
        "runs, each run's value in brackets.",
        "",
        "| call | ours p50 | the step alone p50 | peer p50 | ours / peer (p50s) | ours / peer (median over blocks) "
        "| the ensemble's hop (median over blocks) | same top-k as the peer / the step |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def each(values: list[float], unit: str) -> str:
        return f"{np.median(values):.2f}{unit} ({', '.join(f'{v:.2f}' for v in values)})"

    for name, r in results.items():
        lines.append(
            f"| `{name}` | {r['ours']:.2f} ms | {r['step']:.2f} ms | {r['peer']:.2f} ms | {each(r['ratios'], 'x')} | "
            f"{each(r['block_ratios'], 'x')} | {each(r['hops'], ' ms')} | {r['same']}/{r['n']} / "
            f"{r['same_step']}/{r['n']} |"
        )
    return "\n".join(lines)


# fused models' (instances, ONNX Runtime threads, the encoder's threads where they differ, its threads when
# alone on the node: 0 never wider) tried
SIZES = ((2, 1, 0, 2), (2, 1, 0, 0), (2, 1, 2, 0), (2, 2, 0, 0), (1, 2, 0, 0), (4, 1, 0, 0))


def sizes(repo: Path, n: int) -> dict:
    """The fused layout at each of SIZES, query cache off (the encoder's cost shows), on the same requests."""
    pipeline = InProcessPipeline(repo)
    requests = plan(pipeline, n)
    del pipeline
    results = {}
    for instances, threads, encoder_threads, alone in SIZES:
        variant = fused_variant(
            repo, repo.parent / "bench_repo_sized", instances, threads, 0, encoder_threads or None, alone
        )
        result = _served(variant, "", requests)
        for name in CALLS:
            result[name].pop("answers")
        label = f"{instances} instances x {threads} thread{'s' if threads > 1 else ''}"
        note = f"encoder {encoder_threads}" if encoder_threads else f"encoder {alone} when alone" if alone else ""
        results[label + (f" ({note})" if note else "")] = result
    return results


def alone_rounds(repo: Path, n: int, rounds: int) -> list[dict]:
    """2 x 1 with the encoder widening when alone (as built) and never widening, alternated ``rounds`` times on
    the same requests, query cache off: per round and variant, each call's p50, req/s and p99 under load."""
    pipeline = InProcessPipeline(repo)
    requests = plan(pipeline, n)
    del pipeline
    out = []
    for r in range(rounds):
        for label, alone in (("never wider", 0), ("encoder 2 when alone", None)):
            variant = fused_variant(repo, repo.parent / "bench_repo_alone", cache_entries=0, alone_threads=alone)
            result = _served(variant, "", requests)
            row = {"round": r + 1, "variant": label}
            for name in CALLS:
                row[name] = {k: result[name][k] for k in ("p50", "rps", "p99_load")}
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def alone_table(rows: list[dict], profile: str, n: int) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; profile `{profile}`, {n} requests per call and pass, "
        "query cache off, 2 x 1 fused models; the two variants alternated (`make bench-peer ALONE_ROUNDS=4`, "
        "benchmarks/peer.py).",
        "",
        "| call | variant | p50 (c=1), each round | req/s (8 in flight) | p99 (8 in flight) |",
        "|---|---|---|---|---|",
    ]
    for name in CALLS:
        for label in ("never wider", "encoder 2 when alone"):
            mine = [row[name] for row in rows if row["variant"] == label]
            p50 = ", ".join(f"{m['p50']:.2f}" for m in mine)
            rps = ", ".join(f"{m['rps']:.0f}" for m in mine)
            p99 = ", ".join(f"{m['p99_load']:.0f}" for m in mine)
            lines.append(f"| `{name}` | {label} | {p50} ms | {rps} | {p99} ms |")
    lines.append("")
    for name in CALLS:
        wide, never = (
            {k: float(np.median([row[name][k] for row in rows if row["variant"] == label])) for k in ("p50", "rps")}
            for label in ("encoder 2 when alone", "never wider")
        )
        lines.append(
            f"- `{name}`: median p50 {wide['p50']:.2f} ms against {never['p50']:.2f} ms never wider; median req/s "
            f"{wide['rps'] / never['rps']:.2f}x"
        )
    return "\n".join(lines)


def sizes_table(results: dict, profile: str, n: int) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; profile `{profile}`, {n} requests per call; the fused "
        "layout's instances per model x ONNX Runtime threads per session, its query cache off "
        "(`make bench-peer FUSED_SIZES=1`, benchmarks/peer.py).",
        "",
        "| call | fused models | p50 (c=1) | p99 (c=1) | req/s (8 in flight) | p99 (8 in flight) |",
        "|---|---|---|---|---|---|",
    ]
    for name in CALLS:
        for size, result in results.items():
            r = result[name]
            cells = f"{r['p50']:.2f} ms | {r['p99']:.1f} ms | {r['rps']:.0f} | {r['p99_load']:.0f} ms"
            lines.append(f"| `{name}` | {size} | {cells} |")
    return "\n".join(lines)


def table(results: dict, profile: str, n: int, rounds: int = 1) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; profile `{profile}`, {n} requests per call, each system",
        f"alone; p50/p99 at concurrency 1, then req/s and p99 with {IN_FLIGHT} in flight; the median of {rounds} "
        "passes over every system, the order reversed each other pass (`make bench-peer"
        + (f" PEER_ROUNDS={rounds}" if rounds != 2 else "")
        + "`, benchmarks/peer.py).",
        "",
        "| call | system | p50 (c=1) | p99 (c=1) | req/s (8 in flight) | p99 (8 in flight) "
        "| top-k = in-process (c=1; 8 in flight) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CALLS:
        for system, result in results.items():
            r = result[name]
            lines.append(
                f"| `{name}` | {system} | {r['p50']:.2f} ms | {r['p99']:.1f} ms | {r['rps']:.0f} | "
                f"{r['p99_load']:.0f} ms | {r['parity']}/{r['n']}; {r['parity_load']}/{r['n']} |"
            )
    ours = results[FUSED_OURS]
    peers = [r for s, r in results.items() if s.startswith("FastAPI")]
    lines.append("")
    for name in CALLS:
        best_p50 = min(p[name]["p50"] for p in peers)
        best_rps = max(p[name]["rps"] for p in peers)
        lines.append(
            f"- `{name}`: ours (fused) / best peer p50 {ours[name]['p50'] / best_p50:.2f}x; req/s "
            f"{ours[name]['rps'] / best_rps:.2f}x of the best peer's"
        )
    return "\n".join(lines)


ECHO_CONFIG = """name: "echo"
backend: "python"
max_batch_size: 0
input { name: "X" data_type: TYPE_INT64 dims: -1 }
output { name: "Y" data_type: TYPE_INT64 dims: -1 }
instance_group { count: 1 kind: KIND_CPU }
"""
ECHO_MODEL = '''"""echo: its input as its output; the floor of a python-backend model (benchmarks/peer.py --floors)."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
            for r in requests
        ]
'''
FLOORS = {
    "echo": "Triton: a python-backend model that returns its input (gRPC, `tritonclient`)",
    "live": "Triton: `is_server_live` (gRPC, no model)",
    "ready": "FastAPI peer: `GET /ready` (a plain `def` endpoint: the same thread-pool hop as its calls)",
}


def floors(repo: Path, logs: Path, n: int = 2000, block: int = 100) -> dict[str, float]:
    """The fixed cost of each stack's request path, at concurrency 1: an echo model on the bundled tritonserver,
    its liveness call, and the peer's ``GET /ready``, all up, ``n`` calls each in blocks taken in turn (the
    order reversed every other block): ``{FLOORS key: p50 in ms}``."""
    import tritonclient.grpc as grpcclient

    echo_repo = logs / "echo_repo"
    (echo_repo / "echo" / "1").mkdir(parents=True, exist_ok=True)
    (echo_repo / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    (echo_repo / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)  # last: a server never sees half a model
    peer = Peer(repo, 1, logs / "peer_floors.log")
    try:
        with TritonServer(ServerOptions(model_repository=echo_repo, response_cache_bytes=0)) as server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            ids = np.arange(10, dtype=np.int64)
            conn = peer.connection()

            def echo(_name: str, _r: None) -> None:
                client.infer("echo", [_tensor("X", ids, "INT64")]).as_numpy("Y")

            calls: dict[str, Callable[[str, None], object]] = {  # timed() callers; the request is nothing
                "echo": echo,
                "live": lambda _name, _r: client.is_server_live(),
                "ready": lambda _name, _r: conn.request("GET", "/ready"),
            }
            times: dict[str, list[float]] = {k: [] for k in calls}
            nothing = [None] * block
            for k, call in calls.items():  # warm-up
                timed(call, k, nothing)
            for b in range(n // block):
                for k in in_turn(calls, b):
                    times[k] += timed(calls[k], k, nothing)[0]
    finally:
        peer.stop()
    return {k: float(np.median(v)) for k, v in times.items()}


def floors_table(results: dict[str, float], n: int) -> str:
    lines = [
        f"Measured {date.today().isoformat()} on {machine()}; {n} calls each at concurrency 1, all three up, in "
        "blocks of 100 taken in turn (`make bench-peer FLOORS=1`, benchmarks/peer.py).",
        "",
        "| path | p50 |",
        "|---|---|",
    ]
    lines += [f"| {FLOORS[k]} | {v:.3f} ms |" for k, v in results.items()]
    return "\n".join(lines)


def emit(text: str, out: Path | None, section: str) -> None:
    """Print a result table and, with ``out``, write it between its section's markers there."""
    print(text)
    if out is not None:
        write_section(out, section, text + "\n")


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default", choices=["default", "small"])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="passes over every system, medians reported")
    parser.add_argument("--sizes", action="store_true", help="instead: the fused models' instances x threads")
    parser.add_argument(
        "--alone-rounds", type=int, default=0, help="instead: the encoder widening when alone or never, N rounds"
    )
    parser.add_argument(
        "--interleaved", action="store_true", help="instead: ours and the peer at concurrency 1, blocks alternated"
    )
    parser.add_argument(
        "--floors", action="store_true", help="instead: each stack's fixed cost (an echo model, the peer's /ready)"
    )
    args = parser.parse_args(argv)
    repo = Path("build") / args.profile / "bench_repo"
    ensemble_repo = Path("build") / args.profile / "bench_repo_ensemble"
    build("cpu", args.profile, out=repo, progress=False)
    logs = Path("build") / "logs" / "peer"
    if args.floors:
        emit(floors_table(floors(repo, logs), 2000), args.out, "peer-floors")
    elif args.alone_rounds:
        rows = alone_rounds(repo, args.requests, args.alone_rounds)
        emit(alone_table(rows, args.profile, args.requests), args.out, f"peer-alone-{args.profile}")
    elif args.interleaved:
        results = interleaved(repo, args.requests, logs)
        emit(interleaved_table(results, args.profile, args.requests), args.out, f"peer-interleaved-{args.profile}")
    elif args.sizes:
        emit(
            sizes_table(sizes(repo, args.requests), args.profile, args.requests), args.out, f"peer-sizes-{args.profile}"
        )
    else:
        build("cpu", args.profile, out=ensemble_repo, progress=False, layout=ENSEMBLE)  # the same steps, cached
        results = run(repo, ensemble_repo, args.requests, logs, args.rounds)
        emit(table(results, args.profile, args.requests, args.rounds), args.out, f"peer-{args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

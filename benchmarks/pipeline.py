"""Benchmark: the search ensemble over gRPC vs the same pipeline in-process, same requests, one run.

``python -m benchmarks.pipeline --repo build/default/bench_repo --out docs/benchmarks.md``

Every request: 1 user, 1 query from the shop's query pool (popular ones more often), 100 candidates,
k = 10. Measured: p50/p99 latency at concurrency 1, and throughput at saturation (served: many requests
in flight with the async gRPC client; in-process: the best of 1, 2 and 4 worker threads). The whole
measurement repeats ``--runs`` times against one server; the table gives the median run and the range.
The client runs on the same 2-core machine as the server and takes CPU from it. The server runs
without its response cache: the in-process path has none, and the comparison is of the same work
(the cache is measured on its own in ``benchmarks/tuning.py``). Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from builders.build import build
from builders.repository.pipeline import InProcessPipeline
from builders.repository.triton_config import instance_count, instance_groups
from runtime import cli_logging
from runtime import contract as c
from runtime.counters import FLUSH_S
from runtime.fused import (
    ALONE_PARAMETER,
    CACHE_PARAMETER,
    ENCODER_THREADS_PARAMETER,
    FUSED_SUFFIX,
    THREADS_PARAMETER,
    fused_name,
)
from runtime.lexicon import category_phrase
from runtime.repository import CONFIG, layout, read_config
from server.launcher import ServerOptions, TritonServer
from server.publish import write_config
from server.raw_requests import call, request_inputs


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, onnxruntime "
        f"{onnxruntime.__version__}, tritonserver 2.51.0 (nvidia-pytriton 0.7.0), no GPU"
    )


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in ``path`` (added if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    if start not in doc:
        doc += f"\n{start}\n{end}\n"
    head, rest = doc.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}{end}{tail}")


def small_build_main(
    argv: list[str] | None, doc: str | None, section: str, requests: int, measure: Callable[[Path, int], list[str]]
) -> int:
    """The CLI of a benchmark on the small build: ``[--requests N] [--repo R] [--out DOC]``; builds the
    repository (cached), prints ``measure(repo, requests)`` and writes it into ``DOC``'s ``section``."""

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--repo", type=Path, default=Path("build/small/bench_repo"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    build("cpu", "small", out=args.repo, progress=False)
    text = "\n".join(measure(args.repo, args.requests))
    print(text)
    if args.out is not None:
        write_section(args.out, section, text + "\n")
    return 0


def make_requests(pipeline, n: int, candidates: int, seed: int = 0) -> list[tuple[int, str, np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    tables = pipeline.search_store.tables
    lex = pipeline.search_store.lexicon
    phrases = [category_phrase(cat) for cat in lex.categories]
    queries = [f"{b.lower()} {cat}" for b in lex.brands[:8] for cat in phrases] + phrases
    weights = 1.0 / np.arange(1, len(queries) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(n):
        user = int(rng.choice(tables.user_ids_sorted))
        query = queries[int(rng.choice(len(queries), p=weights))]
        items = rng.choice(tables.item_ids_sorted, size=candidates, replace=False)
        out.append((user, query, items, 10))
    return out


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples_ms)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def sequential(fn, requests) -> list[float]:
    times = []
    for r in requests:
        t0 = time.perf_counter()
        fn(r)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def served_saturated(url: str, requests, in_flight: int) -> float:
    """Requests per second with ``in_flight`` requests outstanding (async gRPC client)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    prepared = [request_inputs(u, items, k, q.encode()) for u, q, items, k in requests]
    sem = threading.Semaphore(in_flight)
    errors = []
    done = threading.Event()
    remaining = [len(prepared)]
    lock = threading.Lock()

    def callback(result, error):
        if error is not None:
            errors.append(error)
        sem.release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    t0 = time.perf_counter()
    for inputs in prepared:
        sem.acquire()
        client.async_infer(c.SEARCH_ENSEMBLE, inputs, callback)
    done.wait()
    elapsed = time.perf_counter() - t0
    client.close()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return len(prepared) / elapsed


def fused_variant(
    repo: Path,
    out: Path,
    instances: int | None = None,
    threads: int | None = None,
    cache_entries: int | None = None,
    encoder_threads: int | None = None,
    alone_threads: int | None = None,
    in_turn: bool = False,
    warm_up: bool = True,
) -> Path:
    """A copy of a fused repository (files hard-linked) whose fused models have other sizes: instances per
    model, ONNX Runtime threads per session, query embeddings kept (0: none), the encoder's threads and its
    threads when alone on the node (0: never wider). ``in_turn``: the instances in one group without
    priorities, so the rate limiter gives each request to the instance that ran least (they take turns).
    ``warm_up=False``: without the warm-up request (``model_warmup``). Only the configs differ."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(repo, out, copy_function=os.link)
    for model in out.glob(f"*{FUSED_SUFFIX}"):
        cfg = read_config(model)
        if instances is not None or in_turn:
            count = instances or instance_count(cfg)
            del cfg.instance_group[:]
            for group in instance_groups(count, preferred=not in_turn):
                json_format.ParseDict(group, cfg.instance_group.add())
        if threads is not None:
            cfg.parameters[THREADS_PARAMETER].string_value = str(threads)
        if cache_entries is not None and CACHE_PARAMETER in cfg.parameters:
            cfg.parameters[CACHE_PARAMETER].string_value = str(cache_entries)
        if encoder_threads is not None and CACHE_PARAMETER in cfg.parameters:  # the models with an encoder
            cfg.parameters[ENCODER_THREADS_PARAMETER].string_value = str(encoder_threads)
        if alone_threads is not None and CACHE_PARAMETER in cfg.parameters:
            if alone_threads:
                cfg.parameters[ALONE_PARAMETER].string_value = str(alone_threads)
            elif ALONE_PARAMETER in cfg.parameters:
                del cfg.parameters[ALONE_PARAMETER]
        if not warm_up:
            cfg.ClearField("model_warmup")
        (model / CONFIG).unlink()  # a new file: writing through the hard link would change the original
        write_config(model, cfg)
    return out


def without_query_cache(repo: Path, out: Path) -> Path:
    """A copy of a fused repository whose fused models keep no query embedding; ``repo`` itself when it has
    no fused model (the ensemble layout: the server's response cache is a flag)."""
    return fused_variant(repo, out, cache_entries=0) if layout(repo).parts else repo


def model_counts(metrics_url: str, family: str, model: str, label: str) -> dict[str, float]:
    """A counter family's values for ``model`` by ``label``'s value, summed over the model's instances (metrics
    port), e.g. ``model_counts(url, "shoprank_encoder_runs_total", "search_fused", "session")``."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(family + "{") and f'model="{model}"' in line:
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            counts[value] = counts.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def query_cache_counts(metrics_url: str, model: str) -> tuple[float, float]:
    """``(hits, misses)`` of a fused model's query-embedding cache, over its instances (metrics port)."""
    counts = model_counts(metrics_url, "shoprank_query_cache_total", model, "outcome")
    return counts.get("hit", 0.0), counts.get("miss", 0.0)


def _cache_counts(client, server: TritonServer) -> tuple[float, float]:
    """The search's query-embedding cache: the fused model's, or the text encoder's response cache."""
    if layout(Path(server.options.model_repository)).parts:
        time.sleep(2 * FLUSH_S)  # every lookup so far counted: the fused models send counts in the background
        return query_cache_counts(server.metrics_url, fused_name(c.SEARCH_ENSEMBLE))
    stats = client.get_inference_statistics(c.TEXT_ENCODER).model_stats[0].inference_stats
    return stats.cache_hit.count, stats.cache_miss.count


def serve_and_measure(
    repo: Path, requests, in_flight: int, cache_bytes: int = 0, load_requests=None, warmup: int = 20
) -> dict:
    """A fresh server on ``repo``: p50/p99 (ms) of ``requests`` one at a time, then req/s of
    ``load_requests`` (default: the same) with ``in_flight`` outstanding, and the encoder's response-cache
    hit rate in each phase (0 without a cache)."""
    import tritonclient.grpc as grpcclient

    with TritonServer(ServerOptions(model_repository=repo, ready_timeout_s=600, response_cache_bytes=cache_bytes)) as s:
        client = grpcclient.InferenceServerClient(s.grpc_url)
        served = lambda r: call(client, r[0], r[2], r[3], r[1].encode())  # noqa: E731
        sequential(served, requests[:warmup])
        h0, m0 = _cache_counts(client, s)
        p50, p99 = percentiles(sequential(served, requests))
        h1, m1 = _cache_counts(client, s)
        rps = served_saturated(s.grpc_url, load_requests or requests, in_flight)
        h2, m2 = _cache_counts(client, s)
        client.close()
    rate = lambda h, m: h / (h + m) if h + m else 0.0  # noqa: E731
    return {
        "p50": p50,
        "p99": p99,
        "rps": rps,
        "hit_rate_seq": rate(h1 - h0, m1 - m0),
        "hit_rate_load": rate(h2 - h1, m2 - m1),
    }


def inprocess_saturated(pipeline, requests, workers: int) -> float:
    def one(r):
        pipeline.search(r[0], r[1], r[2], r[3])

    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        list(pool.map(one, requests))
        return len(requests) / (time.perf_counter() - t0)


def model_stats(url: str, requests, skip_warmup: int = 30) -> list[str]:
    """Triton's per-model queue and compute time (mean, microseconds) over sequential requests."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    for r in requests[:skip_warmup]:
        call(client, r[0], r[2], r[3], r[1].encode())
    before = {m.name: m.inference_stats for m in client.get_inference_statistics().model_stats}
    for r in requests:
        call(client, r[0], r[2], r[3], r[1].encode())
    lines = [
        "| model | requests | queue | compute input | compute infer | compute output |",
        "|---|---|---|---|---|---|",
    ]
    for m in client.get_inference_statistics().model_stats:
        now, old = m.inference_stats, before[m.name]
        n = now.success.count - old.success.count
        if n:

            def us(field, now=now, old=old, n=n):
                return (getattr(now, field).ns - getattr(old, field).ns) / n / 1e3

            lines.append(
                f"| {m.name} | {n} | {us('queue'):.0f} us | {us('compute_input'):.0f} us | "
                f"{us('compute_infer'):.0f} us | {us('compute_output'):.0f} us |"
            )
    client.close()
    return lines


def run(repo: Path, n: int, candidates: int, in_flight: int, runs: int = 3, with_model_stats: bool = False) -> dict:
    import tritonclient.grpc as grpcclient

    pipeline = InProcessPipeline(repo)
    requests = make_requests(pipeline, n, candidates)
    results: dict = {"n": n, "candidates": candidates, "in_flight": in_flight, "runs": runs}
    measured: list[dict] = []
    # the same work on both sides: no query cache served (the in-process pipeline has none)
    served_repo = without_query_cache(repo, repo.parent / f"{repo.name}_no_query_cache")
    options = ServerOptions(model_repository=served_repo, ready_timeout_s=600, response_cache_bytes=0)
    with TritonServer(options) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        served = lambda r: call(client, r[0], r[2], r[3], r[1].encode())  # noqa: E731
        local = lambda r: pipeline.search(r[0], r[1], r[2], r[3])  # noqa: E731
        for r in requests[:20]:  # warm-up both paths, and check they agree
            np.testing.assert_array_equal(served(r)[0], local(r)[0])
        for _ in range(runs):
            one: dict = {}
            # Alternate blocks so drift on the machine hits both paths alike.
            s_times, l_times = [], []
            for start in range(0, n, 50):
                block = requests[start : start + 50]
                s_times += sequential(served, block)
                l_times += sequential(local, block)
            one["served_p50"], one["served_p99"] = percentiles(s_times)
            one["local_p50"], one["local_p99"] = percentiles(l_times)
            one["served_rps"] = served_saturated(server.grpc_url, requests, in_flight)
            one["local_rps"] = max(inprocess_saturated(pipeline, requests, w) for w in (1, 2, 4))
            measured.append(one)
        client.close()
        if with_model_stats:
            results["model_stats"] = model_stats(server.grpc_url, requests)
    results["runs_data"] = measured
    return results


def table(r: dict) -> str:
    """Median over runs of each number and of each ratio (ratios taken within a run), with the range."""
    runs = r["runs_data"]

    def med(values: list[float], fmt: str) -> str:
        lo, mid, hi = min(values), statistics.median(values), max(values)
        return f"{mid:{fmt}} ({lo:{fmt}}–{hi:{fmt}})" if len(values) > 1 else f"{mid:{fmt}}"

    def row(label: str, s_key: str, l_key: str, unit: str, pct: bool = False) -> str:
        ratios = [x[s_key] / x[l_key] for x in runs]
        ratio = med([v * 100 for v in ratios], ".0f") + " %" if pct else med(ratios, ".2f") + " x"
        fmt = ".0f" if unit == "req/s" else ".2f"
        return (
            f"| {label} | {med([x[s_key] for x in runs], fmt)} {unit} | {med([x[l_key] for x in runs], fmt)} "
            f"{unit} | {ratio} |"
        )

    return "\n".join(
        [
            "| metric | served (gRPC, Triton) | in-process (ONNX Runtime) | served / in-process |",
            "|---|---|---|---|",
            row("p50 latency, concurrency 1", "served_p50", "local_p50", "ms"),
            row("p99 latency, concurrency 1", "served_p99", "local_p99", "ms"),
            row("throughput at saturation", "served_rps", "local_rps", "req/s", pct=True),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="repeat the whole measurement; report the median")
    parser.add_argument("--out", type=Path, default=None, help="markdown file to write the results into")
    parser.add_argument("--model-stats", action="store_true", help="also print Triton's per-model statistics")
    args = parser.parse_args(argv)
    r = run(args.repo, args.requests, args.candidates, args.in_flight, args.runs, args.model_stats)
    text = (
        f"Machine: {machine()}\n\nDate: {date.today().isoformat()}; repository: `{args.repo}`; "
        f"{r['n']} search requests, 1 query + {r['candidates']} candidates, k=10; saturation: "
        f"{r['in_flight']} requests in flight (served), best of 1, 2 or 4 worker threads (in-process); "
        f"median of {r['runs']} runs (min–max in brackets).\n\n" + table(r) + "\n"
    )
    if r.get("model_stats"):
        print("Triton's statistics per model, sequential requests:\n" + "\n".join(r["model_stats"]) + "\n")
    print(text)
    if args.out:
        write_section(args.out, "bench", text)
        print(f"written into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

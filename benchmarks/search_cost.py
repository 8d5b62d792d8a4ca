"""What the query statistics cost a served search: two servers, before and after, the same requests, one run
(``make bench-search-cost``; results in docs/quality.md).

``before`` is a repository built by an earlier commit's code (a git worktree of it, ``--before-code``),
served by that code's own launcher, so its Python models run its own ``runtime``; ``after`` is this tree's
repository. Both run on this machine at once, on the same bundled tritonserver and the same settings
(the encoder's response cache on, as served). Each request goes to both servers, in alternating order, one
at a time: ``search`` with 100 and 1,000 candidates, and ``search_catalog``. Queries are drawn from the
shop's query pool, the frequent ones more often (as the logs have them), so the encoder's cache hits as
in production. Latency is measured by the client (raw ``tritonclient``, the same for both), p50 and p99.
Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, percentiles
from builders.data.dataset import ShopData
from runtime import cli_logging
from server.launcher import ServerOptions, TritonServer, free_ports


def start_before(code: Path, repo: Path, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The earlier commit's launcher serving its repository on free ports (with ``env`` added to this
    process's environment); returns the process and gRPC url."""

    grpc, http, metrics = free_ports(3)
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(code)}
    cmd = [sys.executable, "-m", "server.launcher", "--model-repository", str(repo)]
    cmd += ["--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics)]
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, f"127.0.0.1:{grpc}"


def wait_ready(url: str, timeout_s: float = 300) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.is_server_ready():
                return
        except Exception:
            pass
        time.sleep(1)
    raise TimeoutError(f"no server ready at {url} after {timeout_s:.0f} s")


def request(model: str, user: int, query: str, candidates: np.ndarray | None, k: int = 10) -> list:
    import tritonclient.grpc as grpcclient

    def tensor(name: str, value: np.ndarray, dtype: str) -> grpcclient.InferInput:
        t = grpcclient.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        return t

    inputs = [tensor("USER_ID", np.array([user], np.int64), "INT64")]
    inputs.append(tensor("QUERY", np.array([query.encode()], object), "BYTES"))
    if candidates is not None:
        inputs.append(tensor("ITEM_IDS", candidates.astype(np.int64), "INT64"))
    else:
        inputs.append(tensor("EXCLUDE_IDS", np.zeros(0, np.int64), "INT64"))
    inputs.append(tensor("TOP_K", np.array([k], np.int32), "INT32"))
    return inputs


def alternate(clients: dict, model: str, make: Callable[[int], list], n: int, warmup: int = 20) -> dict:
    """p50 and p99 ms of ``n`` requests ``make(i)`` to ``model`` on every client, in alternating order, one
    at a time, after ``warmup`` requests that are not counted."""
    times: dict[str, list[float]] = {name: [] for name in clients}
    for i in range(n + warmup):
        inputs = make(i)
        order = list(clients) if i % 2 == 0 else list(clients)[::-1]
        for name in order:
            start = time.perf_counter()
            clients[name].infer(model, inputs)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: percentiles(t) for name, t in times.items()}


def measure(urls: dict[str, str], shop_dir: Path, n: int, sizes: tuple[int, ...], seed: int = 0) -> dict:
    import tritonclient.grpc as grpcclient

    shop = ShopData.load(shop_dir)
    rng = np.random.default_rng(seed)
    counts = np.bincount(shop.session_query[shop.session_query >= 0], minlength=len(shop.queries)).astype(float)
    clients = {name: grpcclient.InferenceServerClient(url) for name, url in urls.items()}
    users = shop.user_ids
    out: dict = {}
    for label, size in [*((f"search, {s} candidates", s) for s in sizes), ("search_catalog", 0)]:
        model = "search" if size else "search_catalog"

        def make(_: int, size: int = size, model: str = model) -> list:
            q = shop.queries[rng.choice(len(counts), p=counts / counts.sum())]
            cands = rng.choice(shop.item_ids, size, replace=False) if size else None
            return request(model, int(users[rng.integers(len(users))]), q, cands)

        out[label] = alternate(clients, model, make, n)
    return out


def before_after_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every before/after cost benchmark takes: the earlier code, its repository, this one's."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--before-code", type=Path, required=True, help="a worktree of the earlier commit")
    p.add_argument("--before-repo", type=Path, required=True, help="the repository that code built")
    p.add_argument("--after-repo", type=Path, required=True)
    p.add_argument("--requests", type=int, default=300)
    return p


def print_table(result: dict, requests: int, setting: str = "") -> None:
    """The before/after p50 and p99 of ``result`` (``alternate``'s, per request label) as a Markdown table."""
    print(f"Machine: {machine()}; {requests} requests per row, each sent to both servers in turn{setting}.")
    print("| request | before p50 / p99 ms | after p50 / p99 ms | p50 difference |")
    print("|---|---|---|---|")
    for label, r in result.items():
        (b50, b99), (a50, a99) = r["before"], r["after"]
        print(f"| {label} | {b50:.2f} / {b99:.2f} | {a50:.2f} / {a99:.2f} | {a50 - b50:+.2f} ms |")


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()

    p = before_after_parser("python -m benchmarks.search_cost", __doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the shop's data folder (build/<name>/data)")
    p.add_argument("--sizes", default="100,1000")
    args = p.parse_args(argv)
    log = Path("build") / "search_cost_before.log"
    log.parent.mkdir(exist_ok=True)
    proc, before_url = start_before(args.before_code.resolve(), args.before_repo.resolve(), log)
    after = TritonServer(ServerOptions(model_repository=args.after_repo, ready_timeout_s=300))
    try:
        after.start()
        wait_ready(before_url)
        result = measure(
            {"before": before_url, "after": after.grpc_url},
            args.data,
            args.requests,
            tuple(int(s) for s in args.sizes.split(",")),
        )
    finally:
        after.stop()
        proc.terminate()
        proc.wait(30)
    print_table(result, args.requests)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

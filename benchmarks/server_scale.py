"""The whole server at catalogue sizes (``python -m benchmarks.server_scale``): per size, one run on one
machine, the same requests: the tritonserver's memory (PSS of the server and its python-backend stubs),
the index build, retrieval p50/p99, served ``search_catalog`` / ``recommend_catalog`` p50/p99, recall@N.

A catalogue of ``n`` items is generated from the built small demo shop (``make build`` first):

* items: the demo's 2,000 real items, then generated ones; each generated item copies the features of a
  random real one (category, brand, attributes, price, clicks) under a new id, with its own stock (in
  stock with the demo's in-stock share);
* embeddings: the real item's title embedding plus Gaussian noise (norm 0.33), renormalised, as in
  ``benchmarks.index_scale``: no titles are encoded (2 cores cannot encode millions in a benchmark);
  they are written in the served dtype (float16) and the index is built from them;
* the ranker: the demo's, with its item-id embedding table grown to ``n + 1`` rows, each generated item
  reading the row of the real item it copies (a shop's own ranker has one row per item: that table
  grows with the catalogue, and each ranker instance holds its own copy);
* users, the lexicon and the encoder: the demo's, unchanged.

The repository is assembled and validated by the build's own code (``builders.steps.repository``) and
served by the bundled tritonserver with the committed configs. Requests: the demo's real queries and
users, sent one at a time through the SDK after a warm-up (so the latency is the server's, not a queue).
Memory: the sum of PSS over the server's process group (shared pages counted once in total), after the
requests, so the pages they touched are in it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from benchmarks.index_scale import NOISE, percentiles, search_times
from builders.build import Layout, artifacts
from builders.learning import retrieval as rt
from builders.repository.assemble import MANIFEST_FILE
from builders.repository.model_specs import specs
from builders.steps import repository
from runtime import cli_logging
from runtime import contract as c
from runtime.catalog import Catalog, build_catalog
from runtime.covisit import CoVisits
from runtime.features import USER_PROFILE_FILE
from runtime.lexicon import LEXICON_FILE
from runtime.online_store import SNAPSHOT_FILE
from runtime.query_stats import QueryStats
from runtime.retrieval import SETTINGS_FILE, ItemIndex, Purchases, RetrievalSettings
from runtime.scoring import load_item_embeddings
from runtime.tables import STORE_DIR, FeatureTables
from runtime.text import TOKENIZER_FILE
from server.launcher import ServerOptions, TritonServer
from shoprank_client import RankingClient

ID_BASE = 10**9  # generated items' ids start here (the demo's ids are below)
ITEM_ID_TABLE = "embeddings.1.weight"  # the ranker's item-id embedding (categorical column 1)
ITEM_TABLES = [k for k in FeatureTables.__annotations__ if k.startswith("item_") and not k.endswith("_sorted")]


def generate_catalogue(n: int, small: Path, work: Path, seed: int = 0) -> dict:
    """``work/features`` and ``work/embeddings.npy`` (float16) of ``n`` items grown from the small shop."""
    src = FeatureTables.load(small / "features" / STORE_DIR)
    real = src.n_items
    if n < real:
        raise ValueError(f"--sizes: {n} is fewer than the demo's {real} items")
    rng = np.random.default_rng(seed)
    base_rows = np.concatenate([np.arange(real), rng.integers(0, real, n - real)])  # the real item each copies
    ids = np.empty(n, np.int64)
    ids[src.item_rows_sorted] = src.item_ids_sorted  # row r of the demo keeps its id
    ids[real:] = ID_BASE + np.arange(n - real)
    arrays = dict(src.arrays)
    for name in ITEM_TABLES:  # [I+1, ...]: the last row is the unknown item's default
        table = getattr(src, name)
        arrays[name] = np.concatenate([table[base_rows], table[-1:]])
    # A generated item is another product: its own stock, drawn with the demo's in-stock share (copying
    # the stock would sell out all ~5,000 copies of a sold-out item at 10M, one whole neighbourhood).
    share = float(np.mean(src.item_in_stock[:-1] > 0))
    arrays["item_in_stock"][real:-1] = (rng.random(n - real) < share).astype(np.float32)
    order = np.argsort(ids, kind="stable")
    arrays["item_ids_sorted"], arrays["item_rows_sorted"] = ids[order], order.astype(np.int64)
    feats = work / "features"
    FeatureTables(arrays).save(feats / STORE_DIR)
    for f in (LEXICON_FILE, USER_PROFILE_FILE, TOKENIZER_FILE):
        shutil.copyfile(small / "features" / f, feats / f)
    # the demo's query statistics and co-visitation: they name only its real items' rows
    for f in (*QueryStats.files(), *CoVisits.files()):
        shutil.copyfile(small / "features" / STORE_DIR / f, feats / STORE_DIR / f)
    stock = np.where(arrays["item_in_stock"][:-1] > 0, 5, 0)
    price = np.exp(arrays["item_log_price"][:-1]).round(2)
    grow_catalog(small / "features", base_rows, price, stock, feats)
    np.savez(feats / SNAPSHOT_FILE, item_id=ids, price=price, stock=stock)
    np.save(work / "base_rows.npy", base_rows)

    emb_src = np.load(small / "embeddings" / "items.npy", mmap_mode="r")
    dim = emb_src.shape[1]
    emb = open_memmap(work / "embeddings.npy", mode="w+", dtype=np.float16, shape=(n + 1, dim))
    for a in range(0, n, rt.CHUNK):
        b = min(a + rt.CHUNK, n)
        x = np.asarray(emb_src[base_rows[a:b]], np.float32)
        noisy = base_rows[a:b] != np.arange(a, b)  # the real items keep their own embedding
        x[noisy] += (NOISE / np.sqrt(dim)) * rng.normal(size=(int(noisy.sum()), dim)).astype(np.float32)
        emb[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    emb[n] = 0
    emb.flush()
    return {"items": n, "real_items": real, "users": src.n_users}


def grow_catalog(small_features: Path, base_rows: np.ndarray, price: np.ndarray, stock: np.ndarray, out: Path) -> None:
    """The catalogue tables (``runtime/catalog.py``) of the generated items: each copies the filterable fields
    of the real item it copies (category, brand, attributes, listing date), with its own price and stock,
    and is a variant group of its own."""
    src = Catalog.load(small_features, STORE_DIR)
    attrs = np.asarray(src.attrs)[base_rows]
    vocab = dataclasses.replace(src.vocabulary, n_groups=0)
    build_catalog(
        np.asarray(src.category)[base_rows],
        np.asarray(src.brand)[base_rows],
        [row[row >= 0].tolist() for row in attrs],
        price,
        stock,
        np.asarray(src.created)[base_rows],
        np.full(len(base_rows), -1),
        vocab,
        None,
    ).save(out, STORE_DIR)


def grow_ranker(small_repo: Path, base_rows: np.ndarray, out: Path) -> dict:
    """The demo ranker with an item-id embedding row per generated item (that of the real item it copies); a
    ranker without that table (LightGBM's) as it is."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(small_repo / c.RANKER / "1" / "model.onnx"))
    real = int(base_rows.max()) + 1
    for init in model.graph.initializer:
        if init.name == ITEM_ID_TABLE:
            table = numpy_helper.to_array(init)
            if table.shape[0] != real + 1:
                raise ValueError(f"{ITEM_ID_TABLE} has {table.shape[0]} rows, expected {real + 1}")
            grown = np.concatenate([table[:1], table[base_rows + 1]])  # row 0: the unknown item
            init.CopyFrom(numpy_helper.from_array(grown, init.name))
            onnx.save(model, str(out))
            return {"ranker_item_table_mb": round(grown.nbytes / 2**20, 1)}
    # a gradient-boosted ranker (the small build's auto may keep it) has no table to grow: the generated rows
    # are item ids its trees never split on, as a new item's are
    shutil.copyfile(small_repo / c.RANKER / "1" / "model.onnx", out)
    return {"ranker_item_table_mb": 0.0}


def build_repository(n: int, small: Path, small_repo: Path, work: Path, queries: np.ndarray, candidates: int) -> dict:
    """Generate the catalogue, build its index (timed), assemble and validate a repository in ``work/repo``."""

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    info = generate_catalogue(n, small, work)
    info["generate_s"] = round(time.perf_counter() - start, 1)
    emb = np.load(work / "embeddings.npy", mmap_mode="r")
    samples = {"queries": rt.sample_rows(queries, rt.SAMPLE_QUERIES, 1)}
    users = len(np.load(work / "features" / USER_PROFILE_FILE, mmap_mode="r"))
    nobody = Purchases(np.zeros(users, np.int64), np.zeros(0, np.int64))
    retrieval = work / "retrieval"
    report = rt.write(emb, samples, nobody, retrieval, candidates=candidates, embedding_dtype="float16")
    (work / "embeddings.npy").unlink()  # retrieval/ has the served copy: one less table on disk
    at = Layout(work=work, encoder=small / "encoder")  # the encoder folder is not read: its ONNX comes from small_repo
    info.update(grow_ranker(small_repo, np.load(work / "base_rows.npy"), work / "ranker.onnx"))
    files = artifacts(at, small_repo / c.TEXT_ENCODER / "1" / "model.onnx", work / "ranker.onnx")
    manifest = json.loads((small_repo / c.SEARCH_FEATURES / "1" / MANIFEST_FILE).read_text())
    manifest.update(items=n, shop=f"{manifest['shop']}-generated-{n}")
    repository(work / "repo", files, specs(), manifest)
    shutil.rmtree(work / "features")  # the repository has its own copies now
    for f in ("item_embeddings.npy", "items.faiss"):
        (retrieval / f).unlink()
    return {**info, **report}


def pss_mb(pgid: int) -> float:
    """Sum of PSS over the processes of a process group (tritonserver and its python-backend stubs)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return round(total / 1024, 1)


def serve_and_measure(repo: Path, work: Path, queries: list[str], users: list[int], requests: int) -> dict:

    options = ServerOptions(model_repository=repo, log_file=work / "tritonserver.log", ready_timeout_s=600)
    started = time.perf_counter()
    with TritonServer(options) as server, RankingClient(server.grpc_url, timeout_s=30) as client:
        ready_s = time.perf_counter() - started
        idle = pss_mb(server.proc.pid)
        out: dict = {"ready_s": round(ready_s, 1), "pss_idle_mb": idle}
        for kind in ("search_catalog", "recommend_catalog"):
            times = []
            for i in range(requests + 30):
                user = users[i % len(users)]
                start = time.perf_counter()
                if kind == "search_catalog":
                    client.search_catalog(user, queries[i % len(queries)], k=10)
                else:
                    client.recommend_catalog(user, k=10)
                if i >= 30:  # the first 30 warm the server up
                    times.append((time.perf_counter() - start) * 1e3)
            out[f"{kind}_p50_ms"], out[f"{kind}_p99_ms"] = percentiles(times)
        out["pss_mb"] = pss_mb(server.proc.pid)
    return out


def retrieval_latency(repo: Path, query_emb: np.ndarray, candidates: int) -> tuple[float, float]:
    """``ItemIndex.search`` alone, one thread, as a served instance runs it."""

    folder = repo / c.RETRIEVE_SEARCH / "1"
    settings = RetrievalSettings.from_json((folder / SETTINGS_FILE).read_text())
    index = ItemIndex.load(folder, settings, load_item_embeddings(folder))
    rt.faiss_module(1)
    return percentiles(search_times(lambda q: index.search(q, candidates), query_emb, min(500, len(query_emb))))


def repo_mb(repo: Path) -> float:
    """Disk size of a repository, each hard-linked file once."""
    seen, total = set(), 0
    for p in repo.rglob("*"):
        if p.is_file():
            st = p.stat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return round(total / 2**20, 1)


def measure(n: int, args, queries: list[str], query_emb: np.ndarray, users: list[int]) -> dict:
    work = args.work / f"n{n}"
    built = build_repository(n, args.small, args.small_repo, work, query_emb, args.candidates)
    repo = work / "repo"
    p50, p99 = retrieval_latency(repo, query_emb, args.candidates)
    served = serve_and_measure(repo, work, queries, users, args.requests)
    row = {
        "items": n,
        "index": built["kind"] + (f" ({built['nlist']} lists)" if built.get("nlist") else ""),
        "nprobe": built["nprobe"],
        "generate_s": built["generate_s"],
        "index_build_s": built["build_seconds"],
        "recall": built.get("tried", [{}])[-1].get(f"recall@{args.candidates}_queries", 1.0),
        "retrieval_p50_ms": p50,
        "retrieval_p99_ms": p99,
        **served,
        "repository_mb": repo_mb(repo),
    }
    print(json.dumps(row), flush=True)
    if not args.keep:
        shutil.rmtree(work)
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| items | index | nprobe | index build s | recall@N vs exact | retrieval p50 / p99 ms | "
        "search_catalog p50 / p99 ms | recommend_catalog p50 / p99 ms | server PSS MB (idle / after) | "
        "repository MB |"
    )
    lines = [head, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['items']:,} | {r['index']} | {r['nprobe']} | {r['index_build_s']} | {r['recall']} | "
            f"{r['retrieval_p50_ms']} / {r['retrieval_p99_ms']} | "
            f"{r['search_catalog_p50_ms']} / {r['search_catalog_p99_ms']} | "
            f"{r['recommend_catalog_p50_ms']} / {r['recommend_catalog_p99_ms']} | "
            f"{r['pss_idle_mb']:,} / {r['pss_mb']:,} | {r['repository_mb']:,} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [r["items"] for r in rows]
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (
        ("search_catalog", "search_catalog"),
        ("recommend_catalog", "recommend_catalog"),
        ("retrieval", "retrieval alone"),
    ):
        lat.plot(items, [r[f"{key}_p99_ms"] for r in rows], marker="o", label=f"{label} p99")
        lat.plot(items, [r[f"{key}_p50_ms"] for r in rows], marker=".", linestyle="--", label=f"{label} p50")
    lat.set(xscale="log", xlabel="catalogue items", ylabel="ms", title="latency (sequential requests)")
    lat.legend(fontsize=7)
    mem.plot(items, [r["pss_mb"] / 1024 for r in rows], marker="o", label="server PSS after requests")
    mem.plot(items, [r["repository_mb"] / 1024 for r in rows], marker=".", linestyle="--", label="repository on disk")
    mem.set(xscale="log", xlabel="catalogue items", ylabel="GiB", title="memory")
    mem.legend(fontsize=7)
    fig.suptitle(f"shoprank at catalogue scale ({platform.node()}, {os.cpu_count()} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_scale", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="50000,1000000")
    p.add_argument("--small", type=Path, default=Path("build/small"), help="the small build's work folder")
    p.add_argument("--small-repo", type=Path, default=Path("build/small/bench_repo"), help="its built repository")
    p.add_argument("--work", type=Path, default=Path("build/server_scale"))
    p.add_argument("--candidates", type=int, default=300)
    p.add_argument("--requests", type=int, default=300, help="measured requests per ensemble and size")
    p.add_argument("--plot", type=Path, help="write the curves here (png)")
    p.add_argument("--keep", action="store_true", help="keep each size's repository")
    args = p.parse_args(argv)
    text = json.loads((args.small / "data" / "shop_text.json").read_text())
    queries = list(text["queries"])
    query_emb = np.load(args.small / "embeddings" / "queries.npy")
    features = FeatureTables.load(args.small / "features" / STORE_DIR)
    users = [int(u) for u in features.user_ids_sorted[:200]]
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args, queries, query_emb, users))
    print(f"machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores")
    print(table(rows))
    (args.work / "server_scale.json").write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Retrieval by the ``item_scan`` model (exact matrix product) beside the FAISS index, per catalogue size
(``python -m benchmarks.scan_retrieval``): latency p50/p99 of one request's nearest-item search at the
depth the retrieval models ask for, and recall@N against exact float32 search, side by side in one run
on the same query vectors.

* ``faiss``: the cpu target's retrieval, ``ItemIndex.search`` (IVF 8-bit lists above 20k items, re-scored
  with the float16 table; the build's nprobe), one thread, as a served instance runs it;
* ``scan cpu``: the ``item_scan`` model run by ONNX Runtime on one CPU thread (``retrieval.engine: scan``
  on the cpu target);
* ``scan gpu``: the same model on the CUDA execution provider (the gpu target), batch 1 and batch 16
  (what the dynamic batcher forms under load): only where ``onnxruntime-gpu`` finds a GPU. Without one
  the row says so; no number stands in for it.

Embeddings are generated as in ``benchmarks.index_scale`` (the demo's real title embeddings plus noise);
queries are the demo shop's real query embeddings.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from benchmarks.index_scale import catalogue, percentiles, search_times
from builders.learning import retrieval as rt
from builders.repository import item_scan
from runtime import cli_logging
from runtime import contract as c
from runtime.retrieval import SETTINGS_FILE, ItemIndex, RetrievalSettings
from runtime.scan import ort_scan, scan_inputs
from runtime.scoring import ITEM_EMBEDDINGS_FILE, load_item_embeddings

DEPTH = 600  # rows a retrieval request asks for: 300 candidates over the in-stock share, plus banned rows


def cuda_session(model: Path):
    """An ONNX Runtime session on the GPU, or the reason there is none."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            None,
            f"no CUDA execution provider (onnxruntime {ort.__version__}, providers {ort.get_available_providers()})",
        )
    return ort.InferenceSession(str(model), providers=["CUDAExecutionProvider"]), ""


def timed(call, vectors: np.ndarray, repeat: int) -> tuple[float, float]:
    return percentiles(search_times(call, vectors, repeat))


def recall(found: list[np.ndarray], exact: np.ndarray, n: int) -> float:
    return round(
        float(np.mean([len(set(f[:n].tolist()) & set(e.tolist())) / n for f, e in zip(found, exact, strict=True)])), 4
    )


def measure(n: int, work: Path, base: np.ndarray, queries: np.ndarray, candidates: int, repeat: int) -> dict:
    emb, folder, samples, built = catalogue(n, work, base, queries, candidates)
    model = item_scan.export(folder / ITEM_EMBEDDINGS_FILE, folder / item_scan.SCAN_FILE)
    settings = RetrievalSettings.from_json((folder / SETTINGS_FILE).read_text())
    index = ItemIndex.load(folder, settings, load_item_embeddings(folder))
    scan = ort_scan(model)
    vectors = samples["queries"]
    exact = rt.exact_top(emb, vectors, candidates)
    row: dict = {"items": n, "faiss_index": settings.kind, "nprobe": settings.nprobe, "depth": DEPTH}
    for name, call in (("faiss", lambda v: index.search(v, DEPTH)), ("scan_cpu", lambda v: scan(v, DEPTH))):
        row[f"{name}_p50_ms"], row[f"{name}_p99_ms"] = timed(call, vectors, repeat)
        row[f"{name}_recall@{candidates}"] = recall([call(v)[0] for v in vectors], exact, candidates)
    gpu, why = cuda_session(model)
    if gpu is None:
        row["scan_gpu"] = f"not measured: {why}"
        return row
    one = lambda v: gpu.run([c.SCAN_ROWS], scan_inputs(v, DEPTH))[0][0]  # noqa: E731
    batch = np.ascontiguousarray(vectors[:16], np.float32)
    sixteen = lambda v: gpu.run(  # noqa: E731
        [c.SCAN_ROWS], {c.SCAN_VECTOR: batch, c.SCAN_DEPTH: np.full((len(batch), 1), DEPTH, np.int64)}
    )
    row["scan_gpu_p50_ms"], row["scan_gpu_p99_ms"] = timed(one, vectors, repeat)
    row["scan_gpu_batch16_p50_ms"], row["scan_gpu_batch16_p99_ms"] = timed(sixteen, vectors, repeat)
    row[f"scan_gpu_recall@{candidates}"] = recall([one(v) for v in vectors], exact, candidates)
    row["build_seconds"] = built.get("build_seconds")
    return row


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="50000,1000000")
    p.add_argument("--small", type=Path, default=Path("build/small"), help="the small demo build (real embeddings)")
    p.add_argument("--work", type=Path, default=Path("build/scan_bench"))
    p.add_argument("--candidates", type=int, default=300)
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    base = np.load(args.small / "embeddings" / "items.npy")[:-1]
    queries = np.load(args.small / "embeddings" / "queries.npy")
    print(f"machine: {platform.node()} {platform.machine()}, {platform.processor() or 'cpu'}; one thread per search")
    for n in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(measure(n, args.work, base, queries, args.candidates, args.repeat)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The device side of the GPU measurements: ``python -m benchmarks.gpu_run --bundle build/gpu_truth --out DIR``.

It needs only what the device machine has (PyTorch, numpy, transformers; LightGBM from the carried wheel)
and the bundle ``benchmarks/gpu_truth.py prepare`` wrote; nothing else of the build is imported. It
measures, in order of value, and writes ``gpu_truth.json`` under ``--out``:

1. the ranker at the configs' batch sizes (100 to 4,096 rows): the DCN-v2 in PyTorch fp32, fp16 and bf16
   on the device, with CUDA graphs where the device is a GPU, and the LambdaMART on the machine's CPU
   cores; p50/p99 per batch, and candidates/s at the largest batch whose p99 is within 10 ms; each with
   its largest difference to the reference computed on the build machine's CPU;
2. ``item_scan``: the exact scan of a float16 item table as one matrix product plus top-k, at 1M and
   10M items (a seeded random table of unit vectors), batches of 1, 4 and 16 queries; p50/p99 and the
   top-100's agreement with the same scan in float32 on the CPU;
3. each carried text encoder in fp32, fp16 and bf16: one query's latency (batch 1), titles per second
   (batches of 256 titles of 32 tokens, as the build's embedding step), and the cosine to ONNX Runtime's
   CPU embeddings of the same titles (goal: at least 0.999).

``report`` turns the results into the markdown tables of ``docs/gpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

from builders.learning.dcn_model import from_state_dict
from runtime import cli_logging

RESULTS_FILE = "gpu_truth.json"
RANKER_BATCHES = (100, 500, 1000, 2048, 4096)
SCAN_SIZES = (1_000_000, 10_000_000)
SCAN_BATCHES = (1, 4, 16)
SCAN_K = 100
P99_BUDGET_MS = 10.0
DTYPES = ("fp32", "fp16", "bf16")


# -- timing ----------------------------------------------------------------------------------------
def timed(fn, reps: int, sync=lambda: None) -> dict:
    """p50/p99 in ms of ``reps`` calls of ``fn`` after 3 warm-up calls; ``sync`` waits for the device."""
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 4),
        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 4),
    }


def best_rate(by_batch: dict[str, dict]) -> dict:
    """Candidates/s at the largest batch whose p99 is within the budget (None where none is)."""
    fits = [(int(b), t) for b, t in by_batch.items() if t["p99_ms"] <= P99_BUDGET_MS]
    if not fits:
        return {"batch": None, "candidates_per_s": None}
    batch, t = max(fits)
    return {"batch": batch, "candidates_per_s": round(batch / (t["p50_ms"] / 1e3))}


def versions() -> dict:
    import torch

    out: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    out["numpy"] = np.__version__
    for name in ("onnxruntime", "transformers", "lightgbm"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    out["cuda"] = torch.version.cuda
    return out


def device_name(device: str) -> str:
    import torch

    cores = f"{os.cpu_count()} CPU cores"
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, {cores}"
    return f"{platform.machine()} CPU only, {cores}"


# -- run (there) -----------------------------------------------------------------------------------------
def run(bundle: Path, out: Path, device: str, small: bool) -> dict:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU here")
    torch.manual_seed(0)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    reps = 20 if small else 200
    results: dict = {"date": str(date.today()), "device": device_name(device), "versions": versions(), "small": small}
    started = time.perf_counter()
    results["ranker"] = ranker_part(bundle, device, sync, reps, small)
    results["item_scan"] = scan_part(device, sync, reps, small)
    results["encoder"] = encoder_part(bundle, device, sync, reps, small)
    results["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=1))
    return results


def ranker_part(bundle: Path, device: str, sync, reps: int, small: bool) -> dict:
    import torch

    rows = np.load(bundle / "ranker_rows.npz")
    batches = (100, 1000) if small else RANKER_BATCHES
    out: dict = {}
    if (bundle / "ranker.pt").exists():
        state = torch.load(bundle / "ranker.pt", weights_only=True, map_location="cpu")
        for dtype_name in DTYPES:
            dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
            model = from_state_dict(state).to(device=device, dtype=dtype).eval()
            cat = torch.from_numpy(rows["cat"]).to(device)
            dense = torch.from_numpy(rows["dense"]).to(device, dtype)
            with torch.no_grad():
                got = model(cat, dense)[0][:, 0].float().cpu().numpy()
                entry: dict = {"max_abs_diff_vs_cpu_fp32": float(np.abs(got - rows["dcn_logit"]).max()), "batches": {}}
                for b in batches:
                    c, d = cat[:b], dense[:b]
                    entry["batches"][str(b)] = timed(lambda c=c, d=d, m=model: m(c, d), reps, sync)
                if device == "cuda":
                    entry["cuda_graphs"] = {str(b): _graphed(model, cat[:b], dense[:b], reps, sync) for b in batches}
            entry["best"] = best_rate(entry["batches"])
            if "cuda_graphs" in entry:
                entry["best_cuda_graphs"] = best_rate(entry["cuda_graphs"])
            out[f"dcn/{dtype_name}"] = entry
    if (bundle / "gbdt_model.txt").exists():
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(bundle / "gbdt_model.txt"))
        features = rows["gbdt_features"]
        got = booster.predict(features, raw_score=True)
        for threads in sorted({1, os.cpu_count() or 1}):
            entry = {"max_abs_diff_vs_here": float(np.abs(got - rows["gbdt_raw"]).max()), "batches": {}}
            for b in batches:
                x = features[:b]
                entry["batches"][str(b)] = timed(
                    lambda x=x, t=threads: booster.predict(x, raw_score=True, num_threads=t), reps
                )
            entry["best"] = best_rate(entry["batches"])
            out[f"lambdamart/cpu-{threads}-threads"] = entry
    return out


def _graphed(model, cat, dense, reps: int, sync) -> dict:
    """The same forward pass captured once as a CUDA graph and replayed."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(cat, dense)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(cat, dense)
    return timed(graph.replay, reps, sync)


def scan_part(device: str, sync, reps: int, small: bool) -> dict:
    import torch

    sizes = (20_000,) if small else SCAN_SIZES
    dim = 384
    out: dict = {}
    for n in sizes:
        gen = torch.Generator(device=device).manual_seed(n)
        table = torch.randn(n, dim, generator=gen, device=device, dtype=torch.float32)
        table = torch.nn.functional.normalize(table, dim=1).to(torch.float16 if device == "cuda" else torch.float32)
        entry: dict = {"batches": {}}
        for b in SCAN_BATCHES:
            q = torch.nn.functional.normalize(torch.randn(b, dim, generator=gen, device=device), dim=1).to(table.dtype)
            entry["batches"][str(b)] = timed(lambda q=q, t=table: torch.topk(q @ t.T, SCAN_K, dim=1), reps, sync)
        # parity: one query, the device's top-100 against the same table scanned in float32 on the CPU
        q = torch.nn.functional.normalize(torch.randn(1, dim, generator=gen, device=device), dim=1).to(table.dtype)
        got = torch.topk(q @ table.T, SCAN_K, dim=1)
        want = _cpu_topk(q.float().cpu(), table, SCAN_K)
        same = len(set(got.indices[0].cpu().tolist()) & set(want.indices[0].tolist()))
        entry["top100_agreement_vs_cpu_fp32"] = same / SCAN_K
        entry["max_score_diff_vs_cpu_fp32"] = float((got.values.float().cpu() - want.values).abs().max())
        entry["table_dtype"] = str(table.dtype).replace("torch.", "")
        out[str(n)] = entry
        del table
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def _cpu_topk(q, table, k: int, chunk: int = 1_000_000):
    """Top-k of ``q @ table.T`` in float32 on the CPU, a million rows at a time."""
    import torch

    values, rows = [], []
    for start in range(0, table.shape[0], chunk):
        part = table[start : start + chunk].float().cpu()
        v, i = torch.topk(q @ part.T, min(k, part.shape[0]), dim=1)
        values.append(v)
        rows.append(i + start)
    v, order = torch.topk(torch.cat(values, 1), k, dim=1)
    return torch.return_types.topk((v, torch.gather(torch.cat(rows, 1), 1, order)))


def encoder_part(bundle: Path, device: str, sync, reps: int, small: bool) -> dict:
    import torch
    from transformers import AutoModel

    manifest = json.loads((bundle / "manifest.json").read_text())
    out: dict = {}
    for name, rel in manifest["encoders"].items():
        ref = np.load(bundle / rel / "reference.npz")
        ids, mask = torch.from_numpy(ref["input_ids"]), torch.from_numpy(ref["attention_mask"])
        for dtype_name in DTYPES:
            if device == "cpu" and dtype_name == "fp16":
                continue  # no float16 matrix kernels worth timing on a CPU
            dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
            # loaded as saved (float16), then cast: the same call on any transformers version
            model = AutoModel.from_pretrained(bundle / rel).to(device=device, dtype=dtype).eval()

            def embed(i, m, model=model):
                hidden = model(input_ids=i, attention_mask=m).last_hidden_state
                w = m.unsqueeze(-1).to(hidden.dtype)
                return torch.nn.functional.normalize(((hidden * w).sum(1) / w.sum(1)).float(), dim=1)

            with torch.no_grad():
                d_ids, d_mask = ids.to(device), mask.to(device)
                got = embed(d_ids, d_mask).cpu().numpy()
                cos = (got * ref["embeddings"]).sum(1) / np.linalg.norm(ref["embeddings"], axis=1)
                query = (d_ids[:1, :16], d_mask[:1, :16])
                entry = {
                    "min_cosine_vs_onnxruntime_cpu": float(cos.min()),
                    "query_batch_1": timed(lambda e=embed, q=query: e(*q), reps, sync),
                }
                batch = 64 if small else 256
                titles = (
                    d_ids[:batch].repeat(max(1, batch // len(d_ids)), 1)[:batch],
                    d_mask[:batch].repeat(max(1, batch // len(d_ids)), 1)[:batch],
                )
                t = timed(lambda e=embed, x=titles: e(*x), max(3, reps // 10), sync)
                entry["titles_per_s"] = round(len(titles[0]) / (t["p50_ms"] / 1e3))
            out[f"{name}/{dtype_name}"] = entry
            del model
    return out


# -- report (here) ---------------------------------------------------------------------------------------
def _ms(t: dict) -> str:
    return f"{t['p50_ms']:.3f} / {t['p99_ms']:.3f}"


def report(results: dict, command: str) -> str:
    """The markdown tables of one run: device, versions, date and command on top."""
    v = results["versions"]
    head = (
        f"Measured {results['date']} on **{results['device']}**: Python {v['python']}, torch {v['torch']}"
        f" (CUDA {v['cuda']}), numpy {v['numpy']}, transformers {v['transformers']}, LightGBM {v['lightgbm']}."
        f" The whole run took {results['seconds']} s. Command: `{command}`."
        + (
            " **A dry run on a CPU with small sizes: not GPU figures.**"
            if results["small"] or "CPU only" in results["device"]
            else ""
        )
    )
    lines = [
        head,
        "",
        "**The ranker** (p50 / p99 ms per batch of candidates; candidates/s at the largest batch within 10 ms p99):",
        "",
    ]
    batches = sorted({int(b) for e in results["ranker"].values() for b in e["batches"]})
    lines.append("| ranker | " + " | ".join(f"{b} rows" for b in batches) + " | candidates/s (batch) | parity |")
    lines.append("|---" * (len(batches) + 3) + "|")
    for name, e in results["ranker"].items():
        for label, key, best in (
            (name, "batches", "best"),
            (f"{name} + CUDA graphs", "cuda_graphs", "best_cuda_graphs"),
        ):
            if key not in e:
                continue
            cells = [_ms(e[key][str(b)]) if str(b) in e[key] else "–" for b in batches]
            rate = e[best]
            rate_cell = "–" if rate["candidates_per_s"] is None else f"{rate['candidates_per_s']:,} ({rate['batch']})"
            diff = e.get("max_abs_diff_vs_cpu_fp32", e.get("max_abs_diff_vs_here"))
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {rate_cell} | max abs diff {diff:.2e} |")
    lines += [
        "",
        f"**item_scan**, the exact scan as one matrix product plus top-{SCAN_K} (p50 / p99 ms per batch of queries):",
        "",
    ]
    lines.append(
        "| items | table | " + " | ".join(f"{b} queries" for b in SCAN_BATCHES) + " | top-100 agreement with CPU fp32 |"
    )
    lines.append("|---" * (len(SCAN_BATCHES) + 3) + "|")
    for n, e in results["item_scan"].items():
        cells = [_ms(e["batches"][str(b)]) for b in SCAN_BATCHES]
        lines.append(
            f"| {int(n):,} | {e['table_dtype']} | "
            + " | ".join(cells)
            + f" | {e['top100_agreement_vs_cpu_fp32']:.2f} |"
        )
    lines += [
        "",
        "**The text encoders** (one query of 16 tokens; titles of 32 tokens in batches; cosine to ONNX Runtime"
        " on a CPU):",
        "",
    ]
    lines.append("| encoder | query p50 / p99 ms | titles/s | min cosine |")
    lines.append("|---|---|---|---|")
    for name, e in results["encoder"].items():
        lines.append(
            f"| {name} | {_ms(e['query_batch_1'])} | {e['titles_per_s']:,} | {e['min_cosine_vs_onnxruntime_cpu']:.5f} |"
        )
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="what gpu_truth prepare wrote")
    parser.add_argument("--out", type=Path, required=True, help="where gpu_truth.json goes")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="small sizes (the dry run)")
    args = parser.parse_args(argv)
    results = run(args.bundle, args.out, args.device, args.small)
    print(report(results, "python -m benchmarks.gpu_run"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

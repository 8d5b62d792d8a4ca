"""The GPU measurements ``docs/gpu.md`` needs, ready to run in one device call whenever a GPU is lent.

    make gpu-truth                                   # here: prepare what travels, print the device call
    python -m benchmarks.gpu_run --bundle build/gpu_truth --out "$OUT"          # there, in that call
    make gpu-truth-report RESULTS=<the folder the call's files came back to>       # here: docs/gpu.md
    python -m benchmarks.gpu_truth --device cpu --small   # the dry run, on this machine's CPU (make test)

``prepare`` (here) writes ``build/gpu_truth/`` from a finished build (default ``build/small``), at most
64 MiB, since the device machine has no network and takes 64 MiB of carried files a call:

* the DCN-v2 ranker's weights (``ranker.pt``) and 4,096 of the build's held-out rows, with the logits
  PyTorch gives them here on the CPU (the parity reference); the LightGBM booster (``model.txt``), the
  same rows as its feature matrix and its raw scores here; the ``lightgbm`` wheel for Python 3.12;
* the text encoders the build has, in float16 (the bundled MiniLM is 90 MB in float32, 45 MB in float16;
  the fine-tuned one where the build kept it; the distilled variant is saved only as ONNX, which the
  device's CPU-only onnxruntime cannot run on the GPU, so it is not carried),
  with 256 of the shop's titles tokenized and their embeddings from the exported ONNX encoder on ONNX
  Runtime here (the parity reference).

``benchmarks/gpu_run.py`` (there) measures, in order of value, and writes ``gpu_truth.json``:

1. the ranker at the configs' batch sizes (100 to 4,096 rows): the DCN-v2 in PyTorch fp32, fp16 and bf16
   on the device, with CUDA graphs where the device is a GPU, and the LambdaMART on the machine's CPU
   cores; p50/p99 per batch, and candidates/s at the largest batch whose p99 is within 10 ms;
2. ``item_scan``: the exact scan of a float16 item table as one matrix product plus top-k, at 1M and
   10M items (a seeded random table of unit vectors), batches of 1, 4 and 16 queries; p50/p99 and the
   top-100's agreement with the same scan in float32 on the CPU;
3. each text encoder in fp32, fp16 and bf16: one query's latency (batch 1), titles per second (batches
   of 256 titles of 32 tokens, as the build's embedding step), and the cosine to ONNX Runtime's CPU
   embeddings (goal: at least 0.999).

``report`` (here) turns ``gpu_truth.json`` into the tables between ``<!-- gpu-truth:start -->`` and
``<!-- gpu-truth:end -->`` in ``docs/gpu.md``, each naming the device, the versions, the date and the
command. The whole served path on the device's CPU cores (the bundled tritonserver) needs the
``nvidia-pytriton`` wheel (55 MB) beside a repository whose encoder alone is 87 MB: it does not fit one
64 MiB carry with these parts and is not measured by this script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.gpu_run import RESULTS_FILE, report, run
from builders.data.dataset import ShopData, split_by_time
from builders.learning import gbdt
from builders.learning.dcn_model import from_state_dict
from builders.learning.rows import make_rows
from builders.learning.text_encoder import model_dir
from runtime import cli_logging
from runtime import encoder as ort_encoder
from runtime.features import FeatureStore
from runtime.text import TextTokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLE = REPO_ROOT / "build" / "gpu_truth"
CARRY_LIMIT = 64 * 2**20
LIGHTGBM_WHEEL = "lightgbm==4.7.0"
START, END = "<!-- gpu-truth:start -->", "<!-- gpu-truth:end -->"


# -- prepare (here) ----------------------------------------------------------------------------------
def prepare(work: Path, bundle: Path, rows: int = 4096, texts: int = 256, wheels: bool = True) -> dict:
    """Write what the device run needs into ``bundle`` (replaced), from the finished build in ``work``."""
    import torch

    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    shop = ShopData.load(work / "data")
    store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
    test = make_rows(
        shop,
        store,
        np.load(work / "embeddings" / "items.npy", mmap_mode="r"),
        np.load(work / "embeddings" / "queries.npy"),
        store.profiles(),
        split_by_time(shop)["test"],
    )
    n = min(rows, len(test))
    cat, dense = np.ascontiguousarray(test.cat[:n]), np.ascontiguousarray(test.dense[:n])
    reference: dict[str, np.ndarray] = {"cat": cat, "dense": dense}
    state = torch.load(work / "ranker" / "ranker.pt", weights_only=True)
    if state:
        model = from_state_dict(state)
        with torch.no_grad():
            logit, weight = model(torch.from_numpy(cat), torch.from_numpy(dense))
        reference["dcn_logit"] = logit[:, 0].numpy()
        shutil.copy(work / "ranker" / "ranker.pt", bundle / "ranker.pt")
    booster_dir = work / "ranker" / "gbdt"
    if (booster_dir / gbdt.BOOSTER_FILE).exists():
        ranker = gbdt.GBDTRanker.load(booster_dir)
        reference["gbdt_features"] = gbdt.features(cat, dense)
        reference["gbdt_raw"] = ranker.booster.predict(reference["gbdt_features"], raw_score=True)  # type: ignore[attr-defined]
        shutil.copy(booster_dir / gbdt.BOOSTER_FILE, bundle / "gbdt_model.txt")
    np.savez(bundle / "ranker_rows.npz", **reference)
    # the encoders: fp16 weights, the tokenized titles, ONNX Runtime's embeddings of them here
    titles = list(shop.item_titles[:texts])
    # each encoder's torch folder beside the ONNX export the build serves (its tokenizer.json sits next to it)
    encoders = {"bundled": (model_dir(None), REPO_ROOT / "build" / "encoder" / "model.onnx")}
    choice = work / "fine_tune" / "choice.json"
    if choice.exists() and json.loads(choice.read_text())["kept"]:
        encoders["fine-tuned"] = (work / "fine_tune" / "model", work / "encoder" / "model.onnx")
    carried = {}
    for name, (folder, onnx) in encoders.items():
        if not onnx.exists():
            continue
        dst = bundle / f"encoder-{name}"
        _half_copy(folder, dst)
        tokenizer = onnx.with_name("tokenizer.json")
        ids, mask = TextTokenizer(tokenizer, length=32).encode(titles)
        ref = ort_encoder.encode(onnx, titles, 32, tokenizer, progress=False)
        np.savez(dst / "reference.npz", input_ids=ids, attention_mask=mask, embeddings=ref)
        carried[name] = str(dst.relative_to(bundle))
    if wheels:
        _wheel(LIGHTGBM_WHEEL, bundle / "wheels")
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    manifest = {"work": str(work), "rows": n, "texts": len(titles), "encoders": carried, "bytes": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if size > CARRY_LIMIT:
        raise SystemExit(f"error: {bundle} is {size / 2**20:.1f} MiB, over the device's 64 MiB carry")
    return manifest


def _half_copy(folder: Path, dst: Path) -> None:
    """The encoder folder with its weights in float16 (safetensors), its config and tokenizer as they are."""
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True)
    for f in folder.rglob("*"):
        rel = f.relative_to(folder)
        if (
            f.is_dir()
            or f.suffix in (".bin", ".onnx", ".h5", ".msgpack", ".ot")
            or rel.parts[0] in ("onnx", "openvino")
        ):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".safetensors":
            save_file({k: v.half().contiguous() for k, v in load_file(f).items()}, dst / rel)
        elif f.stat().st_size < 2**20:
            shutil.copy(f, dst / rel)


def _wheel(spec: str, folder: Path) -> None:
    """Download ``spec``'s wheel for the device's Python 3.12 (the machine there has no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(folder),
            spec,
        ],
        check=True,
    )


def write_doc(doc: Path, body: str) -> None:
    text = doc.read_text()
    if START not in text:
        raise SystemExit(f"error: {doc} has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    doc.write_text(f"{before}{START}\n{body}\n{END}{after}")


# -- command line ------------------------------------------------------------------------------------------
DEVICE_CALL = (
    "python3 -m pip install -q --no-index --no-deps --target /tmp/site build/gpu_truth/wheels/*.whl && "
    "PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_run --bundle build/gpu_truth "
    '--out "$OUT" --device cuda'
)


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("prepare", "report"), help="one step (default: the dry run)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "small", help="the finished build to take")
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "gpu_truth_results")
    parser.add_argument("--results", type=Path, help="report: the folder holding gpu_truth.json")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "gpu.md")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="the dry run's sizes (the only ones it has)")
    args = parser.parse_args(argv)
    if args.what == "prepare":
        manifest = prepare(args.work, args.bundle)
        print(
            f"{args.bundle}: {manifest['bytes'] / 2**20:.1f} MiB (at most 64 MiB travel); "
            f"encoders {list(manifest['encoders'])}"
        )
        print(f"device call (carry build/gpu_truth, timeout_s 480):\n  {DEVICE_CALL}")
        return 0
    if args.what == "report":
        results = json.loads((args.results / RESULTS_FILE).read_text())
        write_doc(args.doc, report(results, "make gpu-truth, then the device call it prints"))
        print(f"wrote {args.doc}")
        return 0
    # the dry run: every part on this machine's CPU, small sizes, nothing written to docs/
    bundle = args.bundle if args.bundle != BUNDLE else REPO_ROOT / "build" / "gpu_truth_dry"
    prepare(args.work, bundle, rows=1024, texts=64, wheels=False)
    results = run(bundle, args.out, args.device, small=True)
    print(report(results, "python -m benchmarks.gpu_truth --device cpu --small"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

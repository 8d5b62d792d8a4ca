"""Build TensorRT engines and check them against ONNX Runtime: needs a GPU and TensorRT.

NOT RUN ON THE PROJECT'S MACHINES (no GPU, and the TensorRT builder cannot be installed there:
docs/gpu.md). Runs on a GPU host with the NGC Triton or TensorRT image, where ``trtexec`` exists:

    python -m builders.gpu.engine --repo build/default/gpu_repository [--precision int8]

``tensorrt`` and ``torch.cuda`` are imported only inside the functions that need them, so the rest of
the project imports this module fine without them. A failed build raises ``EngineBuildError`` with
the exact ``trtexec`` command to reproduce it.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np

from builders.gpu import naming, profiles, trtexec
from builders.gpu.specs import GPU_INSTANCES
from builders.repository.model_specs import spec_by_name
from runtime.errors import ShoprankError
from runtime.ort_runner import make_session

TRTEXEC_PATHS = ("trtexec", "/usr/src/tensorrt/bin/trtexec")


class EngineBuildError(ShoprankError, RuntimeError):
    """TensorRT is missing or an engine build/parity check failed; the message says how to reproduce."""


def find_trtexec() -> str | None:
    for candidate in TRTEXEC_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def unavailable_reason() -> str | None:
    """Why engines cannot be built on this machine, or None when they can."""
    if find_trtexec() is None:
        return (
            "no trtexec on PATH or in /usr/src/tensorrt/bin: the TensorRT builder is not installed (it cannot be "
            "installed from the registries this project's machines reach; run on a GPU host with the NGC "
            f"Triton {naming.SERVING_RELEASE} image, or let the Helm chart's engine-build step do it)"
        )
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi: no NVIDIA GPU/driver on this machine, and engines must be built on the target GPU"
    return None


def local_gpu() -> tuple[str, str]:
    """``(product name, compute capability)`` of GPU 0, from nvidia-smi."""
    out = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[0]
    )
    name, cc = (part.strip() for part in out.rsplit(",", 1))
    return name, cc


def trt_version() -> str:
    """TensorRT version of the local trtexec, e.g. ``10.5.0``."""
    import re

    text = subprocess.run([find_trtexec() or "trtexec", "--help"], capture_output=True, text=True).stdout
    match = re.search(r"TensorRT v(\d+)", text)
    if not match:
        raise EngineBuildError("cannot read the TensorRT version from `trtexec --help`")
    return naming.trt_version_from_int(match.group(1))


def build(onnx: Path, out_dir: Path, spec, precision: str = "fp16", calib_cache: Path | None = None) -> Path:
    """Build the engine of ``spec`` (encoder or ranker) for the local GPU into ``out_dir``; returns its path."""
    reason = unavailable_reason()
    if reason:
        raise EngineBuildError(reason)
    _, cc = local_gpu()
    plan = out_dir / naming.engine_filename(cc, trt_version())
    cmd = trtexec.command(
        onnx,
        plan.with_suffix(".tmp"),
        profiles.for_spec(spec),
        precision,
        str(calib_cache) if calib_cache else None,
        trtexec=find_trtexec() or "trtexec",
    )
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise EngineBuildError(f"trtexec failed (rc {result.returncode}); reproduce: {shlex.join(cmd)}\n{tail}")
    plan.with_suffix(".tmp").replace(plan)
    return plan


def run_engine(plan: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a TensorRT engine once on ``feed`` (TensorRT 10 tensor API, torch CUDA tensors as buffers)."""
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    buffers = {}
    for name, array in feed.items():
        buffers[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        context.set_input_shape(name, tuple(array.shape))
    outputs = [
        engine.get_tensor_name(i)
        for i in range(engine.num_io_tensors)
        if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT
    ]
    for name in outputs:
        dtype = torch.from_numpy(np.zeros(1, trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return {name: buffers[name].cpu().numpy() for name in outputs}


def parity(plan: Path, onnx: Path, feeds: list[dict[str, np.ndarray]]) -> dict:
    """Largest absolute difference and smallest row cosine between the engine and ONNX Runtime (CPU)."""

    session = make_session(str(onnx), intra_op_threads=2)
    max_abs, min_cos = 0.0, 1.0
    for feed in feeds:
        names = [o.name for o in session.get_outputs()]
        want = dict(zip(names, session.run(names, feed), strict=True))
        got = run_engine(plan, feed)
        for name in names:
            a, b = want[name].reshape(len(want[name]), -1), got[name].reshape(len(got[name]), -1).astype(np.float32)
            max_abs = max(max_abs, float(np.abs(a - b).max()))
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
            min_cos = min(min_cos, float(cos.min()))
    return {"batches": len(feeds), "max_abs_diff": max_abs, "min_cosine": min_cos}


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(description="Build the TensorRT engines of a gpu-target repository on this GPU host.")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--precision", default="fp16", choices=trtexec.PRECISIONS)
    args = p.parse_args(argv)
    specs = spec_by_name()
    try:
        for name in GPU_INSTANCES:
            version_dir = args.repo / name / "1"
            calib = version_dir / "calibration.cache" if args.precision == "int8" else None
            plan = build(version_dir / "model.onnx", version_dir, specs[name], args.precision, calib)
            print(f"built {plan}")
    except EngineBuildError as err:
        print(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

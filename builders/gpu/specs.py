"""Model configs of the ``gpu`` target, derived from the CPU specs so the contract cannot drift.

Two runtimes for the encoder and the ranker (``--gpu-runtime``):

* ``tensorrt`` (default): ``platform: "tensorrt_plan"``, one engine per compute capability named
  by ``naming`` (``cc_model_filenames``); engines come from ``engine.build`` on a GPU host or from
  the chart's on-node engine build.
* ``ort-trt``: the onnxruntime backend with TensorRT as its GPU execution accelerator: the ONNX file
  is the artifact and ONNX Runtime builds (and caches) the engine when the model loads. Slower first
  load, no separate build step, falls back to CUDA kernels for ops TensorRT cannot take.

The Python models (features, top-k, retrieval) stay on CPU instances: they are numpy and tokenizer
work. Retrieval's nearest-neighbour search moves to the GPU (``scan``, the default): ``item_scan``
(``builders/repository/item_scan.py``), an exact matrix product over the float16 item table, on a GPU instance of
the onnxruntime backend (CUDA), which the retrieval models call through BLS instead of searching FAISS.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from builders.gpu import naming
from builders.repository.model_specs import ensemble_specs as cpu_specs
from builders.repository.triton_config import ModelSpec
from runtime import contract as c

RUNTIMES = ("tensorrt", "ort-trt")
GPU_INSTANCES = {c.TEXT_ENCODER: 1, c.RANKER: 1}
PREFERRED = {c.TEXT_ENCODER: (8, 16, 32), c.RANKER: (256, 1024)}
QUEUE_DELAY_US = {c.TEXT_ENCODER: 100, c.RANKER: 100}
ORT_TRT_CACHE = "/tmp/shoprank-ort-trt-cache"


def trees_on_cpu(spec: ModelSpec) -> ModelSpec:
    """The ranker's CPU spec, kept on the gpu target for a gradient-boosted ranker: TensorRT compiles no
    ``TreeEnsembleRegressor``, and ONNX Runtime's CPU kernel scores 1,000 candidates in about 2 ms on one
    core (docs/quality.md). Triton's FIL backend would run the trees on the GPU, but takes one
    feature matrix in and gives one score out, not the ranker's two inputs and two outputs: not built."""
    cpu = {s.name: s for s in cpu_specs()}[spec.name]
    why = dict(cpu.why)
    why["instance_group"] = (
        "gbdt ranker: CPU instances of the onnxruntime backend on the GPU node (TensorRT compiles no tree ensemble)"
    )
    return dataclasses.replace(cpu, why=why)


def gpu_model(spec: ModelSpec, runtime: str, precision: str, ccs: tuple[str, ...], trt_version: str) -> ModelSpec:
    if runtime not in RUNTIMES:
        raise ValueError(f"gpu runtime must be one of {RUNTIMES}, got {runtime!r}")
    why = dict(spec.why)
    why["instance_group"] = "1 GPU instance: one engine execution at a time saturates a GPU for models this small"
    why["dynamic_batching"] = (
        f"preferred {list(PREFERRED[spec.name])}: the engine's profile is tuned for "
        f"these batch sizes; {QUEUE_DELAY_US[spec.name]} us delay"
    )
    common: dict[str, Any] = dict(
        instances=GPU_INSTANCES[spec.name],
        instance_kind="KIND_GPU",
        dynamic_batching=True,
        preferred_batch_sizes=PREFERRED[spec.name],
        max_queue_delay_us=QUEUE_DELAY_US[spec.name],
        parameters={},
    )
    if runtime == "tensorrt":
        why["platform"] = (
            f"tensorrt_plan, {precision}: engines per compute capability for TensorRT {trt_version} "
            f"(NGC {naming.SERVING_RELEASE}); a GPU without its engine fails to load, never runs a wrong one"
        )
        return dataclasses.replace(
            spec,
            backend="",
            platform="tensorrt_plan",
            cc_model_filenames=naming.cc_model_filenames(ccs, trt_version),
            why=why,
            **common,
        )
    if precision == "int8":
        raise ValueError(
            "int8 on the GPU needs the calibration cache of the tensorrt runtime: use "
            "--gpu-runtime tensorrt (ort-trt offers fp32 and fp16)"
        )
    params = {
        "precision_mode": precision.upper(),
        "max_workspace_size_bytes": str(1 << 32),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": f"{ORT_TRT_CACHE}/{spec.name}",
    }
    why["optimization"] = (
        "onnxruntime + TensorRT execution provider: ONNX Runtime builds the engine at load "
        "and caches it per GPU; ops TensorRT cannot take fall back to CUDA"
    )
    return dataclasses.replace(spec, gpu_accelerator={"name": "tensorrt", "parameters": params}, why=why, **common)


def gpu_scan(spec: ModelSpec) -> ModelSpec:
    """``item_scan`` on one GPU instance of the onnxruntime backend (CUDA execution provider)."""
    why = dict(spec.why)
    why["instance_group"] = (
        "1 GPU instance: the float16 item table is copied to GPU memory once (7.7 GB at 10M items x 384); "
        "one matrix product and top-k per batch saturate the GPU's memory bandwidth"
    )
    return dataclasses.replace(spec, instance_kind="KIND_GPU", parameters={}, why=why)


def specs(
    runtime: str = "tensorrt",
    precision: str = "fp16",
    ccs: tuple[str, ...] = tuple(naming.TARGET_CCS),
    trt_version: str = naming.TRT_OF_RELEASE[naming.SERVING_RELEASE],
    embed_dim: int = c.EMBED_DIM,
    scan: bool = True,
) -> list[ModelSpec]:
    """Every model of the gpu-target repository (``embed_dim``: the text encoder's output size; ``scan``:
    retrieval by ``item_scan`` on the GPU, else FAISS on the CPU instances of the retrieval models)."""
    out = []
    for spec in cpu_specs(embed_dim, scan):
        if spec.name in GPU_INSTANCES:
            spec = gpu_model(spec, runtime, precision, ccs, trt_version)
        elif spec.name == c.ITEM_SCAN:
            spec = gpu_scan(spec)
        out.append(spec)
    return out

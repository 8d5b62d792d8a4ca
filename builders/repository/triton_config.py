"""A small typed model config, rendered through Triton's own protobuf schema.

``ModelSpec`` -> dict -> ``json_format.ParseDict(..., ModelConfig())`` -> ``text_format``: an unknown
field, a wrong enum or a wrong type fails here, at build time, not when the server loads the model.
``why`` notes are written as comments on top of each ``config.pbtxt``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

NUMPY_TO_TRITON = {
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bytes": "TYPE_STRING",
    "object": "TYPE_STRING",
    "bool": "TYPE_BOOL",
}


# Triton's rate limiter (``--rate-limit=execution_count``) gives a request to the free instance with the lowest
# executions x priority. Priorities 1, B, B^2, ... (one instance per group) make the first instance take nearly
# every request while it is free, the second every request that finds the first busy, and so on.
PREFERRED_BASE = 1000
MAX_PRIORITY = 2**31 - 1  # the config's priority is a uint32; kept well inside it


def preferred_instance_groups(count: int, kind: str = "KIND_CPU") -> list[dict]:
    """``count`` instances as ``count`` groups of one, each with a rate-limiter priority: 1 for the first,
    ``B ** i`` for the i-th, ``B`` as large as ``MAX_PRIORITY`` allows (1000 at most, 2 at least)."""
    if count < 1:
        raise ValueError(f"instances: expected a whole number >= 1, got {count!r}")
    base = max(2, min(PREFERRED_BASE, int(MAX_PRIORITY ** (1 / max(1, count - 1)))))
    return [{"count": 1, "kind": kind, "rate_limiter": {"priority": min(base**i, MAX_PRIORITY)}} for i in range(count)]


def instance_groups(count: int, kind: str = "KIND_CPU", preferred: bool = False) -> list[dict]:
    """A config's ``instance_group``: one group of ``count``, or ``preferred_instance_groups``."""
    return preferred_instance_groups(count, kind) if preferred else [{"count": count, "kind": kind}]


def instance_count(cfg: model_config_pb2.ModelConfig) -> int:
    """How many instances a config asks for, over its instance groups."""
    return sum(int(g.count) for g in cfg.instance_group)


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy-style name: int64, float32, bytes...
    dims: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "data_type": NUMPY_TO_TRITON[self.dtype], "dims": list(self.dims)}


@dataclass(frozen=True)
class WarmInput:
    """One input of a made-up request that Triton sends each instance before it serves (``model_warmup``):
    its values, as the file ``<model>/warmup/<name>`` holds them."""

    name: str
    dtype: str  # numpy-style name, as ``Tensor``'s
    values: tuple[int | str, ...]

    def data(self) -> bytes:
        """The file's bytes: the values in the tensor's layout (a string as its 4-byte little-endian length,
        then its UTF-8 bytes: Triton's serialised BYTES tensor)."""
        if self.dtype in ("bytes", "object"):
            return b"".join(struct.pack("<I", len(v)) + v for v in (str(x).encode() for x in self.values))
        formats = {"int64": "q", "int32": "i"}
        if self.dtype not in formats:
            raise ValueError(f"warm-up input {self.name}: dtype {self.dtype!r} is not supported")
        return struct.pack(f"<{len(self.values)}{formats[self.dtype]}", *(int(v) for v in self.values))

    def to_dict(self) -> dict:
        return {
            "data_type": NUMPY_TO_TRITON[self.dtype],
            "dims": [len(self.values)],
            "input_data_file": self.name,
        }


WARMUP_DIR = "warmup"  # Triton reads a warm-up sample's input_data_file from <model>/warmup/


@dataclass(frozen=True)
class Step:
    model: str
    inputs: dict[str, str]  # the model's input name -> ensemble tensor
    outputs: dict[str, str]  # the model's output name -> ensemble tensor

    def to_dict(self) -> dict:
        return {
            "model_name": self.model,
            "model_version": -1,
            "input_map": dict(self.inputs),
            "output_map": dict(self.outputs),
        }


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int = 0
    backend: str = ""  # "python", "onnxruntime", ...
    platform: str = ""  # "ensemble", "tensorrt_plan"
    instances: int = 0  # 0: no instance_group (ensembles)
    instance_kind: str = "KIND_CPU"
    # True: one group per instance with rate-limiter priorities (``preferred_instance_groups``), so the server
    # started with ``--rate-limit=execution_count`` gives a request to the first free instance in a fixed order
    preferred_instances: bool = False
    dynamic_batching: bool = False
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    max_queue_size: int = 0  # 0: unbounded; >0: requests beyond it are rejected (load shedding)
    steps: tuple[Step, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)
    response_cache: bool = False
    default_model_filename: str = ""
    cc_model_filenames: dict[str, str] = field(default_factory=dict)  # compute capability -> engine file
    gpu_accelerator: dict | None = None  # e.g. {"name": "tensorrt", "parameters": {"precision_mode": "FP16"}}
    # a made-up request each instance answers before it serves (Triton's model_warmup): its inputs, 1-D each
    warmup: tuple[WarmInput, ...] = ()
    why: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        cfg: dict = {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "input": [t.to_dict() for t in self.inputs],
            "output": [t.to_dict() for t in self.outputs],
        }
        if self.backend:
            cfg["backend"] = self.backend
        if self.platform:
            cfg["platform"] = self.platform
        if self.instances:
            cfg["instance_group"] = instance_groups(self.instances, self.instance_kind, self.preferred_instances)
        if self.dynamic_batching:
            db: dict = {"max_queue_delay_microseconds": self.max_queue_delay_us}
            if self.preferred_batch_sizes:
                db["preferred_batch_size"] = list(self.preferred_batch_sizes)
            if self.max_queue_size:
                db["default_queue_policy"] = {"max_queue_size": self.max_queue_size}
            cfg["dynamic_batching"] = db
        if self.steps:
            cfg["ensemble_scheduling"] = {"step": [s.to_dict() for s in self.steps]}
        if self.parameters:
            cfg["parameters"] = {k: {"string_value": v} for k, v in self.parameters.items()}
        if self.response_cache:
            cfg["response_cache"] = {"enable": True}
        if self.default_model_filename:
            cfg["default_model_filename"] = self.default_model_filename
        if self.cc_model_filenames:
            cfg["cc_model_filenames"] = dict(self.cc_model_filenames)
        if self.gpu_accelerator:
            acc = {
                "name": self.gpu_accelerator["name"],
                "parameters": {k: str(v) for k, v in self.gpu_accelerator.get("parameters", {}).items()},
            }
            cfg["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [acc]}}
        if self.warmup:
            # batch_size 1: Triton skips a sample of batch size 0, and a model that does not batch takes its
            # inputs' full shapes as given
            cfg["model_warmup"] = [
                {
                    "name": "made_up_request",
                    "batch_size": 1,
                    "count": 1,
                    "inputs": {w.name: w.to_dict() for w in self.warmup},
                }
            ]
        return cfg

    def warmup_files(self) -> dict[str, bytes]:
        """The files of the warm-up request, by their path under the model's folder."""
        return {f"{WARMUP_DIR}/{w.name}": w.data() for w in self.warmup}

    def to_proto(self) -> model_config_pb2.ModelConfig:
        return json_format.ParseDict(self.to_dict(), model_config_pb2.ModelConfig())

    def render(self) -> str:
        """The ``config.pbtxt`` text: the why-notes as comments, then the validated protobuf text."""
        header = [
            f"# Generated by builders/repository/model_specs.py ({self.name}); edit the spec, then `make configs` "
            f"(gpu target: builders/gpu/specs.py, `make build-gpu`)."
        ]
        for key, note in self.why.items():
            header.append(f"# {key}: {note}")
        return "\n".join(header) + "\n" + text_format.MessageToString(self.to_proto())

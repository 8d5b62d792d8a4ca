"""INT8 calibration caches for TensorRT, computed on the CPU from the generated shop data.

ONNX Runtime's calibrator runs the ONNX model on the calibration batches (``builders.variants.
calibration``: real titles and queries, real feature rows) and records every tensor's range. From
those ranges this module writes:

``calibration.cache`` in TensorRT's own text format (a header, then ``tensor: scale`` with the
scale ``amax / 127`` as the hex of a big-endian float32), read by ``trtexec --int8 --calib=...``.

The TensorRT format is written for the serving image's TensorRT version. NOT VERIFIED HERE: no
TensorRT builder can run on the project's machines, so whether TensorRT accepts this cache is
checked only where it runs (``engine.build``); the ranges themselves are unit-tested.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np

from builders.variants.calibration import FeedReader

CALIBRATOR_NAME = "MinMaxCalibration"


def tensor_ranges(onnx_path: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """amax (largest absolute value seen) of every float tensor of the model over ``feeds``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            str(onnx_path),
            op_types_to_calibrate=None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(FeedReader(feeds))
        data = calibrator.compute_data()
    ranges = {}
    for name, td in data.items():
        lo, hi = (
            float(np.asarray(v).max() if np.asarray(v).size else 0.0)
            for v in (np.abs(td.range_value[0]), np.abs(td.range_value[1]))
        )
        ranges[name] = max(lo, hi)
    return ranges


def tensorrt_cache_text(ranges: dict[str, float], trt_version_int: int) -> str:
    """The cache in TensorRT's format: ``TRT-<version>-<calibrator>`` then one ``name: hexscale`` per tensor."""
    lines = [f"TRT-{trt_version_int}-{CALIBRATOR_NAME}"]
    for name in sorted(ranges):
        scale = max(ranges[name], 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def parse_tensorrt_cache(text: str) -> tuple[str, dict[str, float]]:
    """The header and ``name -> scale`` of a cache in TensorRT's text format."""
    header, *rows = text.strip().splitlines()
    scales = {}
    for row in rows:
        name, value = row.rsplit(": ", 1)
        scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return header, scales


def write(onnx_path: Path, feeds: list[dict[str, np.ndarray]], out_dir: Path, trt_version_int: int) -> dict:
    """Write ``calibration.cache`` into ``out_dir``; return a summary."""
    ranges = tensor_ranges(onnx_path, feeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.cache").write_text(tensorrt_cache_text(ranges, trt_version_int))
    return {"tensors": len(ranges), "batches": len(feeds), "max_amax": max(ranges.values()) if ranges else 0.0}

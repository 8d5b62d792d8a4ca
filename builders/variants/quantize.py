"""INT8 quantization with ONNX Runtime: dynamic (weights) and static (weights and activations).

* dynamic: weights INT8 per channel; activations quantized on the fly per batch. No data needed.
* static: activation ranges calibrated once on the shop's titles/queries (encoder) or feature rows
  (ranker) (``calibration``), stored in the graph as QuantizeLinear/DequantizeLinear pairs (QDQ),
  which ONNX Runtime runs as integer kernels on CPU and TensorRT reads as explicit INT8.

CLI: ``python -m builders.variants.quantize dynamic SRC DST``; static needs calibration data and runs
from ``python -m builders variants``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from builders.variants.calibration import FeedReader


def _float_default(src: Path) -> dict:
    # Fused graphs hold contrib ops that ONNX shape inference cannot type: tell the quantizer they are float.
    import onnx

    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


def dynamic(src: Path, dst: Path, per_channel: bool = True) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.onnx")
    quantize_dynamic(
        str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel, extra_options=_float_default(src)
    )
    os.replace(tmp, dst)
    return dst


def static(
    src: Path,
    dst: Path,
    feeds: list[dict[str, np.ndarray]],
    op_types: tuple[str, ...] = ("MatMul", "Gemm"),
    method: str = "minmax",
) -> Path:
    """QDQ static INT8 of ``op_types`` with activation ranges from ``feeds`` (MinMax or Percentile)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.onnx")
    quantize_static(
        str(src),
        str(tmp),
        FeedReader(feeds),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(op_types),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[method],
        extra_options=_float_default(src),
    )
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["dynamic"])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    args = p.parse_args(argv)
    dynamic(args.src, args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Offline graph optimisation: fuse once at build time instead of at every session start.

* encoder: ONNX Runtime's transformer optimizer fuses attention, skip-layer-norm, bias-GELU and the
  embedding layer into contrib ops (``optimizer.optimize_model(model_type="bert")``);
* ranker: ONNX Runtime's extended graph optimisations (constant folding, GEMM+bias, redundant casts),
  saved with ``optimized_model_filepath``. Level "all" is not saved: its layout changes are specific
  to the CPU that built it.

CLI: ``python -m builders.variants.graph encoder|ranker SRC DST``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

MINILM_HEADS = 12
MINILM_HIDDEN = 384


def fuse_encoder(src: Path, dst: Path, num_heads: int = MINILM_HEADS, hidden_size: int = MINILM_HIDDEN) -> Path:
    from onnxruntime.transformers import optimizer

    dst.parent.mkdir(parents=True, exist_ok=True)
    model = optimizer.optimize_model(
        str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
    )
    tmp = dst.with_suffix(".tmp.onnx")
    model.save_model_to_file(str(tmp))
    os.replace(tmp, dst)
    return dst


def optimize_ranker(src: Path, dst: Path) -> Path:
    import onnxruntime as ort

    dst.parent.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    tmp = dst.with_suffix(".tmp.onnx")
    opts.optimized_model_filepath = str(tmp)
    ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=["encoder", "ranker"])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    args = p.parse_args(argv)
    (fuse_encoder if args.model == "encoder" else optimize_ranker)(args.src, args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

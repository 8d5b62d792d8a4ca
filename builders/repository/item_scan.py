"""The ``item_scan`` model: exact retrieval as one matrix product over the served item table (ONNX).

    VECTOR [B, D] float32, DEPTH [B, 1] int64  ->  SCORES [B, K] float32, ROWS [B, K] int64

``scores = VECTOR · ITEMSᵀ`` over the item rows (the table's zero row for unknown items left out), then
the ``K`` best per vector, best first, with ``K = min(max(DEPTH), items)``: a dynamic batch answers every
vector as deep as its deepest request (the retrieval models keep what they asked for).

The table is not copied into the model: the ``ITEMS`` initializer is ONNX external data that points at
the rows of ``item_embeddings.npy`` in the same folder (offset past the ``.npy`` header), in the table's
own dtype (float16 by default: half the GPU memory, the product accumulates as the runtime does). So
the model file is a few hundred bytes at any catalogue size, and the repository hard-links the table
between ``topk``, the retrieval models and ``item_scan``.

Served by the onnxruntime backend: on the gpu target a GPU instance (the whole table in GPU memory,
7.7 GB at 10M items and 384 fp16 dimensions), the retrieval models call it through BLS
(``runtime/scan.py``). Exact, so there is no recall to tune; what it costs per request on a GPU is
measured only where a GPU is lent (docs/gpu.md).

CLI (the build writes it; this reproduces it alone):
    python -m builders.repository.item_scan --table build/small/retrieval/item_embeddings.npy --out /tmp/item_scan.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from runtime import contract as c
from runtime.pages import npy_layout

OPSET = 17
IR_VERSION = 8  # ONNX Runtime of the serving image (NGC 24.10) reads it
SCAN_FILE = "item_scan.onnx"  # in the build's retrieval folder; model.onnx in the repository
_ONNX_DTYPES = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.float32): TensorProto.FLOAT}


def table_layout(table: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the first value)`` of the item table, from its ``.npy`` header alone."""
    shape, fortran, dtype, offset = npy_layout(table)
    if fortran or len(shape) != 2:
        raise ValueError(f"{table}: expected a C-ordered [items + 1, dim] table, got shape {shape}")
    if dtype not in _ONNX_DTYPES:
        raise ValueError(f"{table}: dtype {dtype} is not float16 or float32")
    return shape, dtype, offset


def graph(table: Path) -> onnx.ModelProto:
    """The scan over ``table`` (a ``[items + 1, dim]`` ``.npy``; its last row, zeros, is left out)."""
    shape, dtype, offset = table_layout(table)
    items, dim = shape[0] - 1, shape[1]
    if items < 1:
        raise ValueError(f"{table}: no item rows")
    elem = _ONNX_DTYPES[dtype]
    weights = TensorProto(name="ITEMS", data_type=elem, dims=[items, dim], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", table.name), ("offset", offset), ("length", items * dim * dtype.itemsize)):
        entry = weights.external_data.add()
        entry.key, entry.value = key, str(value)
    nodes = [
        helper.make_node("Cast", [c.SCAN_VECTOR], ["vector"], to=elem),
        helper.make_node("Gemm", ["vector", "ITEMS"], ["products"], transB=1),
        helper.make_node("Cast", ["products"], ["scores"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", [c.SCAN_DEPTH], ["deepest"], keepdims=0),
        helper.make_node("Reshape", ["deepest", "one"], ["deepest_1"]),
        helper.make_node("Min", ["deepest_1", "item_count"], ["k"]),
        helper.make_node("TopK", ["scores", "k"], [c.SCAN_SCORES, c.SCAN_ROWS], axis=-1, largest=1, sorted=1),
    ]
    g = helper.make_graph(
        nodes,
        c.ITEM_SCAN,
        [
            helper.make_tensor_value_info(c.SCAN_VECTOR, TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info(c.SCAN_DEPTH, TensorProto.INT64, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info(c.SCAN_SCORES, TensorProto.FLOAT, ["batch", "k"]),
            helper.make_tensor_value_info(c.SCAN_ROWS, TensorProto.INT64, ["batch", "k"]),
        ],
        initializer=[
            weights,
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("item_count", TensorProto.INT64, [1], [items]),
        ],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="shoprank")
    model.ir_version = IR_VERSION
    return model


def export(table: Path, out: Path) -> Path:
    """Write the scan over ``table`` to ``out``, which must sit in the table's folder (the external data
    is found beside the model); checked by ``onnx.checker`` without reading the table."""
    table, out = Path(table), Path(out)
    if out.parent.resolve() != table.parent.resolve():
        raise ValueError(f"{out}: the scan model must be written beside its table {table}")
    model = graph(table)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(model.SerializeToString())
    onnx.checker.check_model(str(tmp))
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", type=Path, required=True, help="item_embeddings.npy ([items + 1, dim])")
    p.add_argument("--out", type=Path, required=True, help="the model file, in the table's folder")
    args = p.parse_args(argv)
    print(export(args.table, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

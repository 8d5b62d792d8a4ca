"""Float16 table rows read as float32: the item embeddings a build serves in float16
(``retrieval.embedding_dtype``) and every stage that scores with them (retrieval's exact re-scoring, the
co-visitation similarity, topk's similarity).

numpy 1.26 (``<2``: nvidia-pytriton 0.7.0 requires it) casts float16 one element at a time; ONNX Runtime's
``Cast`` converts with the CPU's vector instructions. On the default build's 384-wide rows (docs/benchmarks.md,
``make bench-fp16-decode``, two runs): 1,600 rows in 0.10-0.11 ms against 0.77-0.85 ms with FAISS's fp16 codec
and 1.29-1.60 ms with numpy; 300 rows in 0.03 against 0.15 and 0.23-0.35 ms. Every value a float16 holds
converts to the same float32 bits as numpy's cast (a NaN stays a NaN; its payload may not), which
tests/test_half.py checks over all 65,536 of them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from runtime.arrays import Array, Floats


@functools.lru_cache(maxsize=1)
def cast_session() -> Any:
    """One ``Cast`` (float16 -> float32, any shape) session per process, made on first use: ONNX Runtime is
    heavy to import, and a process that never reads a float16 table never loads it. (Two threads' first calls
    may each make one; the cache keeps one, and ``run`` is thread-safe.)"""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "float16_to_float32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported onnxruntime reads
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the calling thread converts: one request's rows are too few to split
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def to_float32(values: Array) -> Floats:
    """``values`` as float32, the same shape: float16 through ONNX Runtime's ``Cast`` (a new array), any other
    dtype through numpy (``values`` itself when it is float32 already)."""
    values = np.asarray(values)
    if values.dtype != np.float16 or values.size == 0:
        return np.asarray(values, np.float32)
    out: Floats = cast_session().run(None, {"x": np.ascontiguousarray(values)})[0]
    return out


def rows_float32(table: Array, rows: Array) -> Floats:
    """``table[rows]`` as float32 (``rows`` may be negative, counted from the end, as numpy indexes)."""
    return to_float32(np.take(table, np.asarray(rows, np.int64), axis=0))

"""Batch execution of an ONNX model with ONNX Runtime, as Triton's native onnxruntime backend does it.

Used by the local stand-in backend (``server/backends/onnxruntime/model.py``) and by the in-process
pipeline. Triton's dynamic batcher hands a backend several requests at once; for a model with
``max_batch_size > 0`` the backend concatenates them along the batch axis, runs the session once and
splits the outputs back per request. This module holds that logic so it is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from runtime.arrays import Array

if TYPE_CHECKING:
    import onnxruntime as ort


def make_session(
    model_path: str, intra_op_threads: int = 1, graph_opt: str = "all", spinning: bool = False
) -> ort.InferenceSession:
    """An ONNX Runtime CPU session. ``intra_op_threads`` mirrors the native backend's
    ``intra_op_thread_count`` parameter; ``graph_opt`` is one of disable/basic/extended/all.

    ``spinning`` is off by default: idle intra-op threads that spin take CPU from the other
    processes of the server (9 python-backend stubs share 2 cores here). Measured on the served
    search ensemble: p99 17.8 ms with spinning, 15.2 ms without, p50 unchanged (docs/benchmarks.md).
    """
    import onnxruntime as ort  # heavy: loaded by the models that run ONNX, not by every model importing runtime/

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(intra_op_threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = levels[graph_opt]
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])


def run_batched(
    session: ort.InferenceSession,
    requests: Sequence[Mapping[str, Array]],
    output_names: Sequence[str],
) -> list[dict[str, Array]]:
    """Run several requests as one batch along axis 0 and split the outputs back.

    Every request must carry every session input; the non-batch dimensions of one input must agree
    across requests (Triton's dynamic batcher only groups such requests).
    """
    if not requests:
        return []
    input_names = [i.name for i in session.get_inputs()]
    sizes = [len(next(iter(req.values()))) for req in requests]
    if len(requests) == 1:
        feeds = {name: requests[0][name] for name in input_names}
    else:
        feeds = {name: np.concatenate([req[name] for req in requests], axis=0) for name in input_names}
    outputs = session.run(list(output_names), feeds)
    if len(requests) == 1:
        return [dict(zip(output_names, outputs, strict=True))]
    bounds = np.cumsum(sizes)[:-1]
    per_output = [np.split(out, bounds, axis=0) for out in outputs]
    return [{name: per_output[j][i] for j, name in enumerate(output_names)} for i in range(len(requests))]

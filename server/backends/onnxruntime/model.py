"""LOCAL STAND-IN for Triton's native onnxruntime backend (a Triton "Python-based backend").

The tritonserver bundled in the nvidia-pytriton wheel ships only the python backend. This file,
installed by ``server/launcher.py`` as ``<backend-directory>/onnxruntime/model.py``, serves every model
whose config says ``backend: "onnxruntime"`` by running ``<version>/model.onnx`` with the onnxruntime
Python package. Triton's dynamic batcher works as usual: requests arrive here already grouped.
Production uses the NGC tritonserver:24.10-py3 image, whose native C++ onnxruntime backend serves the
same, unchanged configs. The batching logic lives in ``runtime/ort_runner.py``.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from runtime.backend import config_parameters
from runtime.ort_runner import make_session, run_batched


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        params = config_parameters(args["model_config"])
        self.session = make_session(path, int(params.get("intra_op_thread_count", "1") or 1))
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]}
        self.input_names = [i["name"] for i in config["input"]]

    def execute(self, requests):
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(req, name).as_numpy() for name in self.input_names}
            for req in requests
        ]
        try:
            results = run_batched(self.session, feeds, self.output_names)
        except Exception as err:  # onnxruntime's own message names the input and the problem
            error = pb_utils.TritonError(f"onnxruntime: {err}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(res[name], dtype=self.output_dtypes[name]))
                    for name in self.output_names
                ]
            )
            for res in results
        ]

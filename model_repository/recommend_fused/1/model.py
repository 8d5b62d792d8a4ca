"""recommend_fused: the whole recommend call in one process, the cpu target's ``recommend`` (features, ranker
and top-k on the files of recommend_features, ranker and topk of the same release).

Thin Triton wrapper; the logic is runtime/fused.py (FusedRecommend), unit-tested without Triton.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import online_store, serve
from runtime.fused import FusedRecommend, FusedSettings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        settings = FusedSettings.from_config(args["model_config"], args["model_repository"], args["model_version"])
        online = online_store(pb_utils, c.RECOMMEND_FEATURES)  # the metrics' labels of the ensemble layout
        self.call = FusedRecommend.load(settings, online=online)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, self.call.inputs, self.call, pb_utils.Logger, build_values=True, options=True)

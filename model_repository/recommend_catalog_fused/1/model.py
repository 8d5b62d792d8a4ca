"""recommend_catalog_fused: the whole recommend_catalog call in one process, the cpu target's
``recommend_catalog`` (retrieval, ranker and top-k on the files of retrieve_recommend, ranker and topk of the
same release).

Thin Triton wrapper; the logic is runtime/fused.py (FusedRecommendCatalog), unit-tested without Triton.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import bls_scan, online_store, scan_model, serve
from runtime.fused import FusedRecommendCatalog, FusedSettings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        settings = FusedSettings.from_config(args["model_config"], args["model_repository"], args["model_version"])
        online = online_store(pb_utils, c.RETRIEVE_RECOMMEND)  # the metrics' labels of the ensemble layout
        scanner = scan_model(args["model_config"])  # retrieval by the item_scan model through BLS, if configured
        scan = bls_scan(pb_utils, scanner, int(args["model_version"])) if scanner else None
        self.call = FusedRecommendCatalog.load(settings, online=online, scan=scan)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, self.call.inputs, self.call, pb_utils.Logger, build_values=True, options=True)

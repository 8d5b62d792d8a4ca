"""retrieve_recommend: user, context items, exclusions -> candidates from the whole catalogue, their ranker
features and the user's vector (recommend_catalog's retrieval step).

Thin Triton wrapper; the logic is runtime/retrieval.py (Retriever.recommend), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import bls_scan, online_store, scan_model, serve
from runtime.counters import close_all
from runtime.retrieval import Retriever


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"])
        online = online_store(pb_utils, args["model_name"])
        scanner = scan_model(args["model_config"])  # the gpu target: exact scan on the GPU through BLS
        scan = bls_scan(pb_utils, scanner, int(args["model_version"])) if scanner else None
        self.retriever = Retriever.load(folder, scan=scan, recommend=True, online=online)

    def execute(self, requests: list[Any]) -> list[Any]:
        names = (c.USER_ID, c.CONTEXT_ITEM_IDS, c.EXCLUDE_IDS)
        return serve(
            pb_utils, requests, names, self.retriever.recommend, pb_utils.Logger, build_values=True, options=True
        )

    def finalize(self) -> None:
        close_all()  # send the metrics' pending counts

"""retrieve_recommend: user, context items, exclusions -> candidates from the whole catalogue, their ranker
features and the user's vector (recommend_catalog's retrieval step).

Thin Triton wrapper; the logic is runtime/retrieval.py (Retriever.recommend), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import online_store, serve
from runtime.retrieval import Retriever


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"])
        online = online_store(pb_utils, args["model_name"])
        self.retriever = Retriever.load(folder, recommend=True, online=online)

    def execute(self, requests: list[Any]) -> list[Any]:
        names = (c.USER_ID, c.CONTEXT_ITEM_IDS, c.EXCLUDE_IDS)
        return serve(pb_utils, requests, names, self.retriever.recommend, pb_utils.Logger, build_values=True)

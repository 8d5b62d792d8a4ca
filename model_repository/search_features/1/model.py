"""search_features: raw search request and the query's embedding -> per-candidate ranker features.

Thin Triton wrapper; the logic is runtime/features.py (FeatureStore.search), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import online_store, serve
from runtime.features import FeatureStore


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.store = FeatureStore.load(folder, online=online_store(pb_utils, args["model_name"]))

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(
            pb_utils,
            requests,
            (c.USER_ID, c.QUERY, c.ITEM_IDS, c.CONTEXT_EMBEDDING),
            self.store.search,
            pb_utils.Logger,
            build_values=True,
        )

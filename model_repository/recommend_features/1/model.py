"""recommend_features: raw recommendation request -> per-candidate ranker features and the context embedding.

Thin Triton wrapper; the logic is runtime/features.py (FeatureStore.recommend), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import online_store, serve
from runtime.counters import close_all
from runtime.features import FeatureStore


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"])
        online = online_store(pb_utils, args["model_name"])
        self.store = FeatureStore.load(folder, with_tokenizer=False, with_profiles=True, online=online)

    def execute(self, requests: list[Any]) -> list[Any]:
        names = (c.USER_ID, c.ITEM_IDS)
        return serve(pb_utils, requests, names, self.store.recommend, pb_utils.Logger, build_values=True, options=True)

    def finalize(self) -> None:
        close_all()  # send the metrics' pending counts

"""search_features: raw search request -> query tokens and per-candidate ranker features (a query the query
statistics do not know is embedded by text_encoder through BLS, to borrow from its nearest head queries).

Thin Triton wrapper; the logic is runtime/features.py (FeatureStore.search), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import bls_encoder, online_store, serve
from runtime.counters import close_all
from runtime.features import FeatureStore


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        folder = os.path.join(args["model_repository"], args["model_version"])
        embed = bls_encoder(pb_utils, c.TEXT_ENCODER, int(args["model_version"]))  # this release's encoder
        self.store = FeatureStore.load(folder, online=online_store(pb_utils, args["model_name"]), embed=embed)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(
            pb_utils,
            requests,
            (c.USER_ID, c.QUERY, c.ITEM_IDS),
            self.store.search,
            pb_utils.Logger,
            build_values=True,
            options=True,
        )

    def finalize(self) -> None:
        close_all()  # send the metrics' pending counts

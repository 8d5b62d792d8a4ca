"""search_fused: the whole search call in one process, the cpu target's ``search`` (features, text encoder,
ranker and top-k on the files of search_features, text_encoder, ranker and topk of the same release).

Thin Triton wrapper; the logic is runtime/fused.py (FusedSearch), unit-tested without Triton.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import online_store, query_cache_metric, serve
from runtime.fused import EmbeddingCache, FusedSearch, FusedSettings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        settings = FusedSettings.from_config(args["model_config"], args["model_repository"], args["model_version"])
        cache = EmbeddingCache(settings.cache_entries, query_cache_metric(pb_utils, args["model_name"]))
        online = online_store(pb_utils, c.SEARCH_FEATURES)  # the metrics' labels of the ensemble layout
        self.call = FusedSearch.load(settings, online=online, cache=cache)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, self.call.inputs, self.call, pb_utils.Logger, build_values=True, options=True)

"""search_catalog_fused: the whole search_catalog call in one process, the cpu target's ``search_catalog``
(tokens, text encoder, retrieval, ranker and top-k on the files of query_tokens, text_encoder,
retrieve_search, ranker and topk of the same release).

Thin Triton wrapper; the logic is runtime/fused.py (FusedSearchCatalog), unit-tested without Triton.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import bls_scan, online_store, query_cache_metric, scan_model, serve
from runtime.fused import EmbeddingCache, FusedSearchCatalog, FusedSettings


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        settings = FusedSettings.from_config(args["model_config"], args["model_repository"], args["model_version"])
        cache = EmbeddingCache(settings.cache_entries, query_cache_metric(pb_utils, args["model_name"]))
        online = online_store(pb_utils, c.RETRIEVE_SEARCH)  # the metrics' labels of the ensemble layout
        scanner = scan_model(args["model_config"])  # retrieval by the item_scan model through BLS, if configured
        scan = bls_scan(pb_utils, scanner, int(args["model_version"])) if scanner else None
        self.call = FusedSearchCatalog.load(settings, online=online, scan=scan, cache=cache)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, self.call.inputs, self.call, pb_utils.Logger, build_values=True, options=True)

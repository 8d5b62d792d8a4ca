"""topk: ranker outputs + context embedding -> final scores -> the k best item ids.

Thin Triton wrapper; the logic is runtime/scoring.py (TopK.rank), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import serve
from runtime.scoring import TopK


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.topk = TopK.load(os.path.join(args["model_repository"], args["model_version"]))

    def execute(self, requests: list[Any]) -> list[Any]:
        names = (
            c.CONTEXT_EMBEDDING,
            c.LOGIT,
            c.SIM_WEIGHT,
            c.ITEM_ROWS,
            c.ITEM_IDS,
            c.TOP_K,
            c.AVAILABLE,
            c.NEW_EMBEDDINGS,
            c.PRICES,
            c.NOTES,
            c.BOOSTS,
            c.PINS,
        )
        return serve(pb_utils, requests, names, self.topk.rank, pb_utils.Logger, options=True)

"""query_tokens: QUERY -> the text encoder's input_ids and attention_mask (the first step of search and search_catalog).

Thin Triton wrapper; the logic is runtime/features.py (QueryTokens), unit-tested without Triton.
"""

import os
from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import serve
from runtime.text import QueryTokens


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.tokens = QueryTokens.load(os.path.join(args["model_repository"], args["model_version"]))

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, (c.QUERY,), self.tokens.tokens, pb_utils.Logger)

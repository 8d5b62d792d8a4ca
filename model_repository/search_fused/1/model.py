"""search_fused: the whole ``search`` call in one process, the cpu target's fused layout, on the files of its
parts (its config's ``shoprank_parts``) at its own version.

Thin Triton wrapper; the logic is runtime/fused.py, unit-tested without Triton.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

from runtime import contract as c
from runtime.backend import serve
from runtime.counters import close_all
from runtime.fused import load_in_triton


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        self.call = load_in_triton(pb_utils, args, c.SEARCH_ENSEMBLE)

    def execute(self, requests: list[Any]) -> list[Any]:
        return serve(pb_utils, requests, self.call.inputs, self.call, pb_utils.Logger, build_values=True, options=True)

    def finalize(self) -> None:
        close_all()  # send the metrics' pending counts

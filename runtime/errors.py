"""Errors of the serving logic. ``InvalidInput`` becomes INVALID_ARGUMENT at the model boundary."""

from __future__ import annotations


class InvalidInput(ValueError):
    """A request field is wrong. The message always starts with the field name."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

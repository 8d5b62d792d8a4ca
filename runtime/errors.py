"""Errors of the serving stack.

``ShoprankError`` is the one base class of every error the stack's own code raises on the server side
(the build, the served models, the publisher, the rollout checks, the online store); the client SDK has
its own tree (``shoprank_client.errors``). Each subclass also keeps the built-in base it always had
(``ValueError``, ``RuntimeError``), so existing handlers still catch it. ``InvalidInput`` becomes
INVALID_ARGUMENT at the model boundary.
"""

from __future__ import annotations


class ShoprankError(Exception):
    """Base of every server-side error raised by this project's code."""


class InvalidInput(ShoprankError, ValueError):
    """A request field is wrong. The message always starts with the field name."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

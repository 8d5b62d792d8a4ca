"""Logging for the project's command lines: INFO and up to standard error, one plain line a message.

Library code logs through module loggers (``logging.getLogger(__name__)``) and configures nothing; a
command's ``main`` calls ``configure()`` once, so a build, a publish or a benchmark shows its progress
while a test or an embedding program sees only what it asks for.
"""

from __future__ import annotations

import logging
import sys


def configure(level: int = logging.INFO) -> None:
    """Send the project's log messages at ``level`` and up to stderr as plain lines (idempotent)."""
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)

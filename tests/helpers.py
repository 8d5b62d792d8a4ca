"""Small helpers for tests that serve one-off models on a real tritonserver."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from builders.data import config, demo
from builders.data.dataset import load_shop

X_TO_Y = (
    'backend: "python"\nmax_batch_size: 0\n'
    'input [{ name: "X" data_type: TYPE_INT64 dims: [1] }]\n'
    'output [{ name: "Y" data_type: TYPE_INT64 dims: [1] }]\n'
)


def add_python_model(repo: Path, name: str, model_py: str, config: str = X_TO_Y) -> Path:
    """Write ``repo/name/1/model.py`` and ``repo/name/config.pbtxt`` (``name:`` prepended if missing)."""
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "1" / "model.py").write_text(model_py)
    if not config.lstrip().startswith("name:") and "\nname:" not in config:
        config = f'name: "{name}"\n' + config
    (repo / name / "config.pbtxt").write_text(config)
    return repo / name


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def logged(name: str = "builders") -> Iterator[list[str]]:
    """The messages the ``name`` loggers (INFO and up) write inside the block, as a list of lines."""
    lines: list[str] = []
    handler, logger = _Lines(lines), logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def shop_data(shop, folder: Path):
    """A generated ``shop`` through the data contract: written as files, loaded and validated."""

    data, _ = load_shop(config.load(demo.write_shop(shop, folder)))
    return data

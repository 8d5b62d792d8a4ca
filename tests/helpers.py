"""Small helpers for tests that serve one-off models on a real tritonserver."""

from __future__ import annotations

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


def shop_data(shop, folder: Path):
    """A generated ``shop`` through the data contract: written as files, loaded and validated."""

    data, _ = load_shop(config.load(demo.write_shop(shop, folder)))
    return data

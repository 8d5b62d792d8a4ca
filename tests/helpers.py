"""Small helpers for tests that serve one-off models on a real tritonserver."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from html.parser import HTMLParser
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


# What a marketplace seller or a crafted link could put into a title, a category, a SKU or a form field.
# Each would set ``window.__xss`` if it ever ran.
HOSTILE = (
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=1">',
    "javascript:window.__xss=1",
    "'><svg onload=window.__xss=1>",
)


class _Markup(HTMLParser):
    """Every element, attribute and text of a page, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def script_surfaces(html: str) -> list[str]:
    """Everything in ``html`` that could run script: ``<script>`` elements, event-handler attributes,
    ``javascript:`` URLs, and elements a payload would bring (``svg``, ``iframe``, ``object``, an ``img``
    that is not one of the page's own embedded PNGs). Empty for an inert page."""
    page = _Markup()
    page.feed(html)
    found = []
    for tag, attrs in page.tags:
        if tag in ("script", "svg", "iframe", "object", "embed"):
            found.append(f"<{tag}>")
        if tag == "img" and not attrs.get("src", "").startswith("data:image/png;base64,"):
            found.append(f"<img src={attrs.get('src')!r}>")
        found += [f"<{tag} {name}=...>" for name in attrs if name.startswith("on")]
        found += [
            f"<{tag} {name}={value!r}>"
            for name, value in attrs.items()
            if name in ("href", "src", "action", "formaction") and value.strip().lower().startswith("javascript:")
        ]
    return found


def shown_text(html: str) -> str:
    """The page's text as a reader sees it (entities decoded), attribute values included."""
    page = _Markup()
    page.feed(html)
    return "\n".join(page.text + [v for _, attrs in page.tags for v in attrs.values()])

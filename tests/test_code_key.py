"""Cache keys from the code: a step's key changes with the source it runs, and only with it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from builders import code_key, steps

pytestmark = pytest.mark.unit

FILES = {
    "ckdemo/__init__.py": "",
    "ckdemo/steps.py": (
        "from ckdemo import model\n"
        "from ckdemo.other import unused_here\n\n"
        "LIMIT = 3\n\n"
        "def helper(x):\n    return model.fit(x) + LIMIT\n\n"
        "def step(x):\n    return helper(x)\n\n"
        "def another(x):\n    return unused_here(x)\n"
    ),
    "ckdemo/model.py": "from ckdemo import maths\n\ndef fit(x):\n    return maths.twice(x)\n",
    "ckdemo/maths.py": "def twice(x):\n    return 2 * x\n",
    "ckdemo/other.py": "def unused_here(x):\n    return x\n",
}


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(code_key, "FIRST_PARTY", (*code_key.FIRST_PARTY, "ckdemo"))
    code_key.module_file.cache_clear()
    code_key.imports_of.cache_clear()
    steps = importlib.import_module("ckdemo.steps")

    def key() -> str:
        code_key.imports_of.cache_clear()  # a build reads each file once; here the files change between keys
        return code_key.step_key(steps.step)

    yield tmp_path, key
    for name in [m for m in sys.modules if m == "ckdemo" or m.startswith("ckdemo.")]:
        del sys.modules[name]
    code_key.module_file.cache_clear()
    code_key.imports_of.cache_clear()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_key_follows_the_modules_the_step_reaches(demo):
    root, key = demo
    first = key()
    assert first.startswith("sha256:") and key() == first  # same code, same key
    edit(root / "ckdemo/maths.py", "2 * x", "x + x")  # two imports away from the step
    assert key() != first


def test_the_key_follows_the_step_and_what_it_names_in_its_own_module(demo):
    root, key = demo
    first = key()
    edit(root / "ckdemo/steps.py", "LIMIT = 3", "LIMIT = 4")  # a constant the step's helper reads
    second = key()
    assert second != first
    edit(root / "ckdemo/steps.py", "return helper(x)", "return helper(x) - 1")
    assert key() != second


def test_code_the_step_never_reaches_leaves_the_key_alone(demo):
    root, key = demo
    first = key()
    edit(root / "ckdemo/other.py", "return x", "return -x")  # imported by steps.py, not used by step
    edit(root / "ckdemo/steps.py", "return unused_here(x)", "return unused_here(x) * 2")  # another step
    assert key() == first


def test_every_build_step_has_a_key_from_its_own_modules():
    ranker = code_key.describe(steps.ranker)
    covisit = code_key.describe(steps.covisit)
    assert {"builders.learning.ranker", "builders.learning.dcn", "builders.learning.gbdt"} <= set(ranker["modules"])
    assert "builders.learning.covisit" in covisit["modules"]
    assert "builders.learning.dcn" not in covisit["modules"]
    assert ranker["key"] != covisit["key"]

"""The house reads one way: every stage imports only the stages below it, with no cycle."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import import_graph as ig

pytestmark = pytest.mark.unit


def test_every_import_runs_downward():
    assert ig.violations(ig.stage_edges()) == []


def test_no_stage_or_module_cycle():
    assert ig.stage_cycles(ig.stage_edges()) == []
    assert ig.module_cycles() == []


def test_first_party_imports_sit_at_the_top_of_each_module():
    assert ig.lazy_first_party() == []


def test_runtime_and_the_sdk_import_nothing_first_party():
    edges = ig.stage_edges()
    assert not [pair for pair in edges if pair[0] in ("runtime", "client")]


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path):
    """The same checks on a small tree with one upward import and one cycle find both."""
    for rel, text in {
        "runtime/__init__.py": "",
        "runtime/a.py": "from builders import b\n",  # runtime must import nothing first-party
        "builders/__init__.py": "",
        "builders/b.py": "def f():\n    from builders import c\n",  # lazy, and half of a cycle
        "builders/c.py": "from builders import b\nfrom runtime import a\n",  # closes the stage cycle
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges = ig.stage_edges(tmp_path)
    assert ig.violations(edges) == ["runtime imports builders (1x)"]
    assert ig.stage_cycles(edges) == [["builders", "runtime"]]
    assert ig.module_cycles(tmp_path) == [["builders.b", "builders.c", "runtime.a"]]
    assert ig.lazy_first_party(tmp_path) == ["builders/b.py:2"]

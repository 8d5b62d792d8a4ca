"""The lint gate is live: the project's own ruff and mypy settings reject a seeded finding.

`make lint` runs on the whole tree (and `make test` runs it first); these tests show that the settings
it uses would catch what they are meant to, so a misconfigured gate cannot pass silently.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.unit


def run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_rejects_unused_import_and_unbound_loop_variable(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\n\n\ndef f(xs):\n    fs = []\n    for x in xs:\n        fs.append(lambda: x)\n    return fs\n"
    )
    res = run("ruff", "check", "--config", str(CONFIG), "--no-cache", str(bad), cwd=tmp_path)
    assert res.returncode == 1
    assert "F401" in res.stdout and "B023" in res.stdout


def test_ruff_format_check_rejects_unformatted_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = {  'a':1 }\n")
    res = run("ruff", "format", "--check", "--config", str(CONFIG), "--no-cache", str(bad), cwd=tmp_path)
    assert res.returncode == 1 and "would be reformatted" in res.stdout


def test_mypy_is_strict_on_runtime_and_light_elsewhere(tmp_path):
    """The same untyped function fails in runtime/ (strict) and passes in builders/ (lighter mode)."""
    code = "def f(x):\n    return x\n\n\ndef g(n: int) -> str:\n    return n\n"
    for package in ("runtime", "builders"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "bad.py").write_text(code)
    args = ("--config-file", str(CONFIG), "--no-incremental", "--cache-dir", str(tmp_path / ".cache"))
    strict = run("mypy", *args, "runtime/bad.py", cwd=tmp_path)
    light = run("mypy", *args, "builders/bad.py", cwd=tmp_path)
    assert strict.returncode == 1 and "no-untyped-def" in strict.stdout and "return-value" in strict.stdout
    assert light.returncode == 1 and "no-untyped-def" not in light.stdout and "return-value" in light.stdout

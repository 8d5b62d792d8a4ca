"""Cache keys from the code: a step's key holds a hash of the source it runs, so no stale artefact survives.

``step_key(fn)`` hashes the source of a step function, of the functions and constants of its own module
that it names, and of every first-party module it names, with each of those modules' first-party
imports, transitively. Editing any of them changes the key, and the step runs again at the next
build; editing a module the step never reaches changes nothing. Third-party code is covered by the
versions in the keys (``builders.build``), not here.

Everything is read with ``ast`` from the files on disk: nothing is imported, and the walk is the same
whether a module was loaded or not.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
from collections.abc import Callable
from functools import cache
from pathlib import Path

FIRST_PARTY = ("builders", "runtime", "rollout", "server", "online", "explorer", "loadtest", "shoprank_client")


def _is_first_party(module: str) -> bool:
    return module.split(".")[0] in FIRST_PARTY


@cache
def module_file(module: str) -> Path | None:
    """The source file of a first-party module, or None where ``module`` is not a module (an attribute)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imported_modules(node: ast.AST) -> set[str]:
    """First-party modules an import statement names: ``from a.b import c`` is ``a.b.c`` where that is a
    module, else ``a.b``."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if _is_first_party(a.name)}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_first_party(node.module):
        found.add(node.module)
        found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {m for m in found if module_file(m) is not None}


@cache
def imports_of(module: str) -> frozenset[str]:
    """The first-party modules ``module`` imports, anywhere in its file."""
    path = module_file(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        found |= _imported_modules(node)
    # a package's modules run its __init__ first
    parts = module.split(".")
    found |= {".".join(parts[:i]) for i in range(1, len(parts)) if module_file(".".join(parts[:i]))}
    return frozenset(found - {module})


def closure(modules: set[str]) -> set[str]:
    """``modules`` and every first-party module they import, transitively."""
    seen: set[str] = set()
    todo = [m for m in modules if module_file(m) is not None]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += imports_of(m) - seen
    return seen


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def step_sources(fn: Callable) -> tuple[list[str], set[str]]:
    """What ``fn`` runs: the source of ``fn`` and of the definitions of its module it names (transitively),
    and the first-party modules it reaches through its module's imports."""
    home = fn.__module__
    tree = ast.parse(Path(inspect.getsourcefile(fn) or "").read_text())
    defs: dict[str, ast.AST] = {}
    imported: dict[str, str] = {}  # local name -> the module it is, or the module it comes from
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                defs |= {n.id: node for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if _is_first_party(a.name):
                    imported[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_first_party(node.module):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                imported[a.asname or a.name] = sub if module_file(sub) else node.module
    sources, modules, todo, seen = [], set(), [fn.__name__], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in defs:
            sources.append(ast.unparse(defs[name]))
            todo += sorted(_names(defs[name]) - seen)
        elif name in imported:
            modules.add(imported[name])
    return sorted(set(sources)), closure(modules) - {home}


def _digest(sources: list[str], modules: set[str]) -> str:
    """``sha256:`` over ``sources`` and the files of ``modules``, each named, in a fixed order."""
    digest = hashlib.sha256()
    for text in sources:
        digest.update(text.encode() + b"\0")
    for m in sorted(modules):
        path = module_file(m)
        if path is not None:
            digest.update(f"{m}\0".encode() + path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def step_key(fn: Callable) -> str:
    """``sha256:`` over what ``fn`` runs (``step_sources``), each module's file in full."""
    return _digest(*step_sources(fn))


def describe(fn: Callable) -> dict:
    """The key and the modules behind it, for a build log or a test."""
    sources, modules = step_sources(fn)
    return {"key": _digest(sources, modules), "modules": sorted(modules), "definitions": len(sources)}


def modules_key(*modules: str) -> str:
    """``sha256:`` over the files of ``modules`` and of every first-party module they import, transitively."""
    return _digest([], closure(set(modules)))

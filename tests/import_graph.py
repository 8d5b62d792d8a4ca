"""The project's import graph, by stage and by module, read with ``ast`` (nothing is imported).

The stages and what each may import (``ALLOWED``): a stage imports itself, the stages it lists, and
nothing else. ``runtime`` (the code the served models run) and the client SDK stand at the bottom and
import nothing first-party; ``rollout`` reads a repository's golden set; ``builders`` write
repositories; ``server`` runs and publishes them; ``online`` feeds the online store; the tools on top
(``explorer``, ``loadtest``, ``benchmarks``, ``tests``) may use what stands below them.

    python -m tests.import_graph            # the stage table: stage -> stages it imports, with counts
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = (
    "runtime",
    "client",
    "rollout",
    "builders",
    "server",
    "retrain",
    "online",
    "model_repository",
    "explorer",
    "loadtest",
    "benchmarks",
    "scripts",
    "tests",
)
ALLOWED: dict[str, set[str]] = {
    "runtime": set(),
    "client": set(),
    "rollout": {"runtime"},
    "builders": {"runtime", "client", "rollout"},
    "server": {"runtime"},
    "retrain": {"runtime", "client", "rollout", "builders", "server"},  # the nightly loop: build, gate, publish
    "online": {"runtime", "client"},
    "model_repository": {"runtime"},
    "explorer": {"runtime", "client", "builders"},
    "loadtest": {"runtime", "client", "builders", "server", "online"},
    "benchmarks": {"runtime", "client", "rollout", "builders", "server", "retrain", "online", "loadtest"},
    "scripts": {"runtime", "client", "rollout", "builders", "server", "retrain", "online", "loadtest", "benchmarks"},
    "tests": set(ORDER) - {"tests"},
}
PACKAGE_STAGE = {"shoprank_client": "client"}  # the SDK's import name lives in client/
SKIP = {".venv", "build", ".git", "__pycache__", "docs", "helm", "node_modules"}


def stage_of(module: str) -> str | None:
    top = module.split(".")[0]
    top = PACKAGE_STAGE.get(top, top)
    return top if top in ALLOWED else None


def source_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.py")
        if not SKIP & set(p.relative_to(root).parts) and p.relative_to(root).parts[0] in ALLOWED
    )


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == "client" and len(parts) > 1 and parts[1] == "shoprank_client":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@dataclass(frozen=True)
class Statement:
    """One absolute import statement: the modules it names (``import a, b``; ``from a import``), what it takes
    from them (``a.x``, which may itself be a module), its line, and whether it sits at the module's top."""

    modules: list[str]
    members: list[str]
    line: int
    at_top: bool


def statements(path: Path) -> list[Statement]:
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append(Statement([a.name for a in node.names], [], node.lineno, id(node) in top))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            members = [f"{node.module}.{a.name}" for a in node.names]
            found.append(Statement([node.module], members, node.lineno, id(node) in top))
    return found


def stage_edges(root: Path = ROOT) -> Counter:
    """``(importing stage, imported stage) -> number of import statements`` across stages."""
    edges: Counter = Counter()
    for path in source_files(root):
        here = path.relative_to(root).parts[0]
        for st in statements(path):
            for name in st.modules:
                there = stage_of(name)
                if there is not None and there != here:
                    edges[(here, there)] += 1
    return edges


def lazy_first_party(root: Path = ROOT) -> list[str]:
    """``file:line`` of every first-party import inside a function or class, outside the tests."""
    return [
        f"{path.relative_to(root)}:{st.line}"
        for path in source_files(root)
        if path.relative_to(root).parts[0] != "tests"
        for st in statements(path)
        if not st.at_top and any(stage_of(n) for n in st.modules)
    ]


def module_cycles(root: Path = ROOT) -> list[list[str]]:
    """The import cycles among modules (strongly connected components of more than one module), following
    every import, at the top of a module or inside a function."""
    files = {module_name(p, root): p for p in source_files(root)}

    def resolve(name: str) -> str | None:
        while name:
            if name in files:
                return name
            name = name.rpartition(".")[0]
        return None

    graph = {
        m: {r for st in statements(p) for name in st.modules + st.members if (r := resolve(name)) and r != m}
        for m, p in files.items()
    }
    return strongly_connected(graph)


def stage_cycles(edges: Counter) -> list[list[str]]:
    """The cycles among stages in ``edges``."""
    graph: dict[str, set[str]] = {stage: set() for stage in ORDER}
    for a, b in edges:
        graph[a].add(b)
    return strongly_connected(graph)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return cycles


def violations(edges: Counter) -> list[str]:
    return [f"{a} imports {b} ({n}x)" for (a, b), n in sorted(edges.items()) if b not in ALLOWED[a]]


def table(edges: Counter) -> str:
    lines = ["| stage | imports (import statements) |", "|---|---|"]
    for stage in ORDER:
        out = [(b, n) for (a, b), n in edges.items() if a == stage]
        cells = ", ".join(f"{b} ({n})" for b, n in sorted(out, key=lambda x: ORDER.index(x[0])))
        lines.append(f"| {stage} | {cells or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout (default: this one)")
    args = parser.parse_args(argv)
    edges = stage_edges(args.root)
    print(table(edges))
    bad, cycles, lazy = violations(edges), module_cycles(args.root), lazy_first_party(args.root)
    print(f"\nupward or sideways imports: {len(bad)}" + "".join(f"\n  {b}" for b in bad))
    print(f"stage cycles: {stage_cycles(edges)}")
    print(f"module import cycles: {len(cycles)}" + "".join(f"\n  {' -> '.join(c)}" for c in cycles))
    print(f"first-party imports inside functions (outside tests): {len(lazy)}")
    return 1 if bad or cycles or stage_cycles(edges) else 0


if __name__ == "__main__":
    raise SystemExit(main())

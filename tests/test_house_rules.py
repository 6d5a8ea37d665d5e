"""The rules of the house, read from the source: imports point one way (frontend -> training -> annotation),
the engine imports no Django, and no two modules of ours import each other, directly or around a circle.

Every import counts, at the top of a module and inside a function alike: an import hidden in a function
still ties the two modules together.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("annotation", "training", "frontend", "config")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for app in APPS for path in sorted((ROOT / app).rglob("*.py"))}


MODULES = _modules()


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``module``; ``from x import y`` names x.y when y is a module."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno))
    return found


def _ours(name: str) -> str | None:
    """The module of ours that an import loads (the longest known prefix), or None for a library."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> dict[str, dict[str, int]]:
    edges: dict[str, dict[str, int]] = {}
    for module in MODULES:
        edges[module] = {}
        for name, line in imports_of(module):
            target = _ours(name)
            if target and target != module:
                edges[module].setdefault(target, line)
    return edges


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (who, what it may not import, why)
RULES = [
    ("annotation", ("training", "frontend"), "annotation knows neither training nor the frontend"),
    ("training", ("frontend",), "training knows no frontend"),
    ("training.engine", ("django", "annotation", "frontend", "training"), "the engine imports no Django and nothing "
                                                                          "of the app outside training.engine"),
]


@pytest.mark.parametrize("who,forbidden,why", RULES, ids=[rule[0] for rule in RULES])
def test_imports_point_one_way(who, forbidden, why):
    broken = []
    for module, path in MODULES.items():
        if not _within(module, who):
            continue
        for name, line in imports_of(module):
            if who == "training.engine" and _within(name, "training.engine"):
                continue
            if any(_within(name, package) for package in forbidden):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not broken, f"{why}:\n" + "\n".join(broken)


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def tangles(edges: dict[str, dict[str, int]]) -> list[set[str]]:
    """The groups of modules that reach each other through imports (strongly connected, two or more)."""
    reach = {}
    for start in edges:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    groups = []
    for module in sorted(edges):
        group = {module} | {other for other in reach[module] if module in reach.get(other, ())}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups


def test_no_import_cycle():
    edges = graph()
    report = []
    for group in tangles(edges):
        inside = {module: {t: line for t, line in edges[module].items() if t in group} for module in group}
        cycle = find_cycle(inside)
        report.append(f"{len(group)} modules import each other: {', '.join(sorted(group))}; for example")
        report += [f"  {a} -> {b} ({MODULES[a].relative_to(ROOT)}:{edges[a][b]})" for a, b in zip(cycle, cycle[1:])]
    assert not report, "import cycles:\n" + "\n".join(report)


def test_the_cycle_finder_reports_a_cycle():
    edges = {"a": {"b": 1}, "b": {"c": 3}, "c": {"a": 7}, "d": {"a": 1}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None
    assert tangles(edges) == [{"a", "b", "c"}]


def test_function_level_imports_are_seen():
    """The walk reads imports inside functions too (the ones that used to hide a cycle)."""
    inner = [module for module in MODULES
             if any(isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0
                    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))))]
    assert inner, "expected at least one function-level import somewhere (e.g. a lazy heavy library)"
    module = inner[0]
    assert imports_of(module)


def test_services_raise_one_error_type():
    """Annotation and training raise ``annotation.errors.ServiceError`` (``Invalid`` for bad input, naming its
    field), never Django's ValidationError: callers catch one type, and one mapping answers it (API and pages).
    Model field validators are the exception: Django's own validation calls them."""
    raised = []
    for module, path in MODULES.items():
        if not (_within(module, "annotation") or _within(module, "training")) or ".migrations." in module:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                # a bare ValidationError is Django's here; DRF's is written serializers.ValidationError (a field's)
                if getattr(call, "id", "") == "ValidationError" and not module.endswith(".models"):
                    raised.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not raised, "Django ValidationError raised by a service (raise Invalid naming the field):\n" + "\n".join(raised)

"""The shape of the code (issue 13): alertd's imports form a DAG, between modules and between
its packages (timeinterval <- config <- dispatch / inhibit / silence <- notify <- daemon), with
function-local imports counted too - a cycle hidden in a function is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ALERTD = Path(__file__).resolve().parent.parent / "alertd"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ALERTD.rglob("*.py"):
        parts = list(path.relative_to(ALERTD.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every alertd module `name` imports, anywhere in it, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if m == "alertd" or m.startswith("alertd.")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(m: str) -> str:
        while m and m not in modules:
            m = m.rpartition(".")[0]
        return m

    return {name: {resolve(m) for m in _imports(name, path)} - {name, ""} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        own = _package(module)
        packages.setdefault(own, set()).update(p for p in map(_package, deps) if p != own)
    assert _cycles(packages) == []


def test_the_layers_point_one_way() -> None:
    """The routing layers of the issue, each importing only those before it."""
    graph = _graph()
    order = ["alertd.timeinterval", "alertd.config", "alertd.inhibit", "alertd.notify", "alertd.daemon"]
    for i, layer in enumerate(order):
        later = order[i + 1 :]
        for module, deps in graph.items():
            if _package(module) == layer:
                bad = sorted(d for d in deps if _package(d) in later)
                assert not bad, f"{module} imports {bad}, which build on it"


# Issue 13: small modules. What is still over the limits, named so that this test passes now and
# fails once an entry fits (then it comes off the list): the list only shrinks.
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250
STILL_TOO_LONG: set[str] = set()


def _too_long() -> set[str]:
    """Modules over MAX_MODULE_LINES lines and classes (nested ones too) over MAX_CLASS_LINES."""
    found = set()
    for path in ALERTD.rglob("*.py"):
        name = path.relative_to(ALERTD.parent).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.add(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_CLASS_LINES:
                found.add(f"{name}:{node.name}")
    return found


def test_no_module_over_400_lines_and_no_class_over_250() -> None:
    assert sorted(_too_long() - STILL_TOO_LONG) == []


def test_what_is_allowed_to_be_too_long_still_is() -> None:
    """Split one, take it off STILL_TOO_LONG: the allowance does not outlive the split."""
    assert sorted(STILL_TOO_LONG - _too_long()) == []

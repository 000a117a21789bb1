"""The package's layers, read from its import statements (issue 27, item 3).

Every `import` and `from ... import` of warp_utils, at module level or inside a function, is an
edge from the importing module to the imported one. The wings sit in one order, from low to high:

    config, execution, core, store, inputs, evaluate, course, pipeline, report, cli

A module may import its own wing and the layers below it; nothing imports upwards, and no chain of
imports comes back to where it started (a circle, even a function-local one, is a test failure)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "warp_utils"
ORDER = ["config", "execution", "core", "store", "inputs", "evaluate", "course", "pipeline", "report", "cli"]
WINGS = {"__main__": "cli", "lazy": "config", "text_report": "report"}  # a top-level module's layer is its own name, but for these


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """warp_utils.core.rl -> core; warp_utils.pipeline -> pipeline; warp_utils -> '' (the package)."""
    parts = module.split(".")
    return WINGS.get(parts[1], parts[1]) if len(parts) > 1 else ""


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: modules it imports} inside `root`'s package, from every import statement
    (function-local ones included). `from .x import name` names the submodule x.name when there
    is one, else x; a wing's lazily re-exported names (its _EXPORTS table) are edges too."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else source)
            elif (isinstance(node, ast.Assign) and path.name == "__init__.py"
                  and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets)):
                targets |= {f"{name}.{value}" for value in ast.literal_eval(node.value).values()}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            low, high = layer(source), layer(target)
            if low and high and ORDER.index(high) > ORDER.index(low):
                bad.append(f"{source} ({low}) imports {target} ({high})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_lives_in_a_known_layer():
    assert {layer(m) for m in import_graph()} - {""} <= set(ORDER)


def test_no_import_runs_against_the_layer_order():
    assert upward_imports(import_graph()) == []


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_graph_sees_function_local_imports_and_circles(tmp_path):
    """The checks on a made-up package: a function-local import upwards and a circle are found."""
    root = tmp_path / "warp_utils"
    (root / "core").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "core" / "__init__.py").write_text("")
    (root / "config.py").write_text("def f():\n    from .core import a  # upwards\n")
    (root / "core" / "a.py").write_text("from . import b\n")
    (root / "core" / "b.py").write_text("def g():\n    from .a import x\n")
    graph = import_graph(root)
    assert graph["warp_utils.config"] == {"warp_utils.core.a"}
    assert upward_imports(graph) == ["warp_utils.config (config) imports warp_utils.core.a (core)"]
    assert circles(graph) == [["warp_utils.core.a", "warp_utils.core.b"]]

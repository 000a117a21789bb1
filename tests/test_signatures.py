"""Bundles, not spreads (issue 27, item 4): no function of warp_utils takes more than 7 parameters
(keyword-only ones included; `self`/`cls` not counted). A function that needs more takes the
bundle that already exists (Components, EvalContext, StepContext, ToyConfig, WarpConfig)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "warp_utils"
LIMIT = 7


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [f"*{args.vararg.arg}"] if args.vararg else []
    names += [f"**{args.kwarg.arg}"] if args.kwarg else []
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def test_no_function_takes_more_than_seven_parameters():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and len(parameters(node)) > LIMIT:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({', '.join(parameters(node))})")
    assert long == []


def test_the_count_sees_keyword_only_parameters_and_not_self():
    tree = ast.parse("class A:\n    def f(self, a, b, *, c, d=1, **rest):\n        pass\n")
    method = tree.body[0].body[0]
    assert parameters(method) == ["a", "b", "c", "d", "**rest"]

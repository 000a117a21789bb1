"""Phase timing without timers in the product: rl_step's phases are named (execution.phases), and
only a caller that asks (a benchmark) times them."""

import ast
import contextlib
import copy
from pathlib import Path

import torch
from test_warp import components, config, setup  # noqa: F401 (setup: the fixture)

from warp_utils.core import rl
from warp_utils.execution.phases import phase, timed_phases

PACKAGE = Path(__file__).resolve().parents[1] / "warp_utils"


def test_no_function_of_the_package_takes_a_timer():
    """Only execution.phases.timed_phases does: the one place a benchmark hands its timer."""
    for path in set(PACKAGE.rglob("*.py")) - {PACKAGE / "execution" / "phases.py"}:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                assert "timer" not in names, f"{path.name}: {node.name}"


def test_the_phases_of_an_rl_step_are_timed_only_inside_timed_phases(setup):  # noqa: F811
    policy, tokenizer, prompts = setup
    seen = []

    @contextlib.contextmanager
    def timer(name):
        seen.append(name)
        yield

    trained, anchor = copy.deepcopy(policy), copy.deepcopy(policy).requires_grad_(False)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    parts = components(policy, tokenizer, prompts)
    with timed_phases(timer):
        rl.rl_step(trained, anchor, optimizer, prompts[:2], parts, config())
    assert seen == ["generation", "reward", "policy forward", "reference forward", "log-softmax + KL",
                    "anchor forward", "backward", "optimizer", "EMA"]
    rl.rl_step(trained, anchor, optimizer, prompts[:2], parts, config())
    with phase("outside"):
        pass
    assert len(seen) == 9  # no timer outside the block


def test_an_rl_step_leaves_no_gradient_for_the_next_forward_to_hold(setup):  # noqa: F811
    """The next step's forward is where the activations peak: stale gradients there cost a model's
    worth of memory. The step frees them once Adam has used them, and still moves the weights."""
    policy, tokenizer, prompts = setup
    trained, anchor = copy.deepcopy(policy), copy.deepcopy(policy).requires_grad_(False)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in trained.parameters()]
    rl.rl_step(trained, anchor, optimizer, prompts[:2], components(policy, tokenizer, prompts), config())
    assert all(p.grad is None for p in trained.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(trained.parameters(), before))

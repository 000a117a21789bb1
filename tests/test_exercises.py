"""The graders of warp_utils.exercises: each accepts its solution (and the package's own
implementation), rejects every known wrong version in warp_utils.bugs, and treats an unsolved
stub as unsolved, falling back to the reference."""

import pytest
import torch

from warp_utils import bugs, exercise_cases, exercises, solutions

NAMES = sorted(exercises.EXERCISES)
KNOWN_BUGS = [(name, bug) for name in NAMES for bug in bugs.BUGS.get(name, {})]


def test_every_exercise_has_a_solution_and_at_least_one_known_bug():
    assert len(NAMES) >= 8
    for name in NAMES:
        assert callable(getattr(solutions, name)), name
        assert bugs.BUGS.get(name), f"{name} has no known wrong version to reject"


@pytest.mark.parametrize("name", NAMES)
def test_the_grader_accepts_the_solution(name):
    status, message = exercises.grade(name, getattr(solutions, name))
    assert status == "correct", message


@pytest.mark.parametrize("name", NAMES)
def test_the_grader_accepts_its_own_oracle(name):
    status, message = exercises.grade(name, exercises.EXERCISES[name].oracle)
    assert status == "correct", message


@pytest.mark.parametrize("name, bug", KNOWN_BUGS)
def test_the_grader_rejects_each_known_bug(name, bug):
    status, message = exercises.grade(name, bugs.BUGS[name][bug])
    assert status == "wrong", f"{name}: the bug '{bug}' passed the grader"
    assert "Hint" in message


def test_known_bugs_really_are_wrong_versions_of_the_solution():
    # the rejection comes from the outputs, not from a crash: each bug runs on the cases
    for name, bug in KNOWN_BUGS:
        _, message = exercises.grade(name, bugs.BUGS[name][bug])
        assert "raised" not in message, (name, bug, message)


@pytest.mark.parametrize("stub", ["raise", "none"])
def test_an_unsolved_exercise_falls_back_to_the_reference(stub, capsys):
    def liti(theta_init, theta_merged, eta):
        if stub == "raise":
            raise NotImplementedError

    assert exercises.grade("liti", liti)[0] == "unsolved"
    fallback = exercises.check("liti", liti)
    assert "not solved yet" in capsys.readouterr().out
    assert exercises.grade("liti", fallback)[0] == "correct"


def test_check_returns_the_learners_function_when_right_and_the_reference_when_wrong(capsys):
    assert exercises.check("ema", solutions.ema) is solutions.ema
    assert "✓ ema" in capsys.readouterr().out
    fallback = exercises.check("ema", bugs.ema_swapped)
    out = capsys.readouterr().out
    assert "✗ ema" in out and "Hint" in out
    assert fallback is exercises.EXERCISES["ema"].oracle


def test_a_crashing_answer_is_reported_not_raised():
    def broken(theta_ema, theta, mu):
        return theta_ema["no such key"]

    status, message = exercises.grade("ema", broken)
    assert status == "wrong" and "KeyError" in message


def test_a_slightly_wrong_answer_is_rejected():
    def ema_off(theta_ema, theta, mu):
        return {k: v + 1e-6 for k, v in solutions.ema(theta_ema, theta, mu).items()}

    assert exercises.grade("ema", ema_off)[0] == "wrong"


def test_solution_and_spot_the_bug_show_source(capsys):
    assert "def liti" in exercises.solution("liti")
    with pytest.raises(KeyError, match="no exercise"):
        exercises.solution("nope")
    assert exercises.spot_the_bug("warp_merge", "SLERP of the EMA models") == "wrong"
    out = capsys.readouterr().out
    assert "SLERP of the EMA models" in out and "REJECTED" in out


def test_r_beta_grader_needs_the_detach_and_the_loss_grader_sees_it_in_the_gradient():
    # the undetached loss has the right value: only its gradient gives it away
    _, logprobs, rewards, log_ratio = exercise_cases.loss_inputs(0)
    right = solutions.reinforce_loss(logprobs, rewards, log_ratio, 0.1)
    wrong = bugs.reinforce_loss_kl_not_detached(logprobs, rewards, log_ratio, 0.1)
    assert torch.allclose(right, wrong)
    assert exercises.grade("reinforce_loss", bugs.reinforce_loss_kl_not_detached)[1].startswith(
        "beta = 0.1: gradient")


def test_the_notebooks_exercises_are_graded_and_have_a_hidden_solution_cell():
    import json
    import pathlib
    import re

    checked, hidden = [], []
    for path in sorted(pathlib.Path(__file__).parent.parent.glob("notebooks/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            checked += re.findall(r'exercises\.check\("(\w+)"', source)
            if re.search(r'exercises\.solution\("(\w+)"\)', source):
                meta = cell["metadata"].get("jupyter", {})
                assert meta.get("source_hidden") and meta.get("outputs_hidden"), (path.name, source)
                hidden += re.findall(r'exercises\.solution\("(\w+)"\)', source)
    assert len(checked) >= 8 and len(set(checked)) == len(checked)
    assert set(checked) <= set(NAMES) and sorted(hidden) == sorted(checked)

"""The graders of warp_utils.course.exercises: each accepts its solution (and the package's own
implementation), rejects every known wrong version in warp_utils.course.bugs, and treats an unsolved
stub as unsolved, falling back to the reference."""

import math

import pytest
import torch

from warp_utils.core.weights import liti, slerp
from warp_utils.course import bugs, exercise_cases, exercises, solutions, toy

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
    def next_init(theta_init, thetas, eta):
        if stub == "raise":
            raise NotImplementedError

    assert exercises.grade("warp_merge", next_init)[0] == "unsolved"
    fallback = exercises.check("warp_merge", next_init)
    assert "not solved yet" in capsys.readouterr().out
    assert exercises.grade("warp_merge", fallback)[0] == "correct"


def test_check_returns_the_learners_function_when_right_and_the_reference_when_wrong(capsys):
    assert exercises.check("ema_anchor", solutions.ema_anchor) is solutions.ema_anchor
    assert "✓ ema_anchor" in capsys.readouterr().out
    fallback = exercises.check("ema_anchor", bugs.ema_anchor_swapped)
    out = capsys.readouterr().out
    assert "✗ ema_anchor" in out and "Hint" in out
    assert fallback is exercises.EXERCISES["ema_anchor"].oracle


def test_a_crashing_answer_is_reported_not_raised():
    def broken(theta_init, trajectory, mu):
        return theta_init["no such key"]

    status, message = exercises.grade("ema_anchor", broken)
    assert status == "wrong" and "KeyError" in message


def test_a_slightly_wrong_answer_is_rejected():
    def ema_off(theta_init, trajectory, mu):
        return {k: v + 1e-6 for k, v in solutions.ema_anchor(theta_init, trajectory, mu).items()}

    assert exercises.grade("ema_anchor", ema_off)[0] == "wrong"


def test_solution_and_spot_the_bug_show_source(capsys):
    assert "def warp_merge" in exercises.solution("warp_merge")
    with pytest.raises(KeyError, match="no exercise"):
        exercises.solution("nope")
    assert exercises.spot_the_bug("warp_loop", "SLERP of the EMA models") == "wrong"
    out = capsys.readouterr().out
    assert "SLERP of the EMA models" in out and "REJECTED" in out


# ----------------------------------------------------------------------------- pair accuracy


def test_pair_accuracy_counts_a_tie_as_half():
    constant = torch.zeros(6)
    assert solutions.pair_accuracy(constant, constant) == 0.5  # no preference: chance, not 0 or 1
    r_c, r_r = torch.tensor([2.0, 1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 1.0])
    assert solutions.pair_accuracy(r_c, r_r) == exercise_cases.accuracy_oracle(r_c, r_r) == (1 + 0.5 + 0 + 0.5) / 4
    assert bugs.pair_accuracy_ties_are_errors(constant, constant) == 0.0  # what the grader now rejects


# ----------------------------------------------------------------------------- warp_merge: inputs only


def test_warp_merge_hands_the_learner_inputs_only():
    seen = []

    def spy(theta_init, thetas, eta):
        seen.append((theta_init, thetas, eta))
        return solutions.warp_merge(theta_init, thetas, eta)

    assert exercises.grade("warp_merge", spy)[0] == "correct"
    assert len(seen) == len(exercise_cases.merge_inputs()) >= 3
    for theta_init, thetas, eta in seen:
        answer = exercise_cases.merge_oracle(theta_init, thetas, eta)
        merged = slerp(theta_init, thetas)
        for given in (theta_init, *thetas):  # neither the answer nor the merge is among the inputs
            assert not exercises._same(given, answer) and not exercises._same(given, merged)


def test_warp_merge_rejects_the_stored_answer_and_a_liti_that_skips_slerp():
    # the two answers that passed when the learner was handed a toy.warp record: the record's
    # own theta_next, and LITI towards its stored merge (no SLERP written). A record in scope
    # (the notebook's) is all a cheat can use now.
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=2)
    record = toy.warp(theta_sft, reward, toy.ToyConfig(I=1, M=2, T=20, eta=0.5, seed=0))[0]

    def stored_answer(theta_init, thetas, eta):
        return record["theta_next"]

    def liti_of_the_stored_merge(theta_init, thetas, eta):
        return liti(theta_init, record["theta_merged"], eta)

    for cheat in (stored_answer, liti_of_the_stored_merge):
        assert exercises.grade("warp_merge", cheat)[0] == "wrong", cheat.__name__
        # wrong from the outputs, not only by crashing on the cases that are not toy runs
        toy_cases = [case for case in exercise_cases.merge_inputs() if set(case[0]) == {"table", "bias"}]
        outputs = [cheat(*case) for case in toy_cases]
        assert len(toy_cases) >= 2
        assert not all(exercises._same(got, exercise_cases.merge_oracle(*case))
                       for got, case in zip(outputs, toy_cases)), cheat.__name__
    # and the old signature, which took the record, no longer fits the grader's call
    assert exercises.grade("warp_merge", lambda record, eta: record["theta_next"])[0] == "wrong"


def test_warp_merge_and_loop_oracles_are_what_toy_warp_computes():
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=2)
    history = toy.warp(theta_sft, reward, toy.ToyConfig(I=2, M=3, T=20, eta=0.3, seed=1))
    for record in history:
        got = exercise_cases.merge_oracle(record["theta_init"], record["thetas"], 0.3)
        assert all(torch.equal(got[k], record["theta_next"][k]) for k in theta_sft)
    run = toy.make_run(reward, T=20, seed=1)
    final = exercise_cases.loop_oracle(theta_sft, run, 2, 3, 0.3)
    assert all(torch.equal(final[k], history[-1]["theta_next"][k]) for k in theta_sft)


# ----------------------------------------------------------------------------- the new graders


def test_policy_gradient_tolerance_separates_the_reference_from_every_bug():
    # the means that the grader compares: the reference's are within the tolerance with room to
    # spare, every known bug's is outside it by a margin (deterministic: seeded samples)
    expected = exercise_cases.pg_expected()
    atol = exercises.EXERCISES["policy_gradient"].atol

    def worst(fn):
        return max(float((got - exact).abs().max()) for (_, got), (_, exact) in
                   zip(exercise_cases.pg_cases(fn), expected))

    assert worst(exercise_cases.pg_oracle) < 0.7 * atol
    for bug in bugs.BUGS["policy_gradient"].values():
        assert worst(bug) > 1.5 * atol, bug.__name__


def test_policy_gradient_expected_is_the_autograd_gradient_of_the_exact_reward():
    logits, reward = exercise_cases.pg_bandit()
    leaf = logits.clone().requires_grad_(True)
    (torch.softmax(leaf, -1) * reward).sum().backward()
    torch.testing.assert_close(exercise_cases.exact_reward_gradient(logits, reward), leaf.grad,
                               atol=1e-15, rtol=0)


def test_anchor_point_oracle_is_the_toys_training_with_mu_zero_and_mu_positive():
    theta_sft, reward = exercise_cases.anchor_bandit()
    for mu in (0.0, 0.05):
        generator = torch.Generator().manual_seed(3)
        theta, _ = toy.rl_run(theta_sft, reward, toy.ToyConfig(T=30, mu=mu, beta=0.1, lr=4.0, batch_size=8), generator)
        point = exercise_cases.anchor_oracle(theta_sft, reward, exercise_cases.anchor_step(reward, 3), mu, 30)
        assert point == (toy.kl(theta, theta_sft), toy.expected_reward(theta, reward))
    # the two anchors really end in different places (else the exercise could not tell them apart)
    sft_anchor = exercise_cases.anchor_oracle(theta_sft, reward, exercise_cases.anchor_step(reward, 3), 0.0, 30)
    ema_anchor = exercise_cases.anchor_oracle(theta_sft, reward, exercise_cases.anchor_step(reward, 3), 0.05, 30)
    assert abs(sft_anchor[0] - ema_anchor[0]) > 1e-3


def test_objective_oracle_has_the_closed_form_value_at_the_optimum_and_the_infinite_kl():
    theta_sft, reward = toy.make_bandit(num_prompts=4, num_tokens=6, seed=3)
    pi_sft = toy.probs(theta_sft)
    pi_star = toy.probs(toy.optimal_policy(theta_sft, reward, 0.2))
    value = float(exercise_cases.objective_oracle(pi_star, pi_sft, reward, 0.2))
    assert value == pytest.approx(toy.optimal_value(theta_sft, reward, 0.2), abs=1e-12)
    *_, pi, _, _, sft_zero = exercise_cases.objective_inputs()
    assert float(exercise_cases.objective_oracle(pi, sft_zero, reward, 0.1)) == -math.inf


def test_the_loss_grader_sees_an_undetached_penalty_in_the_gradient():
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

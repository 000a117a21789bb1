"""Graders of the notebooks' exercises (Karpathy's `cmp` idea): the learner's function is run on
a few fixed cases, and its outputs are compared with the package's own implementation (the
oracle: `weights`, `toy`, `rl`, `evaluation`) or with a float64 closed form.

    my_merge = exercises.check("warp_merge", next_init)   # prints ✓ / ✗ / "not solved yet"
    exercises.solution("warp_merge")                      # a solution's source (warp_utils.course.solutions)

`check` returns the learner's function when it is right, else the reference (same signature), so
the rest of the notebook runs either way. A function that raises NotImplementedError or returns
None counts as not solved yet. `grade` is the quiet version, used by the tests, which prove that
each grader rejects the known wrong versions of `warp_utils.course.bugs` and accepts the solutions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core import rl
from . import bugs, solutions
from ..evaluate.evaluation import distinct_n
from .exercise_cases import (
    Unsolved,
    accuracy_cases,
    accuracy_oracle,
    anchor_cases,
    anchor_oracle,
    bt_cases,
    bt_oracle,
    distinct_cases,
    ema_anchor_cases,
    ema_anchor_oracle,
    loop_cases,
    loop_oracle,
    loss_cases,
    loss_oracle,
    mask_cases,
    merge_cases,
    merge_oracle,
    objective_cases,
    objective_oracle,
    optimal_cases,
    optimal_oracle,
    pg_cases,
    pg_expected,
    pg_oracle,
    sequence_kl_cases,
    sequence_kl_oracle,
    slerp_cases,
)
from ..core.weights import slerp

# The policy-gradient grader compares means of 4000 sampled estimates with the exact gradient
# (entries 0.007-0.08): the tolerance is about 3 standard errors of the noisiest mean (0.0019), so
# that a sign flip, a gradient of pi instead of log pi, a missing -pi, or a baseline that includes
# the sample itself (a bias of 1/N of the gradient: 0.011 at N = 8) all fall outside it.
PG_ATOL = 6e-3


@dataclass(frozen=True)
class Exercise:
    """oracle: the reference, with the learner's signature; cases: fn -> [(what, output)], the
    outputs to compare (tensors, floats, bools or state dicts); hint: printed on a mismatch.
    expected: () -> [(what, output)] when the outputs must match something else than the oracle's
    (the exact gradient that sampled estimates approach); atol, rtol: the comparison's tolerance."""

    oracle: Callable
    cases: Callable[[Callable], list]
    hint: str
    expected: Callable[[], list] | None = None
    atol: float = 1e-9
    rtol: float = 1e-6


EXERCISES = {
    "bradley_terry_loss": Exercise(bt_oracle, bt_cases,
                                   "-mean log sigma(r_c - r_r); log(sigmoid(.)) is -inf for large gaps: "
                                   "use torch.nn.functional.logsigmoid"),
    "pair_accuracy": Exercise(accuracy_oracle, accuracy_cases,
                              "a win counts 1, a tie 1/2 (no preference: a coin flip), a loss 0"),
    "objective": Exercise(objective_oracle, objective_cases,
                          "mean over prompts of sum_y pi r - beta sum_y pi (log pi - log pi_sft); a "
                          "term with pi = 0 is 0 (torch.where, not 0 * -inf), one with pi > 0 = pi_sft "
                          "is +inf"),
    "optimal_policy": Exercise(optimal_oracle, optimal_cases,
                               "pi_sft * exp(r / beta), normalised per prompt; exp(r / beta) overflows "
                               "for small beta: softmax(log pi_sft + r / beta)"),
    "policy_gradient": Exercise(pg_oracle, pg_cases,
                                "mean over the batch of (r(y_i) - b_i) * (onehot(y_i) - pi), with b_i the "
                                "mean reward of the other samples (baseline) or 0; ascent, not descent",
                                expected=pg_expected, atol=PG_ATOL, rtol=0.0),
    "ema_anchor": Exercise(ema_anchor_oracle, ema_anchor_cases,
                           "(1 - mu)^t theta_init + sum over ages k of mu (1 - mu)^k times the policy of "
                           "k steps ago (trajectory[-1] has age 0), in new tensors"),
    "anchor_point": Exercise(anchor_oracle, anchor_cases,
                             "theta = step(theta, anchor), then anchor = ema(anchor, theta, mu), T times; "
                             "return (toy.kl(theta, theta_sft), toy.expected_reward(theta, reward))"),
    "slerp": Exercise(lambda init, t1, t2, lam=0.5: slerp(init, [t1, t2], lam), slerp_cases,
                      "work on task vectors theta_m - theta_init, one angle per tensor; with no angle "
                      "(collinear or zero) fall back to LERP, and add theta_init back in every branch"),
    "warp_merge": Exercise(merge_oracle, merge_cases,
                           "theta_slerp = slerp(theta_init, thetas), then (1 - eta) * theta_init + "
                           "eta * theta_slerp in a new dict"),
    "warp_loop": Exercise(loop_oracle, loop_cases,
                          "for i: thetas = [run(i, m, theta_init)[0] for m in range(M)] (from theta_init, "
                          "the policies, not their anchors); theta_init = liti(theta_init, "
                          "slerp(theta_init, thetas), eta)"),
    "reinforce_loss": Exercise(loss_oracle, loss_cases,
                               "minus the mean of (r_beta - mean r_beta) * logprobs, with r_beta "
                               "detached (log_ratio comes with the policy's graph)"),
    "response_mask": Exercise(rl.response_mask_from_completion, mask_cases,
                              "1 up to and including the first EOS, 0 after it (cumsum of is_eos)"),
    "sequence_kl": Exercise(sequence_kl_oracle, sequence_kl_cases,
                            "sum_y p (log p - log q) per row t, kept where response_mask[:, 1:] is 1 "
                            "(row t predicts token t + 1)"),
    "distinct_n": Exercise(distinct_n, distinct_cases,
                           "n-grams of each text's words, never across two texts; unique / total"),
}


# ----------------------------------------------------------------------------- grading


def _flat(value) -> torch.Tensor | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return torch.cat([torch.as_tensor(value[k]).double().flatten() for k in sorted(value)])
    return torch.as_tensor(value).detach().double().flatten()


def _same(got, expected, atol=1e-9, rtol=1e-6) -> bool:
    got, expected = _flat(got), _flat(expected)
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=rtol, atol=atol)


def _show(value) -> str:
    flat = _flat(value)
    if isinstance(flat, bool):
        return str(flat)
    text = ", ".join(f"{v:.4g}" for v in flat[:4].tolist())
    return f"[{text}{', ...' if flat.numel() > 4 else ''}]"


def _difference(got, expected, atol=1e-9, rtol=1e-6) -> str:
    """Where the outputs first differ, so that a mismatch late in a tensor is visible."""
    flat_got, flat_expected = _flat(got), _flat(expected)
    if isinstance(flat_got, bool) or isinstance(flat_expected, bool):
        return f"got {flat_got}, expected {flat_expected}"
    if flat_got.shape != flat_expected.shape:
        return f"got {flat_got.numel()} values, expected {flat_expected.numel()}"
    close = torch.isclose(flat_got, flat_expected, rtol=rtol, atol=atol)
    first = int((~close).nonzero()[0])
    return (f"got {_show(got)}, expected {_show(expected)}; first difference at flat index {first}: "
            f"{flat_got[first].item():.6g} instead of {flat_expected[first].item():.6g}")


def grade(name: str, fn: Callable) -> tuple[str, str]:
    """("correct" | "wrong" | "unsolved", message). Never raises for the learner's errors."""
    exercise = EXERCISES[name]
    expected = exercise.expected() if exercise.expected else exercise.cases(exercise.oracle)
    tolerance = {"atol": exercise.atol, "rtol": exercise.rtol}
    try:
        got = exercise.cases(fn)
    except (Unsolved, NotImplementedError):
        return "unsolved", "not solved yet"
    except Exception as error:  # noqa: BLE001 (the learner's code crashed: say how, go on)
        return "wrong", f"raised {type(error).__name__}: {error}. Hint: {exercise.hint}"
    for (what, value), (_, reference) in zip(got, expected):
        try:
            same = _same(value, reference, **tolerance)
        except (TypeError, ValueError, RuntimeError) as error:
            return "wrong", f"{what}: output not comparable ({error}). Hint: {exercise.hint}"
        if not same:
            return "wrong", f"{what}: {_difference(value, reference, **tolerance)}. Hint: {exercise.hint}"
    return "correct", f"matches the reference on {len(expected)} checks"


def check(name: str, fn: Callable) -> Callable:
    """Grade `fn`, print the verdict, return `fn` if correct, else the reference implementation."""
    status, message = grade(name, fn)
    if status == "correct":
        print(f"✓ {name}: {message}")
        return fn
    if status == "unsolved":
        print(f"· {name}: not solved yet, the notebook goes on with the reference (solution: the "
              f"hidden cell below, or exercises.solution({name!r}))")
    else:
        print(f"✗ {name}: {message}\n  the notebook goes on with the reference meanwhile")
    return EXERCISES[name].oracle


def solution(name: str) -> str:
    """The source of a solution, from warp_utils.course.solutions."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {', '.join(EXERCISES)}")
    return inspect.getsource(getattr(solutions, name))


def spot_the_bug(name: str, bug: str) -> str:
    """Print the grader's verdict on one known wrong version of an exercise (warp_utils.course.bugs);
    returns it ("wrong" for every one of them)."""
    status, message = grade(name, bugs.BUGS[name][bug])
    print(f"the grader of `{name}` on the bug '{bug}': "
          f"{'REJECTED' if status == 'wrong' else status}: {message}")
    return status

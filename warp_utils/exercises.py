"""Graders of the notebooks' exercises (Karpathy's `cmp` idea): the learner's function is run on
a few fixed cases, and its outputs are compared with the package's own implementation (the
oracle: `weights`, `toy`, `rl`, `evaluation`) or with a float64 closed form.

    my_liti = exercises.check("liti", liti)   # prints ✓ / ✗ / "not solved yet"
    exercises.solution("liti")                # the source of a solution (warp_utils.solutions)

`check` returns the learner's function when it is right, else the reference (same signature), so
the rest of the notebook runs either way. A function that raises NotImplementedError or returns
None counts as not solved yet. `grade` is the quiet version, used by the tests, which prove that
each grader rejects the known wrong versions of `warp_utils.bugs` and accepts the solutions.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import bugs, rl, solutions, toy
from .evaluation import distinct_n
from .weights import ema, liti, slerp


class _Unsolved(Exception):
    pass


@dataclass(frozen=True)
class Exercise:
    """oracle: the reference, with the learner's signature; cases: fn -> [(what, output)], the
    outputs to compare (tensors, floats, bools or state dicts); hint: printed on a mismatch."""

    oracle: Callable
    cases: Callable[[Callable], list]
    hint: str


def _call(fn, *args):
    out = fn(*args)
    if out is None:
        raise _Unsolved
    return out


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _state(seed, shapes=((3, 4), (6,))):
    gen = _g(seed)
    return {f"w{i}": torch.randn(s, generator=gen, dtype=torch.float64) for i, s in enumerate(shapes)}


def _unchanged(before, after):
    return all(torch.equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- cases


def _bt_cases(fn):
    gen = _g(0)
    r_c, r_r = 3 * torch.randn(16, generator=gen, dtype=torch.float64), torch.zeros(16, dtype=torch.float64)
    big = torch.tensor([-800.0, 0.0, 800.0], dtype=torch.float64)  # |d| where exp over/underflows
    return [("random pairs", _call(fn, r_c, r_r)), ("reward gaps of +-1600", _call(fn, big, -big))]


def _bt_oracle(r_chosen, r_rejected):
    # -log sigma(d) = log(1 + e^-d), written so that neither branch overflows, in float64
    d = (r_chosen - r_rejected).tolist()
    losses = [math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x)) for x in d]
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


def _accuracy_cases(fn):
    gen = _g(1)
    r_c, r_r = torch.randn(20, generator=gen), torch.randn(20, generator=gen)
    r_c[:5] = r_r[:5]  # ties
    constant = torch.zeros(8)
    return [("pairs with ties", _call(fn, r_c, r_r)), ("a constant reward model", _call(fn, constant, constant))]


def _accuracy_oracle(r_chosen, r_rejected):
    wins = sum(float(c) > float(r) for c, r in zip(r_chosen, r_rejected))
    return wins / len(r_chosen)


def _ema_cases(fn):
    out = []
    for seed, mu in ((0, 0.01), (1, 0.3), (2, 1.0)):
        anchor, theta = _state(seed), _state(seed + 10)
        kept = copy.deepcopy(anchor)
        out.append((f"mu = {mu}", _call(fn, anchor, theta, mu)))
        out.append((f"mu = {mu}: the old anchor left unchanged", _unchanged(kept, anchor)))
    return out


def _pair(seed, kind):
    init, t1, t2 = _state(seed), _state(seed + 1), _state(seed + 2)
    if kind == "collinear":  # delta_2 = 2.5 delta_1: no angle, LERP
        t2 = {k: init[k] + 2.5 * (t1[k] - init[k]) for k in init}
    elif kind == "zero":  # run 1 did not move
        t1 = copy.deepcopy(init)
    return init, t1, t2


def _slerp_cases(fn):
    out = []
    for seed, kind, lam in ((0, "generic", 0.5), (3, "generic", 0.3), (6, "collinear", 0.5), (9, "zero", 0.5)):
        init, t1, t2 = _pair(seed, kind)
        out.append((f"{kind} task vectors, lam = {lam}", _call(fn, init, t1, t2, lam)))
    return out


def _liti_cases(fn):
    out = []
    for seed, eta in ((0, 0.25), (1, 0.5), (2, 0.9)):
        init, merged = _state(seed), _state(seed + 5)
        kept = copy.deepcopy(init)
        out.append((f"eta = {eta}", _call(fn, init, merged, eta)))
        out.append((f"eta = {eta}: theta_init left unchanged", _unchanged(kept, init)))
    return out


def _tables(seed, num_prompts=4, num_tokens=6):
    gen = _g(seed)
    return torch.softmax(torch.randn(num_prompts, num_tokens, generator=gen, dtype=torch.float64), -1)


def _kl_cases(fn):
    return [(f"tables {s}", _call(fn, _tables(s), _tables(s + 1))) for s in (0, 2)]


def _kl_oracle(pi_p, pi_q):
    zero = torch.zeros(pi_p.shape[1], dtype=pi_p.dtype)
    return toy.kl({"table": pi_p.log(), "bias": zero}, {"table": pi_q.log(), "bias": zero})


def _optimal_cases(fn):
    _, reward = toy.make_bandit(num_prompts=4, num_tokens=6, seed=1)
    return [(f"beta = {b}", _call(fn, _tables(3), reward, b)) for b in (3.0, 0.1, 1e-3)]


def _optimal_oracle(pi_sft, reward, beta):
    theta_sft = {"table": pi_sft.log(), "bias": torch.zeros(pi_sft.shape[1], dtype=pi_sft.dtype)}
    return toy.probs(toy.optimal_policy(theta_sft, reward, beta))


def _merge_records():
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=2)
    return [(eta, toy.warp(theta_sft, reward, I=1, M=num_runs, T=20, eta=eta, seed=seed)[0])
            for seed, num_runs, eta in ((0, 2, 0.5), (1, 3, 0.3))]


def _merge_cases(fn):
    return [(f"M = {len(r['thetas'])}, eta = {eta}", _call(fn, r, eta)) for eta, r in _merge_records()]


def _merge_oracle(record, eta):
    """Algorithm 1 as toy.warp ran it: the cases call with the eta the record was built with."""
    return record["theta_next"]


def _loss_inputs(seed, batch=8):
    """A leaf w standing for the policy's weights; log_ratio still attached to its graph."""
    gen = _g(seed)
    w = torch.randn(batch, generator=gen, dtype=torch.float64).requires_grad_(True)
    logprobs = torch.nn.functional.logsigmoid(2 * w) * 5  # log pi(y_i | x_i), with grad
    log_ratio = logprobs - (logprobs.detach() + 0.3 * torch.randn(batch, generator=gen, dtype=torch.float64))
    rewards = torch.randn(batch, generator=gen, dtype=torch.float64)
    return w, logprobs, rewards, log_ratio


def _r_beta_cases(fn):
    out = []
    for seed, beta in ((0, 0.1), (1, 0.5)):
        _, _, rewards, log_ratio = _loss_inputs(seed)
        r_beta = _call(fn, rewards, log_ratio, beta)
        out += [(f"beta = {beta}", r_beta), (f"beta = {beta}: r_beta is a constant (no grad)",
                                             not torch.as_tensor(r_beta).requires_grad)]
    return out


def _loss_cases(fn):
    out = []
    for seed, beta in ((0, 0.1), (1, 0.5)):
        w, logprobs, rewards, log_ratio = _loss_inputs(seed)
        loss = _call(fn, logprobs, rewards, log_ratio, beta)
        (grad,) = torch.autograd.grad(loss, w)
        out += [(f"beta = {beta}: loss", loss.detach()), (f"beta = {beta}: gradient", grad)]
    return out


def _loss_oracle(logprobs, rewards, log_ratio, beta):
    return rl.reinforce_loss(logprobs, rewards, log_ratio, beta, baseline="batch_mean")[0]


def _mask_cases(fn):
    eos = 0
    ids = torch.tensor([[5, 7, 9, 0, 3, 8, 2, 6],    # EOS, then filler that is not EOS
                        [5, 7, 9, 4, 3, 8, 2, 6],    # no EOS: all of it
                        [0, 0, 0, 0, 0, 0, 0, 0],    # EOS first: one token
                        [4, 4, 4, 4, 4, 0, 0, 0]])   # EOS, then pads (= EOS)
    return [("four completions", torch.as_tensor(_call(fn, ids, eos)).long())]


def _sequence_kl_inputs(seed, batch=3, length=7, vocab=5):
    gen = _g(seed)
    log_p = torch.log_softmax(torch.randn(batch, length - 1, vocab, generator=gen, dtype=torch.float64), -1)
    log_q = torch.log_softmax(torch.randn(batch, length - 1, vocab, generator=gen, dtype=torch.float64), -1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0, 0]])
    return log_p, log_q, mask


def _sequence_kl_cases(fn):
    return [(f"batch {s}", _call(fn, *_sequence_kl_inputs(s))) for s in (0, 1)]


def _sequence_kl_oracle(log_p, log_q, response_mask):
    return rl.sum_over_response(rl.per_token_kl(log_p, log_q), response_mask)


def _distinct_cases(fn):
    texts = ["a b", "b a", "a b c", "the film the film"]
    return [(f"n = {n}", float(_call(fn, texts, n))) for n in (1, 2, 3)]


EXERCISES = {
    "bradley_terry_loss": Exercise(_bt_oracle, _bt_cases,
                                   "-mean log sigma(r_c - r_r); log(sigmoid(.)) is -inf for large gaps: "
                                   "use torch.nn.functional.logsigmoid"),
    "pair_accuracy": Exercise(_accuracy_oracle, _accuracy_cases,
                              "count r_c > r_r strictly: a tie is no preference"),
    "ema": Exercise(ema, _ema_cases, "(1 - mu) * theta_ema + mu * theta, in a new dict"),
    "slerp": Exercise(lambda init, t1, t2, lam=0.5: slerp(init, [t1, t2], lam), _slerp_cases,
                      "work on task vectors theta_m - theta_init, one angle per tensor; with no angle "
                      "(collinear or zero) fall back to LERP, and add theta_init back in every branch"),
    "liti": Exercise(liti, _liti_cases, "(1 - eta) * theta_init + eta * theta_merged, in a new dict"),
    "exact_kl": Exercise(_kl_oracle, _kl_cases, "KL(p || q) = sum_y p (log p - log q), then the mean "
                                                "over prompts"),
    "optimal_policy": Exercise(_optimal_oracle, _optimal_cases,
                               "pi_sft * exp(r / beta), normalised per prompt; exp(r / beta) overflows "
                               "for small beta: softmax(log pi_sft + r / beta)"),
    "warp_merge": Exercise(_merge_oracle, _merge_cases,
                           "slerp(theta_init, record['thetas']) (the trained runs, not theta_emas), "
                           "then return liti(theta_init, that merge, eta)"),
    "kl_regularized_reward": Exercise(rl.kl_regularized_reward, _r_beta_cases,
                                      "r - beta * log_ratio, detached: r_beta is a weight, not a loss"),
    "reinforce_loss": Exercise(_loss_oracle, _loss_cases,
                               "minus the mean of (r_beta - mean r_beta) * logprobs, with r_beta "
                               "detached (log_ratio comes with the policy's graph)"),
    "response_mask": Exercise(rl.response_mask_from_completion, _mask_cases,
                              "1 up to and including the first EOS, 0 after it (cumsum of is_eos)"),
    "sequence_kl": Exercise(_sequence_kl_oracle, _sequence_kl_cases,
                            "sum_y p (log p - log q) per row t, kept where response_mask[:, 1:] is 1 "
                            "(row t predicts token t + 1)"),
    "distinct_n": Exercise(distinct_n, _distinct_cases,
                           "n-grams of each text's words, never across two texts; unique / total"),
}


# ----------------------------------------------------------------------------- grading


def _flat(value) -> torch.Tensor | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return torch.cat([torch.as_tensor(value[k]).double().flatten() for k in sorted(value)])
    return torch.as_tensor(value).detach().double().flatten()


def _same(got, expected) -> bool:
    got, expected = _flat(got), _flat(expected)
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-6, atol=1e-9)


def _show(value) -> str:
    flat = _flat(value)
    if isinstance(flat, bool):
        return str(flat)
    text = ", ".join(f"{v:.4g}" for v in flat[:4].tolist())
    return f"[{text}{', ...' if flat.numel() > 4 else ''}]"


def _difference(got, expected) -> str:
    """Where the outputs first differ, so that a mismatch late in a tensor is visible."""
    flat_got, flat_expected = _flat(got), _flat(expected)
    if isinstance(flat_got, bool) or isinstance(flat_expected, bool):
        return f"got {flat_got}, expected {flat_expected}"
    if flat_got.shape != flat_expected.shape:
        return f"got {flat_got.numel()} values, expected {flat_expected.numel()}"
    close = torch.isclose(flat_got, flat_expected, rtol=1e-6, atol=1e-9)
    first = int((~close).nonzero()[0])
    return (f"got {_show(got)}, expected {_show(expected)}; first difference at flat index {first}: "
            f"{flat_got[first].item():.6g} instead of {flat_expected[first].item():.6g}")


def grade(name: str, fn: Callable) -> tuple[str, str]:
    """("correct" | "wrong" | "unsolved", message). Never raises for the learner's errors."""
    exercise = EXERCISES[name]
    expected = exercise.cases(exercise.oracle)
    try:
        got = exercise.cases(fn)
    except (_Unsolved, NotImplementedError):
        return "unsolved", "not solved yet"
    except Exception as error:  # the learner's code crashed: say how, do not stop the notebook
        return "wrong", f"raised {type(error).__name__}: {error}. Hint: {exercise.hint}"
    for (what, value), (_, reference) in zip(got, expected):
        try:
            same = _same(value, reference)
        except (TypeError, ValueError, RuntimeError) as error:
            return "wrong", f"{what}: output not comparable ({error}). Hint: {exercise.hint}"
        if not same:
            return "wrong", f"{what}: {_difference(value, reference)}. Hint: {exercise.hint}"
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
    """The source of a solution, from warp_utils.solutions."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; exercises: {', '.join(EXERCISES)}")
    return inspect.getsource(getattr(solutions, name))


def spot_the_bug(name: str, bug: str) -> str:
    """Print the grader's verdict on one known wrong version of an exercise (warp_utils.bugs);
    returns it ("wrong" for every one of them)."""
    status, message = grade(name, bugs.BUGS[name][bug])
    print(f"the grader of `{name}` on the bug '{bug}': "
          f"{'REJECTED' if status == 'wrong' else status}: {message}")
    return status

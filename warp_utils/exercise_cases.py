"""The cases and oracles of the graders in `warp_utils.exercises`: for each exercise, a function
`fn -> [(what, output)]` that runs `fn` on fixed inputs, and the reference with the learner's
signature (the package's implementation: `weights`, `toy`, `rl`, `evaluation`, or a float64 closed
form). Seeded, float64, no I/O.
"""

from __future__ import annotations

import copy
import math

import torch

from . import rl, toy


class Unsolved(Exception):
    pass


def call(fn, *args):
    out = fn(*args)
    if out is None:
        raise Unsolved
    return out


def g(seed):
    return torch.Generator().manual_seed(seed)


def state(seed, shapes=((3, 4), (6,))):
    gen = g(seed)
    return {f"w{i}": torch.randn(s, generator=gen, dtype=torch.float64) for i, s in enumerate(shapes)}


def unchanged(before, after):
    return all(torch.equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- cases


def bt_cases(fn):
    gen = g(0)
    r_c, r_r = 3 * torch.randn(16, generator=gen, dtype=torch.float64), torch.zeros(16, dtype=torch.float64)
    big = torch.tensor([-800.0, 0.0, 800.0], dtype=torch.float64)  # |d| where exp over/underflows
    return [("random pairs", call(fn, r_c, r_r)), ("reward gaps of +-1600", call(fn, big, -big))]


def bt_oracle(r_chosen, r_rejected):
    # -log sigma(d) = log(1 + e^-d), written so that neither branch overflows, in float64
    d = (r_chosen - r_rejected).tolist()
    losses = [math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x)) for x in d]
    return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)


def accuracy_cases(fn):
    gen = g(1)
    r_c, r_r = torch.randn(20, generator=gen), torch.randn(20, generator=gen)
    r_c[:5] = r_r[:5]  # ties
    constant = torch.zeros(8)
    return [("pairs with ties", call(fn, r_c, r_r)), ("a constant reward model", call(fn, constant, constant))]


def accuracy_oracle(r_chosen, r_rejected):
    wins = sum(float(c) > float(r) for c, r in zip(r_chosen, r_rejected))
    return wins / len(r_chosen)


def ema_cases(fn):
    out = []
    for seed, mu in ((0, 0.01), (1, 0.3), (2, 1.0)):
        anchor, theta = state(seed), state(seed + 10)
        kept = copy.deepcopy(anchor)
        out.append((f"mu = {mu}", call(fn, anchor, theta, mu)))
        out.append((f"mu = {mu}: the old anchor left unchanged", unchanged(kept, anchor)))
    return out


def pair(seed, kind):
    init, t1, t2 = state(seed), state(seed + 1), state(seed + 2)
    if kind == "collinear":  # delta_2 = 2.5 delta_1: no angle, LERP
        t2 = {k: init[k] + 2.5 * (t1[k] - init[k]) for k in init}
    elif kind == "zero":  # run 1 did not move
        t1 = copy.deepcopy(init)
    return init, t1, t2


def slerp_cases(fn):
    out = []
    for seed, kind, lam in ((0, "generic", 0.5), (3, "generic", 0.3), (6, "collinear", 0.5), (9, "zero", 0.5)):
        init, t1, t2 = pair(seed, kind)
        out.append((f"{kind} task vectors, lam = {lam}", call(fn, init, t1, t2, lam)))
    return out


def liti_cases(fn):
    out = []
    for seed, eta in ((0, 0.25), (1, 0.5), (2, 0.9)):
        init, merged = state(seed), state(seed + 5)
        kept = copy.deepcopy(init)
        out.append((f"eta = {eta}", call(fn, init, merged, eta)))
        out.append((f"eta = {eta}: theta_init left unchanged", unchanged(kept, init)))
    return out


def tables(seed, num_prompts=4, num_tokens=6):
    gen = g(seed)
    return torch.softmax(torch.randn(num_prompts, num_tokens, generator=gen, dtype=torch.float64), -1)


def kl_cases(fn):
    return [(f"tables {s}", call(fn, tables(s), tables(s + 1))) for s in (0, 2)]


def kl_oracle(pi_p, pi_q):
    zero = torch.zeros(pi_p.shape[1], dtype=pi_p.dtype)
    return toy.kl({"table": pi_p.log(), "bias": zero}, {"table": pi_q.log(), "bias": zero})


def optimal_cases(fn):
    _, reward = toy.make_bandit(num_prompts=4, num_tokens=6, seed=1)
    return [(f"beta = {b}", call(fn, tables(3), reward, b)) for b in (3.0, 0.1, 1e-3)]


def optimal_oracle(pi_sft, reward, beta):
    theta_sft = {"table": pi_sft.log(), "bias": torch.zeros(pi_sft.shape[1], dtype=pi_sft.dtype)}
    return toy.probs(toy.optimal_policy(theta_sft, reward, beta))


def merge_records():
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=2)
    return [(eta, toy.warp(theta_sft, reward, I=1, M=num_runs, T=20, eta=eta, seed=seed)[0])
            for seed, num_runs, eta in ((0, 2, 0.5), (1, 3, 0.3))]


def merge_cases(fn):
    return [(f"M = {len(r['thetas'])}, eta = {eta}", call(fn, r, eta)) for eta, r in merge_records()]


def merge_oracle(record, eta):
    """Algorithm 1 as toy.warp ran it: the cases call with the eta the record was built with."""
    return record["theta_next"]


def loss_inputs(seed, batch=8):
    """A leaf w standing for the policy's weights; log_ratio still attached to its graph."""
    gen = g(seed)
    w = torch.randn(batch, generator=gen, dtype=torch.float64).requires_grad_(True)
    logprobs = torch.nn.functional.logsigmoid(2 * w) * 5  # log pi(y_i | x_i), with grad
    log_ratio = logprobs - (logprobs.detach() + 0.3 * torch.randn(batch, generator=gen, dtype=torch.float64))
    rewards = torch.randn(batch, generator=gen, dtype=torch.float64)
    return w, logprobs, rewards, log_ratio


def r_beta_cases(fn):
    out = []
    for seed, beta in ((0, 0.1), (1, 0.5)):
        _, _, rewards, log_ratio = loss_inputs(seed)
        r_beta = call(fn, rewards, log_ratio, beta)
        out += [(f"beta = {beta}", r_beta), (f"beta = {beta}: r_beta is a constant (no grad)",
                                             not torch.as_tensor(r_beta).requires_grad)]
    return out


def loss_cases(fn):
    out = []
    for seed, beta in ((0, 0.1), (1, 0.5)):
        w, logprobs, rewards, log_ratio = loss_inputs(seed)
        loss = call(fn, logprobs, rewards, log_ratio, beta)
        (grad,) = torch.autograd.grad(loss, w)
        out += [(f"beta = {beta}: loss", loss.detach()), (f"beta = {beta}: gradient", grad)]
    return out


def loss_oracle(logprobs, rewards, log_ratio, beta):
    return rl.reinforce_loss(logprobs, rewards, log_ratio, beta, baseline="batch_mean")[0]


def mask_cases(fn):
    eos = 0
    ids = torch.tensor([[5, 7, 9, 0, 3, 8, 2, 6],    # EOS, then filler that is not EOS
                        [5, 7, 9, 4, 3, 8, 2, 6],    # no EOS: all of it
                        [0, 0, 0, 0, 0, 0, 0, 0],    # EOS first: one token
                        [4, 4, 4, 4, 4, 0, 0, 0]])   # EOS, then pads (= EOS)
    return [("four completions", torch.as_tensor(call(fn, ids, eos)).long())]


def sequence_kl_inputs(seed, batch=3, length=7, vocab=5):
    gen = g(seed)
    log_p = torch.log_softmax(torch.randn(batch, length - 1, vocab, generator=gen, dtype=torch.float64), -1)
    log_q = torch.log_softmax(torch.randn(batch, length - 1, vocab, generator=gen, dtype=torch.float64), -1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0, 0]])
    return log_p, log_q, mask


def sequence_kl_cases(fn):
    return [(f"batch {s}", call(fn, *sequence_kl_inputs(s))) for s in (0, 1)]


def sequence_kl_oracle(log_p, log_q, response_mask):
    return rl.sum_over_response(rl.per_token_kl(log_p, log_q), response_mask)


def distinct_cases(fn):
    texts = ["a b", "b a", "a b c", "the film the film"]
    return [(f"n = {n}", float(call(fn, texts, n))) for n in (1, 2, 3)]

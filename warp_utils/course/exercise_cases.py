"""The cases and oracles of the graders in `warp_utils.course.exercises`: for each exercise, a function
`fn -> [(what, output)]` that runs `fn` on fixed inputs, and the reference with the learner's
signature (the package's implementation: `weights`, `toy`, `rl`, `evaluation`, or a float64 closed
form). Seeded, float64, no I/O.
"""

from __future__ import annotations

import copy
import math

import torch

from ..core import rl
from . import toy
from ..core.weights import ema, liti, slerp


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
    """A win counts 1, a tie 1/2 (the model has no preference: a coin flip), a loss 0."""
    score = sum(1.0 if float(c) > float(r) else 0.5 if float(c) == float(r) else 0.0
                for c, r in zip(r_chosen, r_rejected))
    return score / len(r_chosen)


def trajectory(seed, length):
    return [state(1000 * seed + s) for s in range(length)]


def call_keeping_inputs(label, fn, theta_init, states, *rest):
    """The case `label` (fn's output on theta_init, states, *rest) and the case that fn left
    theta_init and every state of `states` as they were."""
    kept = copy.deepcopy((theta_init, states))
    output = call(fn, theta_init, states, *rest)
    return [(label, output), (f"{label}: inputs left unchanged",
                              unchanged(kept[0], theta_init) and all(map(unchanged, kept[1], states)))]


def ema_anchor_cases(fn):
    out = []
    for seed, length, mu in ((0, 25, 0.05), (1, 7, 0.3), (2, 5, 1.0), (3, 6, 0.0), (4, 0, 0.2)):
        out += call_keeping_inputs(f"{length} steps, mu = {mu}", fn, state(seed), trajectory(seed + 1, length), mu)
    return out


def ema_anchor_oracle(theta_init, trajectory, mu):
    """The recursion itself: one `weights.ema` step after each policy of the trajectory."""
    anchor = {k: v.clone() for k, v in theta_init.items()}
    for theta in trajectory:
        anchor = ema(anchor, theta, mu)
    return anchor


def anchor_bandit():
    return toy.make_bandit(num_prompts=6, num_tokens=5, seed=5)


def anchor_step(reward, seed):
    return toy.make_step(reward, beta=0.1, lr=4.0, batch_size=8,
                         generator=torch.Generator().manual_seed(seed))


def anchor_cases(fn):
    theta_sft, reward = anchor_bandit()
    out = []
    for mu, steps, seed in ((0.0, 30, 0), (0.05, 30, 1), (0.01, 60, 2)):
        kept = copy.deepcopy(theta_sft)
        point = call(fn, theta_sft, reward, anchor_step(reward, seed), mu, steps)
        kl_to_sft, value = point
        out += [(f"mu = {mu}, {steps} steps: KL to SFT", kl_to_sft),
                (f"mu = {mu}, {steps} steps: reward", value),
                (f"mu = {mu}: theta_sft left unchanged", unchanged(kept, theta_sft))]
    return out


def anchor_oracle(theta_sft, reward, step, mu, T):
    """The toy's own training (mu = 0: an SFT anchor), measured exactly: (KL to SFT, E[r])."""
    theta, _ = toy.anchored_run(theta_sft, step, T, mu)
    return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)


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


def tables(seed, num_prompts=4, num_tokens=6):
    gen = g(seed)
    return torch.softmax(torch.randn(num_prompts, num_tokens, generator=gen, dtype=torch.float64), -1)


def objective_inputs():
    """Tables with zeros: pi has none of some tokens (0 log 0 = 0); pi_sft lacks a token that pi
    has (KL = +inf, J = -inf); both lack the same token (finite)."""
    _, reward = toy.make_bandit(num_prompts=4, num_tokens=6, seed=3)
    pi, pi_sft = tables(0), tables(1)
    pi_zeros = pi.clone()
    pi_zeros[0, :3] = 0.0
    pi_zeros[2, 5] = 0.0
    pi_zeros /= pi_zeros.sum(-1, keepdim=True)
    sft_zero = pi_sft.clone()
    sft_zero[2, 5] = 0.0
    sft_zero /= sft_zero.sum(-1, keepdim=True)
    return reward, pi, pi_sft, pi_zeros, sft_zero


def objective_cases(fn):
    reward, pi, pi_sft, pi_zeros, sft_zero = objective_inputs()
    return [("generic tables, beta = 0.1", call(fn, pi, pi_sft, reward, 0.1)),
            ("generic tables, beta = 2", call(fn, pi, pi_sft, reward, 2.0)),
            ("pi gives some tokens probability 0", call(fn, pi_zeros, pi_sft, reward, 0.1)),
            ("pi_sft gives probability 0 to a token pi has", call(fn, pi, sft_zero, reward, 0.1)),
            ("both give that token probability 0", call(fn, pi_zeros, sft_zero, reward, 0.1))]


def objective_oracle(pi, pi_sft, reward, beta):
    """J_beta(pi) = mean_x [sum_y pi r - beta sum_y pi log(pi / pi_sft)], term by term in float64:
    0 log 0 = 0, and a token with pi > 0 = pi_sft makes the KL +inf."""
    total = 0.0
    for p_row, q_row, r_row in zip(pi.tolist(), pi_sft.tolist(), reward.tolist()):
        kl = 0.0
        for p, q in zip(p_row, q_row):
            if p > 0:
                kl += math.inf if q == 0 else p * math.log(p / q)
        total += sum(p * r for p, r in zip(p_row, r_row)) - beta * kl
    return torch.tensor(total / len(pi), dtype=torch.float64)


def pg_bandit():
    """One prompt of the toy: logits z (K,), pi = softmax(z), rewards r (K,)."""
    theta, reward = toy.make_bandit(num_prompts=1, num_tokens=5, seed=4)
    return toy.logits(theta)[0], reward[0]


PG_BATCHES = 4000
PG_SETTINGS = ((4, False, 0), (2, True, 1), (8, True, 2))  # batch size, baseline, seed


def pg_actions(logits, batch_size, seed):
    gen = g(seed)
    pi = torch.softmax(logits, -1)
    return torch.multinomial(pi, PG_BATCHES * batch_size, replacement=True, generator=gen).view(
        PG_BATCHES, batch_size)


def pg_cases(fn):
    logits, reward = pg_bandit()
    out = []
    for batch_size, baseline, seed in PG_SETTINGS:
        total = torch.zeros_like(logits)
        for actions in pg_actions(logits, batch_size, seed):
            total += torch.as_tensor(call(fn, logits, reward, actions, baseline)).detach().double()
        what = f"mean of {PG_BATCHES} estimates from batches of {batch_size}, baseline = {baseline}"
        out.append((what, total / PG_BATCHES))
    return out


def exact_reward_gradient(logits, reward):
    """grad_z E_{y ~ softmax(z)}[r(y)] = pi * (r - E_pi[r]), exactly (toy.policy_gradient with
    beta = 0 and no samples)."""
    theta = {"table": logits[None], "bias": torch.zeros_like(logits)}
    return toy.policy_gradient(theta, theta, reward[None], 0.0)["table"][0]


def pg_expected():
    """What the means must approach: the exact gradient, for every setting."""
    logits, reward = pg_bandit()
    exact = exact_reward_gradient(logits, reward)
    return [(f"batches of {n}, baseline = {b}", exact) for n, b, _ in PG_SETTINGS]


def pg_oracle(logits, reward, actions, baseline):
    """toy.policy_gradient's sampled REINFORCE (beta = 0) on one prompt: leave-one-out baseline
    or none."""
    theta = {"table": logits[None], "bias": torch.zeros_like(logits)}
    grad = toy.policy_gradient(theta, theta, reward[None], 0.0, torch.zeros_like(actions), actions,
                               baseline="leave_one_out" if baseline else "none")
    return grad["table"][0]


def optimal_cases(fn):
    _, reward = toy.make_bandit(num_prompts=4, num_tokens=6, seed=1)
    return [(f"beta = {b}", call(fn, tables(3), reward, b)) for b in (3.0, 0.1, 1e-3)]


def optimal_oracle(pi_sft, reward, beta):
    theta_sft = {"table": pi_sft.log(), "bias": torch.zeros(pi_sft.shape[1], dtype=pi_sft.dtype)}
    return toy.probs(toy.optimal_policy(theta_sft, reward, beta))


def merge_inputs():
    """(theta_init, thetas, eta): the runs of a toy WARP iteration (inputs only: the grader never
    hands out a merge or the next theta_init), and random state dicts."""
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=2)
    out = []
    for seed, num_runs, eta in ((0, 2, 0.5), (1, 3, 0.3)):
        run = toy.make_run(reward, T=20, seed=seed)
        out.append((theta_sft, [run(0, m, theta_sft)[0] for m in range(num_runs)], eta))
    out.append((state(7), [state(8), state(9)], 0.8))
    return out


def merge_cases(fn):
    out = []
    for theta_init, thetas, eta in merge_inputs():
        out += call_keeping_inputs(f"M = {len(thetas)}, eta = {eta}", fn, theta_init, thetas, eta)
    return out


def merge_oracle(theta_init, thetas, eta):
    """The end of an iteration of Algorithm 1, as toy.warp computes it."""
    return liti(theta_init, slerp(theta_init, thetas), eta)


def loop_cases(fn):
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=6)
    out = []
    for I, M, eta, seed in ((2, 2, 0.5, 0), (3, 3, 0.3, 1)):
        kept = copy.deepcopy(theta_sft)
        run = toy.make_run(reward, T=10, batch_size=4, seed=seed)
        out.append((f"I = {I}, M = {M}, eta = {eta}", call(fn, theta_sft, run, I, M, eta)))
        out.append((f"I = {I}: theta_sft left unchanged", unchanged(kept, theta_sft)))
    return out


def loop_oracle(theta_sft, run, I, M, eta):
    """toy.warp's loop (toy.algorithm1) around the same runs: the last theta_init it computes."""
    return toy.algorithm1(theta_sft, run, I=I, M=M, eta=eta)[-1]["theta_next"]


def loss_inputs(seed, batch=8):
    """A leaf w standing for the policy's weights; log_ratio still attached to its graph."""
    gen = g(seed)
    w = torch.randn(batch, generator=gen, dtype=torch.float64).requires_grad_(True)
    logprobs = torch.nn.functional.logsigmoid(2 * w) * 5  # log pi(y_i | x_i), with grad
    log_ratio = logprobs - (logprobs.detach() + 0.3 * torch.randn(batch, generator=gen, dtype=torch.float64))
    rewards = torch.randn(batch, generator=gen, dtype=torch.float64)
    return w, logprobs, rewards, log_ratio


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

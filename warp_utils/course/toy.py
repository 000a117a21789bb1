"""A toy WARP that runs in a fraction of a second: a softmax policy over a small vocabulary.

The "language model" answers P prompts x with one token y out of K; the reward r(x, y) is a fixed
(P, K) table (P = 1: a plain bandit with a reward vector). The policy is a state dict with two
tensors, like a tiny network with a per-prompt part and a shared part:

    logits(x) = table[x] + bias,   pi(y | x) = softmax(logits(x))_y

Everything WARP does to a language model happens here too, in the same loop
(`warp_utils.core.warp.algorithm1`, Algorithm 1 of the paper) with the same merges
(`warp_utils.core.weights`) and the same seed per run (`core.warp.run_seed`):

    for i in 1..I:                        # WARP iterations
        for m in 1..M:                    # independent RL runs from theta_init
            theta_m = theta_ema = theta_init
            T REINFORCE steps on r_beta = r(x, y) - beta * log(pi(y|x) / pi_ema(y|x))
            after each step: theta_ema <- (1 - mu) theta_ema + mu theta_m
        theta_slerp = slerp(theta_init, [theta_1, ..., theta_M])
        theta_init  = liti(theta_init, theta_slerp, eta)

Float64 throughout. Rewards and KLs are exact sums over prompts and tokens, never estimates; only
the training gradients are sampled, so the M runs see different noise and end in different
places, which is what gives SLERP something to do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import warp as core_warp
from ..core.weights import ema, liti, slerp
from ..evaluate.stats import chord_dips
from ..execution.executors import InProcess

State = dict[str, Tensor]


def make_bandit(num_prompts: int = 16, num_tokens: int = 8, seed: int = 0) -> tuple[State, Tensor]:
    """(theta_sft, reward): random SFT logits (table N(0, 0.5^2), bias N(0, 0.5^2)) and a
    reward table r(x, y) ~ U[0, 1] of shape (num_prompts, num_tokens)."""
    gen = torch.Generator().manual_seed(seed)
    table = 0.5 * torch.randn(num_prompts, num_tokens, generator=gen, dtype=torch.float64)
    bias = 0.5 * torch.randn(num_tokens, generator=gen, dtype=torch.float64)
    reward = torch.rand(num_prompts, num_tokens, generator=gen, dtype=torch.float64)
    return {"table": table, "bias": bias}, reward


def logits(theta: State) -> Tensor:
    return theta["table"] + theta["bias"]


def probs(theta: State) -> Tensor:
    """pi(y | x) as a (P, K) table."""
    return torch.softmax(logits(theta), dim=-1)


def expected_reward(theta: State, reward: Tensor) -> float:
    """E_x E_{y ~ pi(.|x)}[r(x, y)], exactly: mean_x sum_y pi(y|x) r(x, y)."""
    return float((probs(theta) * reward).sum(-1).mean())


def kl(theta_p: State, theta_q: State) -> float:
    """E_x KL(pi_p(.|x) || pi_q(.|x)) = mean_x sum_y pi_p (log pi_p - log pi_q), exactly."""
    log_p = torch.log_softmax(logits(theta_p), dim=-1)
    log_q = torch.log_softmax(logits(theta_q), dim=-1)
    return float((log_p.exp() * (log_p - log_q)).sum(-1).mean())


def policy_gradient(
    theta: State,
    theta_ema: State,
    reward: Tensor,
    beta: float,
    prompts: Tensor | None = None,
    actions: Tensor | None = None,
    baseline: str = "leave_one_out",
) -> State:
    """Gradient (for ascent) of E[r_beta(x, y) log pi(y|x)] with r_beta held constant (no grad):

        r_beta(x, y) = r(x, y) - beta * (log pi(y|x) - log pi_ema(y|x)),  d log pi(y|x)/d logits(x)
        = e_y - pi(.|x); the bias gets the sum over prompts of the logits' gradient.

    prompts = actions = None: the exact expectation mean_x sum_y pi r_beta (e_y - pi), which is
    the true gradient of E[r] - beta KL(pi || pi_ema). Else N sampled (x_i, y_i): REINFORCE,
    (1/N) sum_i A_i (e_{y_i} - pi(.|x_i)) in row x_i, unbiased for it, with A_i = r_beta_i minus
    the mean of the other samples' r_beta (baseline="leave_one_out") or A_i = r_beta_i ("none").
    """
    if baseline not in ("leave_one_out", "none"):
        raise ValueError(f"baseline must be 'leave_one_out' or 'none', got {baseline!r}")
    log_pi = torch.log_softmax(logits(theta), dim=-1)
    pi = log_pi.exp()
    r_beta = reward - beta * (log_pi - torch.log_softmax(logits(theta_ema), dim=-1))
    if prompts is None and actions is None:
        grad_logits = pi * (r_beta - (pi * r_beta).sum(-1, keepdim=True)) / pi.shape[0]
    else:
        n = actions.numel()
        sampled = r_beta[prompts, actions]
        if baseline == "none":
            advantages = sampled
        elif n < 2:
            raise ValueError(f"a leave-one-out baseline needs batch_size >= 2, got {n}")
        else:
            # A_i = r_i - mean_{j != i} r_j = (r_i - mean) n / (n - 1): the baseline ignores
            # sample i, so it does not bias the gradient (a plain batch mean would, by O(1/n)).
            advantages = (sampled - sampled.mean()) * n / (n - 1)
        grad_logits = torch.zeros_like(pi)
        grad_logits.index_put_((prompts, actions), advantages, accumulate=True)
        grad_logits.index_add_(0, prompts, -advantages[:, None] * pi[prompts])
        grad_logits /= n
    return {"table": grad_logits, "bias": grad_logits.sum(0)}


def make_step(
    reward: Tensor, *, beta: float, lr: float, batch_size: int, generator: torch.Generator
) -> Callable[[State, State], State]:
    """step(theta, theta_anchor) -> theta after one SGD ascent step of REINFORCE on a sampled
    batch: batch_size prompts drawn uniformly, one token each from pi_theta, r_beta penalised
    towards theta_anchor. Each call draws the next batch from `generator`."""
    num_prompts = reward.shape[0]

    def step(theta: State, theta_anchor: State) -> State:
        prompts = torch.randint(num_prompts, (batch_size,), generator=generator)
        actions = torch.multinomial(probs(theta)[prompts], 1, generator=generator).squeeze(1)
        grad = policy_gradient(theta, theta_anchor, reward, beta, prompts, actions)
        return {k: theta[k] + lr * grad[k] for k in theta}

    return step


def anchored_run(
    theta_init: State, step: Callable[[State, State], State], T: int, mu: float
) -> tuple[State, State]:
    """T steps from theta_init, the anchor starting at theta_init and moving by an EMA step of
    rate mu after every optimiser step (mu = 0: the anchor stays at theta_init, as in RLHF with
    an SFT anchor). Returns (theta, theta_ema)."""
    theta = {k: v.clone() for k, v in theta_init.items()}
    theta_ema = {k: v.clone() for k, v in theta_init.items()}
    for _ in range(T):
        theta = step(theta, theta_ema)
        theta_ema = ema(theta_ema, theta, mu)  # after every optimiser step, as in the paper
    return theta, theta_ema


@dataclass(frozen=True)
class ToyConfig:
    """The toy's WarpConfig: Algorithm 1's symbols (I iterations, M runs, T steps, mu EMA rate,
    eta LITI step, beta KL weight), plain SGD at rate `lr` on `batch_size` sampled (prompt, token)
    pairs per step, and the seed every run's generator derives from."""

    I: int = 3
    M: int = 2
    T: int = 50
    mu: float = 0.01
    eta: float = 0.5
    beta: float = 0.1
    lr: float = 4.0
    batch_size: int = 8
    seed: int = 0


def rl_run(theta_init: State, reward: Tensor, config: ToyConfig, generator: torch.Generator) -> tuple[State, State]:
    """One RL run from theta_init with its own EMA anchor: config.T steps of SGD ascent on sampled
    (prompt, token) batches (config's mu, beta, lr and batch_size; I, M, eta and seed are not
    used). Returns (theta_m, theta_ema)."""
    step = make_step(reward, beta=config.beta, lr=config.lr, batch_size=config.batch_size, generator=generator)
    return anchored_run(theta_init, step, config.T, config.mu)


def make_run(
    reward: Tensor,
    *,
    T: int = 50,
    mu: float = 0.01,
    beta: float = 0.1,
    lr: float = 4.0,
    batch_size: int = 8,
    seed: int = 0,
) -> Callable[[int, int, State], tuple[State, State]]:
    """run(i, m, theta_init) -> (theta_m, theta_ema): run m of WARP iteration i (both counted from
    0, as range(I) and range(M) count), trained by `rl_run` from theta_init on a generator seeded
    by core.warp.run_seed, the LM's seed of a run: runs differ, re-runs are identical."""

    def run(i: int, m: int, theta_init: State) -> tuple[State, State]:
        generator = torch.Generator().manual_seed(core_warp.run_seed(seed, i, m))
        return rl_run(theta_init, reward, ToyConfig(T=T, mu=mu, beta=beta, lr=lr, batch_size=batch_size),
                      generator)

    return run


def algorithm1(
    theta_init: State,
    run: Callable[[int, int, State], tuple[State, State]],
    *,
    I: int,
    M: int,
    eta: float,
    merge: Callable[..., State] = slerp,
) -> list[dict]:
    """Algorithm 1 around any `run(i, m, theta_init) -> (theta_m, theta_ema)`: the LM's loop
    (core.warp.algorithm1), in this process, keeping nothing but what it returns: one record per
    iteration (see `warp`)."""

    def train(i: int, m: int, theta: State, folder) -> tuple[State, State]:
        # The loop counts from 1 like the paper; `run` from 0, like the course's exercises (a
        # learner's loop calls run(i, m, theta) for i in range(I)) and the toy's pinned seeds.
        return run(i - 1, m - 1, theta)

    config = ToyConfig(I=I, M=M, eta=eta)
    theta_sft = {k: v.clone() for k, v in theta_init.items()}  # the records never alias the caller's
    history = core_warp.algorithm1(theta_sft, config, train, InProcess(), core_warp.InMemory(), merge)
    return [{"theta_init": it.theta_init, "thetas": [r.theta for r in it.runs],
             "theta_emas": [r.theta_ema for r in it.runs], "theta_merged": it.theta_slerp,
             "theta_next": it.theta_next} for it in history]


def warp(theta_sft: State, reward: Tensor, config: ToyConfig = ToyConfig(),
         merge: Callable[..., State] = slerp) -> list[dict]:
    """Algorithm 1 on the toy, with `config`'s settings. Returns one record per iteration: `theta_init`, the M trained
    policies `thetas`, their anchors `theta_emas`, `theta_merged` = merge(theta_init, thetas)
    (SLERP by default; pass `weights.lerp` for the baseline) and `theta_next` =
    liti(theta_init, theta_merged, eta), the next iteration's theta_init.

    Run m of iteration i draws from its own seeded generator: runs differ, re-runs are identical,
    and the runs of a SLERP and a LERP call with the same seed see the same first iteration."""
    run = make_run(reward, T=config.T, mu=config.mu, beta=config.beta, lr=config.lr,
                   batch_size=config.batch_size, seed=config.seed)
    return algorithm1(theta_sft, run, I=config.I, M=config.M, eta=config.eta, merge=merge)


def liti_path(
    theta_init: State, theta_merged: State, etas, reward: Tensor, theta_ref: State
) -> tuple[list[float], list[float]]:
    """(KL(pi_eta || pi_ref), E[r] under pi_eta) along the LITI segment
    theta_eta = liti(theta_init, theta_merged, eta), one pair per eta in `etas`."""
    kls, rewards = [], []
    for eta in etas:
        theta = liti(theta_init, theta_merged, float(eta))
        kls.append(kl(theta, theta_ref))
        rewards.append(expected_reward(theta, reward))
    return kls, rewards


def lmc_barrier(theta_a: State, theta_b: State, reward: Tensor, points: int = 21) -> float:
    """The reward barrier on the straight line between two policies (linear mode connectivity):

        max over interior t of [ (1 - t) R(theta_a) + t R(theta_b) - R((1 - t) theta_a + t theta_b) ],

    the largest dip of the exact expected reward R below the chord between the ends, over the
    `points` evenly spaced t in [0, 1] without the two ends. Positive: a barrier; <= 0: none (the
    reward along the line never falls below the chord at these points)."""
    if points < 3:
        raise ValueError(f"points must be >= 3 (at least one interior point), got {points}")
    ts = torch.linspace(0, 1, points, dtype=torch.float64).tolist()
    rewards = [expected_reward(liti(theta_a, theta_b, t), reward) for t in ts]
    return float(-chord_dips(ts, rewards).min())  # the deepest dip below the chord, as a height


# ----------------------------------------------------------------------------- the optimal front
#
# RLHF's objective with a KL penalty to the SFT policy, J_beta(pi) = E[r] - beta KL(pi || pi_sft),
# has a closed-form maximiser over ALL policies (the toy's table can represent any of them):
#
#     pi*_beta(y | x) = pi_sft(y | x) exp(r(x, y) / beta) / Z_beta(x),
#     J_beta(pi*_beta) = beta * mean_x log Z_beta(x)        (the value of the game),
#
# since J_beta(pi) = J_beta(pi*_beta) - beta KL(pi || pi*_beta). Sweeping beta traces the exact
# KL-reward Pareto front: no policy has more reward at the same KL to pi_sft.


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not 0.0 < float(beta) < float("inf"):  # also False for NaN
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return float(beta)


def optimal_policy(theta_sft: State, reward: Tensor, beta: float) -> State:
    """theta of pi*_beta = pi_sft exp(r / beta) / Z: table = log pi*, bias = 0."""
    beta = _check_beta(beta)
    table = torch.log_softmax(logits(theta_sft) + reward / beta, dim=-1)
    return {"table": table, "bias": torch.zeros_like(theta_sft["bias"])}


def optimal_value(theta_sft: State, reward: Tensor, beta: float) -> float:
    """max_pi E[r] - beta KL(pi || pi_sft) = beta * mean_x log sum_y pi_sft(y|x) exp(r(x,y)/beta)."""
    beta = _check_beta(beta)
    log_pi_sft = torch.log_softmax(logits(theta_sft), dim=-1)
    return float(beta * torch.logsumexp(log_pi_sft + reward / beta, dim=-1).mean())


def optimal_front(theta_sft: State, reward: Tensor, betas) -> tuple[list[float], list[float]]:
    """(KL(pi*_beta || pi_sft), E[r] under pi*_beta) for each beta: the exact Pareto front."""
    points = [optimal_policy(theta_sft, reward, beta) for beta in betas]
    return [kl(p, theta_sft) for p in points], [expected_reward(p, reward) for p in points]


def optimal_reward_at_kl(theta_sft: State, reward: Tensor, kl_budget: float) -> float:
    """max E[r] over policies with KL(pi || pi_sft) <= kl_budget, exactly (up to bisection).

    KL(pi*_beta || pi_sft) falls as beta grows, so the beta whose pi* spends the whole budget is
    found by bisection on log beta. Beyond the KL of the greedy policy (beta -> 0: all mass on
    argmax_y r) the front is flat at the best reward, mean_x max_y r(x, y)."""
    if not kl_budget >= 0.0:
        raise ValueError(f"kl_budget must be >= 0, got {kl_budget!r}")
    lo, hi = math.log(1e-8), math.log(1e8)  # KL(lo) ~ greedy KL, KL(hi) ~ 0
    if kl(optimal_policy(theta_sft, reward, math.exp(lo)), theta_sft) <= kl_budget:
        return expected_reward(optimal_policy(theta_sft, reward, math.exp(lo)), reward)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if kl(optimal_policy(theta_sft, reward, math.exp(mid)), theta_sft) > kl_budget:
            lo = mid
        else:
            hi = mid
    return expected_reward(optimal_policy(theta_sft, reward, math.exp(hi)), reward)

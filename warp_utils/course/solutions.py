"""Solutions of the notebooks' exercises, written the way a learner would write them.

Each function is graded by `warp_utils.course.exercises` against the package's own implementation (the
oracle), so the two are independent: the oracle is optimised and defensive, these are short.
State dicts are `dict[str, Tensor]`; tensors are float64 in the graders' cases.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core import weights
from . import toy

# ----------------------------------------------------------------------------- 01 reward model


def bradley_terry_loss(r_chosen, r_rejected):
    """-mean log sigma(r(y_c) - r(y_r)); logsigmoid, because log(sigmoid(d)) is -inf for d << 0."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_accuracy(r_chosen, r_rejected):
    """Share of pairs with r(y_c) > r(y_r), a tie counting half: a model with no preference is
    a coin flip, 0.5, whatever it scores."""
    wins = (r_chosen > r_rejected).double() + 0.5 * (r_chosen == r_rejected).double()
    return wins.mean().item()


# ----------------------------------------------------------------------------- 03 the objective


def objective(pi, pi_sft, reward, beta):
    """J_beta(pi) = mean_x [sum_y pi r - beta KL(pi || pi_sft)]: 0 log 0 = 0, and mass where
    pi_sft has none makes the KL +inf (log 0 = -inf), so J = -inf."""
    terms = torch.where(pi > 0, pi * (pi.log() - pi_sft.log()), 0.0)  # pi = 0: 0, not 0 * -inf
    return ((pi * reward).sum(-1) - beta * terms.sum(-1)).mean().item()


def optimal_policy(pi_sft, reward, beta):
    """pi*(y|x) = pi_sft(y|x) exp(r(x,y) / beta) / Z(x), in log space (exp(r / beta) overflows)."""
    return torch.softmax(pi_sft.log() + reward / beta, dim=-1)


def policy_gradient(logits, reward, actions, baseline):
    """REINFORCE: mean_i (r(y_i) - b_i) grad log pi(y_i), grad_z log softmax(z)_y = e_y - pi;
    b_i = the mean reward of the OTHER samples (independent of y_i: no bias), or 0."""
    pi = torch.softmax(logits, -1)
    r = reward[actions]
    n = len(actions)
    b = (r.sum() - r) / (n - 1) if baseline else torch.zeros_like(r)
    score = F.one_hot(actions, len(logits)).double() - pi  # row i: grad_z log pi(y_i)
    return ((r - b)[:, None] * score).mean(0)


# ----------------------------------------------------------------------------- 03a weight space


def ema_anchor(theta_init, trajectory, mu):
    """The anchor after len(trajectory) EMA steps, in closed form: (1 - mu)^t theta_init plus
    weight mu (1 - mu)^k for the policy of k steps ago."""
    t = len(trajectory)
    out = {k: (1 - mu) ** t * v for k, v in theta_init.items()}
    for age, theta in enumerate(reversed(trajectory)):  # age 0: the latest policy
        out = {k: out[k] + mu * (1 - mu) ** age * theta[k] for k in out}
    return out


def anchor_point(theta_sft, reward, step, mu, T):
    """T steps with an anchor that follows the policy at rate mu (mu = 0: the SFT anchor), then
    the policy's point in the KL-reward plane: KL to SFT (not to the anchor), exact reward."""
    theta, anchor = theta_sft, theta_sft
    for _ in range(T):
        theta = step(theta, anchor)
        anchor = weights.ema(anchor, theta, mu)  # after the step, as in the paper
    return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)


def slerp(theta_init, theta_1, theta_2, lam=0.5):
    """SLERP of the task vectors delta_m = theta_m - theta_init, tensor by tensor."""
    out = {}
    for k in theta_init:
        d1, d2 = theta_1[k] - theta_init[k], theta_2[k] - theta_init[k]
        n1, n2 = d1.norm(), d2.norm()
        cos = (d1.flatten() @ d2.flatten() / (n1 * n2)).clamp(-1, 1) if n1 > 0 and n2 > 0 else 1.0
        omega = math.acos(float(cos))
        if math.sin(omega) < 1e-6:  # no angle: LERP, still around theta_init
            merged = (1 - lam) * d1 + lam * d2
        else:
            s = math.sin(omega)
            merged = math.sin((1 - lam) * omega) / s * d1 + math.sin(lam * omega) / s * d2
        out[k] = theta_init[k] + merged
    return out


def warp_merge(theta_init, thetas, eta):
    """theta_init of the next iteration: SLERP of the trained runs, then LITI towards it."""
    theta_slerp = weights.slerp(theta_init, thetas)  # M >= 2 runs (Eq. 26 for M > 2)
    return {k: (1 - eta) * theta_init[k] + eta * theta_slerp[k] for k in theta_init}  # a new dict


def warp_loop(theta_sft, run, I, M, eta):
    """Algorithm 1: I iterations of M runs from theta_init, SLERP of the runs, LITI."""
    theta_init = theta_sft
    for i in range(I):
        thetas = [run(i, m, theta_init)[0] for m in range(M)]  # the policies, not their anchors
        theta_slerp = weights.slerp(theta_init, thetas)
        theta_init = weights.liti(theta_init, theta_slerp, eta)
    return theta_init


# ----------------------------------------------------------------------------- 04 the RL step


def reinforce_loss(logprobs, rewards, log_ratio, beta):
    """-mean_i (r_beta_i - mean_j r_beta_j) log pi(y_i|x_i), r_beta detached."""
    r_beta = (rewards - beta * log_ratio).detach()
    return -((r_beta - r_beta.mean()) * logprobs).mean()


def response_mask(completion_ids, eos_token_id):
    """1 on completion tokens up to and including the first EOS, 0 after it."""
    is_eos = (completion_ids == eos_token_id).long()
    return (is_eos.cumsum(-1) - is_eos == 0).long()


# ----------------------------------------------------------------------------- 05 evaluation


def sequence_kl(log_p, log_q, response_mask):
    """sum over response tokens of KL(p_t || q_t); row t of log_p predicts token t + 1."""
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, L-1)
    return (per_token * response_mask[:, 1:]).sum(-1)


def distinct_n(texts, n):
    """Unique n-grams / all n-grams, words split on whitespace, never across two texts."""
    grams = [tuple(w[i : i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0

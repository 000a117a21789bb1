"""Solutions of the notebooks' exercises, written the way a learner would write them.

Each function is graded by `warp_utils.exercises` against the package's own implementation (the
oracle), so the two are independent: the oracle is optimised and defensive, these are short.
State dicts are `dict[str, Tensor]`; tensors are float64 in the graders' cases.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import weights

# ----------------------------------------------------------------------------- 01 reward model


def bradley_terry_loss(r_chosen, r_rejected):
    """-mean log sigma(r(y_c) - r(y_r)); logsigmoid, because log(sigmoid(d)) is -inf for d << 0."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def pair_accuracy(r_chosen, r_rejected):
    """Share of pairs with r(y_c) > r(y_r), strictly: a tie is not a correct preference."""
    return (r_chosen > r_rejected).double().mean().item()


# ----------------------------------------------------------------------------- 03 weight space


def ema(theta_ema, theta, mu):
    """theta_ema <- (1 - mu) theta_ema + mu theta, as a new dict (the old anchor is left alone)."""
    return {k: (1 - mu) * theta_ema[k] + mu * theta[k] for k in theta_ema}


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


def liti(theta_init, theta_merged, eta):
    """theta_eta = (1 - eta) theta_init + eta theta_merged."""
    return {k: (1 - eta) * theta_init[k] + eta * theta_merged[k] for k in theta_init}


def exact_kl(pi_p, pi_q):
    """E_x KL(pi_p(.|x) || pi_q(.|x)) for (P, K) tables: mean over prompts of sum over tokens."""
    return (pi_p * (pi_p.log() - pi_q.log())).sum(-1).mean().item()


def optimal_policy(pi_sft, reward, beta):
    """pi*(y|x) = pi_sft(y|x) exp(r(x,y) / beta) / Z(x), in log space (exp(r / beta) overflows)."""
    return torch.softmax(pi_sft.log() + reward / beta, dim=-1)


def warp_merge(record, eta):
    """theta_init of the next iteration: LITI towards the SLERP of the trained policies."""
    theta_slerp = weights.slerp(record["theta_init"], record["thetas"])  # not record["theta_emas"]
    return weights.liti(record["theta_init"], theta_slerp, eta)


# ----------------------------------------------------------------------------- 04 the RL step


def kl_regularized_reward(rewards, log_ratio, beta):
    """r_beta = r - beta log(pi / pi_ema): a constant weight in the policy gradient, so detached."""
    return (rewards - beta * log_ratio).detach()


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

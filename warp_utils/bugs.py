"""Wrong versions of the exercises: the bugs public WARP reproductions shipped, and the classic
slips. The notebooks' "spot the bug" cells show them; tests/test_exercises.py proves that each
grader of `warp_utils.exercises` rejects every one of them.

BUGS[exercise] = {what the bug is: the buggy function}. Each function looks plausible on purpose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .weights import lerp, liti, slerp

# ----------------------------------------------------------------------------- 01


def bt_loss_swapped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()  # prefers the rejected review


def bt_loss_log_of_sigmoid(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()  # inf once sigmoid underflows


def pair_accuracy_ties_count(r_chosen, r_rejected):
    return (r_chosen >= r_rejected).double().mean().item()  # a constant model scores 100%


# ----------------------------------------------------------------------------- 03


def ema_swapped(theta_ema, theta, mu):
    return {k: mu * theta_ema[k] + (1 - mu) * theta[k] for k in theta_ema}  # horizon 1, not 1/mu


def ema_in_place(theta_ema, theta, mu):
    for k in theta_ema:  # the caller's anchor (and every alias of it) changes under its feet
        theta_ema[k].mul_(1 - mu).add_(mu * theta[k])
    return theta_ema


def slerp_full_weights(theta_init, theta_1, theta_2, lam=0.5):
    zeros = {k: torch.zeros_like(v) for k, v in theta_init.items()}  # angle of theta, not delta
    return slerp(zeros, [theta_1, theta_2], lam)


def slerp_fallback_forgets_init(theta_init, theta_1, theta_2, lam=0.5):
    out = {}
    for k in theta_init:
        d1, d2 = theta_1[k] - theta_init[k], theta_2[k] - theta_init[k]
        cos = float(d1.flatten() @ d2.flatten() / (d1.norm() * d2.norm() + 1e-30))
        omega = math.acos(max(-1.0, min(1.0, cos)))
        if math.sin(omega) < 1e-6:
            out[k] = (1 - lam) * d1 + lam * d2  # LERP of the task vectors... without theta_init
        else:
            s = math.sin(omega)
            out[k] = theta_init[k] + math.sin((1 - lam) * omega) / s * d1 + math.sin(lam * omega) / s * d2
    return out


def liti_does_nothing(theta_init, theta_merged, eta):
    theta_merged = theta_init  # the merge was overwritten by the init (an aliasing slip)
    return {k: (1 - eta) * theta_init[k] + eta * theta_merged[k] for k in theta_init}


def liti_eta_swapped(theta_init, theta_merged, eta):
    return {k: eta * theta_init[k] + (1 - eta) * theta_merged[k] for k in theta_init}


def exact_kl_reversed(pi_p, pi_q):
    return (pi_q * (pi_q.log() - pi_p.log())).sum(-1).mean().item()  # KL(q || p)


def exact_kl_summed_over_prompts(pi_p, pi_q):
    return (pi_p * (pi_p.log() - pi_q.log())).sum().item()  # P times too large


def optimal_policy_without_sft(pi_sft, reward, beta):
    return torch.softmax(reward / beta, dim=-1)  # the prior pi_sft is gone


def optimal_policy_times_beta(pi_sft, reward, beta):
    return torch.softmax(pi_sft.log() + reward * beta, dim=-1)  # beta acts the wrong way round


def warp_merge_slerp_of_emas(record, eta):
    theta_slerp = slerp(record["theta_init"], record["theta_emas"])  # the anchors, not the runs
    return liti(record["theta_init"], theta_slerp, eta)


def warp_merge_liti_does_nothing(record, eta):
    theta_init = record["theta_init"]
    theta_slerp = slerp(theta_init, record["thetas"])
    liti(theta_init, theta_slerp, eta)  # the result is dropped: the next iteration restarts here
    return theta_init


def warp_merge_lerp(record, eta):
    return liti(record["theta_init"], lerp(record["theta_init"], record["thetas"]), eta)


# ----------------------------------------------------------------------------- 04


def r_beta_not_detached(rewards, log_ratio, beta):
    return rewards - beta * log_ratio  # gradient flows through the penalty


def r_beta_plus(rewards, log_ratio, beta):
    return (rewards + beta * log_ratio).detach()  # rewards moving away from the anchor


def reinforce_loss_kl_not_detached(logprobs, rewards, log_ratio, beta):
    r_beta = rewards - beta * log_ratio  # log_ratio carries the policy's graph
    return -((r_beta - r_beta.mean()) * logprobs).mean()


def reinforce_loss_ascends(logprobs, rewards, log_ratio, beta):
    r_beta = (rewards - beta * log_ratio).detach()
    return ((r_beta - r_beta.mean()) * logprobs).mean()  # the optimiser minimises: reward goes down


def response_mask_after_eos_counted(completion_ids, eos_token_id):
    return torch.ones_like(completion_ids)  # filler tokens after EOS are scored and trained on


def response_mask_not_pad(completion_ids, eos_token_id):
    return (completion_ids != eos_token_id).long()  # eos = pad: drops the EOS, keeps filler


# ----------------------------------------------------------------------------- 05


def sequence_kl_after_eos_counted(log_p, log_q, response_mask):
    return (log_p.exp() * (log_p - log_q)).sum(-1).sum(-1)  # prompt and filler tokens too


def sequence_kl_mask_not_shifted(log_p, log_q, response_mask):
    per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    return (per_token * response_mask[:, :-1]).sum(-1)  # row t predicts token t + 1: off by one


def sequence_kl_reversed(log_p, log_q, response_mask):
    per_token = (log_q.exp() * (log_q - log_p)).sum(-1)
    return (per_token * response_mask[:, 1:]).sum(-1)


def distinct_n_across_texts(texts, n):
    words = " ".join(texts).split()  # n-grams that straddle two samples
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


BUGS = {
    "bradley_terry_loss": {"chosen and rejected swapped": bt_loss_swapped,
                           "log(sigmoid(d)) overflows": bt_loss_log_of_sigmoid},
    "pair_accuracy": {"ties counted as correct": pair_accuracy_ties_count},
    "ema": {"mu on the wrong side": ema_swapped, "updates the anchor in place": ema_in_place},
    "slerp": {"SLERP of full weights": slerp_full_weights,
              "LERP fallback forgets theta_init": slerp_fallback_forgets_init},
    "liti": {"LITI that does nothing": liti_does_nothing, "eta swapped": liti_eta_swapped},
    "exact_kl": {"reversed KL": exact_kl_reversed, "summed over prompts": exact_kl_summed_over_prompts},
    "optimal_policy": {"forgets pi_sft": optimal_policy_without_sft,
                       "r * beta instead of r / beta": optimal_policy_times_beta},
    "warp_merge": {"SLERP of the EMA models": warp_merge_slerp_of_emas,
                   "LITI that does nothing": warp_merge_liti_does_nothing,
                   "LERP instead of SLERP": warp_merge_lerp},
    "kl_regularized_reward": {"KL penalty not detached": r_beta_not_detached,
                              "penalty with the wrong sign": r_beta_plus},
    "reinforce_loss": {"KL penalty not detached": reinforce_loss_kl_not_detached,
                       "sign flipped (descends the reward)": reinforce_loss_ascends},
    "response_mask": {"tokens after EOS counted": response_mask_after_eos_counted,
                      "mask from ids != pad (eos = pad)": response_mask_not_pad},
    "sequence_kl": {"tokens after EOS counted": sequence_kl_after_eos_counted,
                    "mask not shifted": sequence_kl_mask_not_shifted,
                    "reversed KL": sequence_kl_reversed},
    "distinct_n": {"n-grams across texts": distinct_n_across_texts},
}

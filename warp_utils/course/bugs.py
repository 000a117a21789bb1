"""Wrong versions of the exercises: the bugs public WARP reproductions shipped, and the classic
slips. The notebooks' "spot the bug" cells show them; tests/test_exercises.py proves that each
grader of `warp_utils.course.exercises` rejects every one of them.

BUGS[exercise] = {what the bug is: the buggy function}. Each function looks plausible on purpose.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import toy
from ..core.weights import ema, lerp, liti, slerp

# ----------------------------------------------------------------------------- 01


def bt_loss_swapped(r_chosen, r_rejected):
    return -F.logsigmoid(r_rejected - r_chosen).mean()  # prefers the rejected review


def bt_loss_log_of_sigmoid(r_chosen, r_rejected):
    return -torch.log(torch.sigmoid(r_chosen - r_rejected)).mean()  # inf once sigmoid underflows


def pair_accuracy_ties_count(r_chosen, r_rejected):
    return (r_chosen >= r_rejected).double().mean().item()  # a constant model scores 100%


def pair_accuracy_ties_are_errors(r_chosen, r_rejected):
    return (r_chosen > r_rejected).double().mean().item()  # a constant model scores 0%, below chance


# ----------------------------------------------------------------------------- 03


def objective_reversed_kl(pi, pi_sft, reward, beta):
    kl = torch.where(pi_sft > 0, pi_sft * (pi_sft.log() - pi.log()), 0.0).sum(-1)  # KL(sft || pi)
    return ((pi * reward).sum(-1) - beta * kl).mean().item()


def objective_nan_on_zeros(pi, pi_sft, reward, beta):
    kl = (pi * (pi.log() - pi_sft.log())).sum(-1)  # 0 * log 0 = 0 * -inf = NaN
    return ((pi * reward).sum(-1) - beta * kl).mean().item()


def objective_eps_in_the_log(pi, pi_sft, reward, beta):
    eps = 1e-12  # no more NaN... and no more infinite KL: mass where pi_sft has none looks cheap
    kl = (pi * ((pi + eps).log() - (pi_sft + eps).log())).sum(-1)
    return ((pi * reward).sum(-1) - beta * kl).mean().item()


def objective_penalty_plus(pi, pi_sft, reward, beta):
    kl = torch.where(pi > 0, pi * (pi.log() - pi_sft.log()), 0.0).sum(-1)
    return ((pi * reward).sum(-1) + beta * kl).mean().item()  # rewards moving away from SFT


def optimal_policy_without_sft(pi_sft, reward, beta):
    return torch.softmax(reward / beta, dim=-1)  # the prior pi_sft is gone


def optimal_policy_times_beta(pi_sft, reward, beta):
    return torch.softmax(pi_sft.log() + reward * beta, dim=-1)  # beta acts the wrong way round


def policy_gradient_sign_flipped(logits, reward, actions, baseline):
    pi = torch.softmax(logits, -1)
    r = reward[actions]
    b = (r.sum() - r) / (len(r) - 1) if baseline else torch.zeros_like(r)
    score = pi - F.one_hot(actions, len(logits)).double()  # grad of -log pi: descends the reward
    return ((r - b)[:, None] * score).mean(0)


def policy_gradient_biased_baseline(logits, reward, actions, baseline):
    pi = torch.softmax(logits, -1)
    r = reward[actions]
    b = r.mean() if baseline else torch.zeros_like(r)  # the batch mean includes r_i itself
    score = F.one_hot(actions, len(logits)).double() - pi
    return ((r - b)[:, None] * score).mean(0)


def policy_gradient_of_pi(logits, reward, actions, baseline):
    pi = torch.softmax(logits, -1)
    r = reward[actions]
    b = (r.sum() - r) / (len(r) - 1) if baseline else torch.zeros_like(r)
    one_hot = F.one_hot(actions, len(logits)).double()
    score = pi[actions][:, None] * (one_hot - pi)  # grad pi(y), not grad log pi(y)
    return ((r - b)[:, None] * score).mean(0)


def policy_gradient_score_without_pi(logits, reward, actions, baseline):
    r = reward[actions]
    b = (r.sum() - r) / (len(r) - 1) if baseline else torch.zeros_like(r)
    score = F.one_hot(actions, len(logits)).double()  # grad log softmax(z)_y is e_y - pi, not e_y
    return ((r - b)[:, None] * score).mean(0)


# ----------------------------------------------------------------------------- 03a


def ema_anchor_swapped(theta_init, trajectory, mu):
    anchor = dict(theta_init)
    for theta in trajectory:  # mu on the wrong side: horizon 1, not 1/mu
        anchor = {k: mu * anchor[k] + (1 - mu) * theta[k] for k in anchor}
    return anchor


def ema_anchor_in_place(theta_init, trajectory, mu):
    anchor = theta_init
    for theta in trajectory:  # the caller's theta_init (and every alias of it) changes under its feet
        for k in anchor:
            anchor[k].mul_(1 - mu).add_(mu * theta[k])
    return anchor


def ema_anchor_ages_reversed(theta_init, trajectory, mu):
    t = len(trajectory)
    out = {k: (1 - mu) ** t * v for k, v in theta_init.items()}
    for age, theta in enumerate(trajectory):  # trajectory[0] is the OLDEST policy, not the latest
        out = {k: out[k] + mu * (1 - mu) ** age * theta[k] for k in out}
    return out


def ema_anchor_forgets_init(theta_init, trajectory, mu):
    out = {k: torch.zeros_like(v) for k, v in theta_init.items()}  # (1 - mu)^t theta_init is gone
    for age, theta in enumerate(reversed(trajectory)):
        out = {k: out[k] + mu * (1 - mu) ** age * theta[k] for k in out}
    return out


def anchor_point_kl_to_anchor(theta_sft, reward, step, mu, T):
    theta, anchor = theta_sft, theta_sft
    for _ in range(T):
        theta = step(theta, anchor)
        anchor = ema(anchor, theta, mu)
    return toy.kl(theta, anchor), toy.expected_reward(theta, reward)  # KL to the moving anchor


def anchor_point_of_the_anchor(theta_sft, reward, step, mu, T):
    theta, anchor = theta_sft, theta_sft
    for _ in range(T):
        theta = step(theta, anchor)
        anchor = ema(anchor, theta, mu)
    return toy.kl(anchor, theta_sft), toy.expected_reward(anchor, reward)  # measures the anchor


def anchor_point_anchor_never_moves(theta_sft, reward, step, mu, T):
    theta = theta_sft
    for _ in range(T):
        theta = step(theta, theta_sft)  # mu is ignored: an SFT anchor every time
    return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)


def anchor_point_mu_swapped(theta_sft, reward, step, mu, T):
    theta, anchor = theta_sft, theta_sft
    for _ in range(T):
        theta = step(theta, anchor)
        anchor = ema(anchor, theta, 1 - mu)  # mu = 0 makes the anchor the policy: no KL penalty at all
    return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)


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


def warp_merge_liti_does_nothing(theta_init, thetas, eta):
    theta_slerp = slerp(theta_init, thetas)
    theta_slerp = theta_init  # the merge was overwritten by the init (an aliasing slip)
    return {k: (1 - eta) * theta_init[k] + eta * theta_slerp[k] for k in theta_init}


def warp_merge_lerp(theta_init, thetas, eta):
    theta_lerp = lerp(theta_init, thetas)  # the chord: shrinks the task vectors
    return {k: (1 - eta) * theta_init[k] + eta * theta_lerp[k] for k in theta_init}


def warp_merge_skips_slerp(theta_init, thetas, eta):
    return {k: (1 - eta) * theta_init[k] + eta * thetas[-1][k] for k in theta_init}  # one run, no merge


def warp_merge_eta_swapped(theta_init, thetas, eta):
    theta_slerp = slerp(theta_init, thetas)
    return {k: eta * theta_init[k] + (1 - eta) * theta_slerp[k] for k in theta_init}


def warp_merge_in_place(theta_init, thetas, eta):
    theta_slerp = slerp(theta_init, thetas)
    for k in theta_init:  # right value, but theta_init (still held by the caller) is overwritten
        theta_init[k].mul_(1 - eta).add_(eta * theta_slerp[k])
    return theta_init


def warp_loop_slerp_of_emas(theta_sft, run, I, M, eta):
    theta_init = theta_sft
    for i in range(I):
        theta_emas = [run(i, m, theta_init)[1] for m in range(M)]  # the anchors, not the runs
        theta_init = liti(theta_init, slerp(theta_init, theta_emas), eta)
    return theta_init


def warp_loop_liti_skipped(theta_sft, run, I, M, eta):
    theta_init = theta_sft
    for i in range(I):
        thetas = [run(i, m, theta_init)[0] for m in range(M)]
        theta_init = slerp(theta_init, thetas)  # eta = 1 whatever eta says: no step back
    return theta_init


def warp_loop_runs_from_sft(theta_sft, run, I, M, eta):
    theta_init = theta_sft
    for i in range(I):
        thetas = [run(i, m, theta_sft)[0] for m in range(M)]  # every iteration restarts from SFT
        theta_init = liti(theta_init, slerp(theta_init, thetas), eta)
    return theta_init


# ----------------------------------------------------------------------------- 04


def reinforce_loss_kl_not_detached(logprobs, rewards, log_ratio, beta):
    r_beta = rewards - beta * log_ratio  # log_ratio carries the policy's graph
    return -((r_beta - r_beta.mean()) * logprobs).mean()


def reinforce_loss_penalty_plus(logprobs, rewards, log_ratio, beta):
    r_beta = (rewards + beta * log_ratio).detach()  # rewards moving away from the anchor
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
    "pair_accuracy": {"ties counted as correct": pair_accuracy_ties_count,
                      "ties counted as errors": pair_accuracy_ties_are_errors},
    "objective": {"reversed KL": objective_reversed_kl, "0 log 0 gives NaN": objective_nan_on_zeros,
                  "eps in the log hides an infinite KL": objective_eps_in_the_log,
                  "penalty with the wrong sign": objective_penalty_plus},
    "optimal_policy": {"forgets pi_sft": optimal_policy_without_sft,
                       "r * beta instead of r / beta": optimal_policy_times_beta},
    "policy_gradient": {"sign flipped (descends the reward)": policy_gradient_sign_flipped,
                        "batch-mean baseline includes the sample itself": policy_gradient_biased_baseline,
                        "gradient of pi, not of log pi": policy_gradient_of_pi,
                        "grad log pi without the -pi": policy_gradient_score_without_pi},
    "ema_anchor": {"mu on the wrong side": ema_anchor_swapped,
                   "updates theta_init in place": ema_anchor_in_place,
                   "ages reversed": ema_anchor_ages_reversed,
                   "forgets theta_init": ema_anchor_forgets_init},
    "anchor_point": {"KL to the anchor, not to SFT": anchor_point_kl_to_anchor,
                     "the anchor's point, not the policy's": anchor_point_of_the_anchor,
                     "the anchor never moves": anchor_point_anchor_never_moves,
                     "1 - mu for mu": anchor_point_mu_swapped},
    "slerp": {"SLERP of full weights": slerp_full_weights,
              "LERP fallback forgets theta_init": slerp_fallback_forgets_init},
    "warp_merge": {"LITI that does nothing": warp_merge_liti_does_nothing,
                   "LERP instead of SLERP": warp_merge_lerp,
                   "LITI towards one run, no merge": warp_merge_skips_slerp,
                   "eta swapped": warp_merge_eta_swapped,
                   "LITI in place": warp_merge_in_place},
    "warp_loop": {"SLERP of the EMA models": warp_loop_slerp_of_emas,
                  "LITI skipped": warp_loop_liti_skipped,
                  "runs started from theta_sft": warp_loop_runs_from_sft},
    "reinforce_loss": {"KL penalty not detached": reinforce_loss_kl_not_detached,
                       "KL penalty with the wrong sign": reinforce_loss_penalty_plus,
                       "sign flipped (descends the reward)": reinforce_loss_ascends},
    "response_mask": {"tokens after EOS counted": response_mask_after_eos_counted,
                      "mask from ids != pad (eos = pad)": response_mask_not_pad},
    "sequence_kl": {"tokens after EOS counted": sequence_kl_after_eos_counted,
                    "mask not shifted": sequence_kl_mask_not_shifted,
                    "reversed KL": sequence_kl_reversed},
    "distinct_n": {"n-grams across texts": distinct_n_across_texts},
}

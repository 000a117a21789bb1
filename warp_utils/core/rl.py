"""The REINFORCE loss of WARP's inner RL loop and one RL step (Algorithm 1, lines 6-9).

One RL step of run m, for a batch of prompts x:
    y ~ pi_theta(. | x)                                   sampling.generate
    r_beta(x, y) = r(x, y) - beta * log(pi_theta(y|x) / pi_ema(y|x))
    theta <- theta + lr * r_beta(x, y) * grad log pi_theta(y|x)   reinforce_loss

Rollouts live in `sampling`, log-probs and KL in `scoring`; both are re-exported here
(`from warp_utils.core.rl import generate, left_pad, decode_texts, sequence_logprobs, ...`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import BASELINES, WarpConfig
from .sampling import (  # noqa: F401  (re-exported)
    Rollout,
    check_sampling,
    completion_texts,
    decode_texts,
    draw_inverse_cdf,
    draw_multinomial,
    generate,
    generation_kwargs,
    left_pad,
    position_ids_from_mask,
    response_mask_from_completion,
    rollout_from_sequences,
    sample_with_cache,
    supports_lean_sampling,
)
from .scoring import (  # noqa: F401  (re-exported)
    RolloutScores,
    check_masks,
    check_temperature,
    exact_kl,
    next_token_log_probs,
    per_token_kl,
    score_rollout,
    sequence_logprobs,
    sum_over_response,
    taken_log_probs,
    token_logprobs,
)
from ..execution.device import backward_and_step
from ..execution.phases import phase
from .weights import ema_

# ----------------------------------------------------------------------------- the loss


def check_loss_inputs(logprobs: Tensor, rewards: Tensor, log_ratio: Tensor, beta: float,
                      baseline: str) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < math.inf:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if logprobs.ndim != 1 or logprobs.shape[0] < 1:
        raise ValueError(f"logprobs must be (B,) with B >= 1, got {tuple(logprobs.shape)}")
    for name, tensor in (("rewards", rewards), ("log_ratio", log_ratio)):
        if tensor.shape != logprobs.shape:
            raise ValueError(f"{name} must have the shape of logprobs {tuple(logprobs.shape)}, "
                             f"got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} must be finite")
    if baseline == "leave_one_out" and logprobs.shape[0] < 2:
        raise ValueError(f"batch size must be >= 2 for baseline 'leave_one_out', got "
                         f"{logprobs.shape[0]}")


def kl_regularized_reward(rewards: Tensor, log_ratio: Tensor, beta: float) -> Tensor:
    """r_beta(x, y) = r(x, y) - beta * log(pi_theta(y|x) / pi_ema(y|x)), one value per sample from
    its own log ratio. Detached: in the policy gradient it is a weight. (Differentiating the log
    ratio would add beta * E_pi[grad log pi] = 0 in expectation: dropping it is exact.)"""
    return (rewards - beta * log_ratio).detach()


def advantages(r_beta: Tensor, baseline: str) -> Tensor:
    """r_beta minus a baseline b_i that does not depend on y_i (or barely does)."""
    if baseline == "none":
        return r_beta
    if baseline == "batch_mean":
        return r_beta - r_beta.mean()
    batch_size = r_beta.shape[0]  # leave_one_out: b_i = mean of the other samples' r_beta
    return r_beta - (r_beta.sum() - r_beta) / (batch_size - 1)


def reinforce_loss(logprobs: Tensor, rewards: Tensor, log_ratio: Tensor, beta: float,
                   baseline: str = "batch_mean") -> tuple[Tensor, dict[str, float]]:
    """REINFORCE on the KL-regularized reward: loss = -mean_i (r_beta_i - b_i) log pi_theta(y_i|x_i).

    logprobs  (B,): log pi_theta(y_i|x_i) WITH grad (sequence_logprobs of the policy).
    rewards   (B,): r(x_i, y_i).
    log_ratio (B,): log pi_theta(y_i|x_i) - log pi_ema(y_i|x_i), summed over sample i's own
                    response tokens; treated as a constant.
    Returns the loss (minimizing it ascends E[r_beta]) and float metrics.

    Baselines. "none" is the literal algorithm: grad = mean_i r_beta_i grad log pi(y_i).
    Subtracting b_i leaves the expected gradient unchanged when b_i is independent of y_i (since
    E_pi[grad log pi] = 0) and cuts its variance: without it, the common offset of the rewards
    (their mean) multiplies every grad log pi and only cancels out across many batches.
    "leave_one_out" (b_i = mean_{j != i} r_beta_j, independent of y_i) is exactly unbiased.
    "batch_mean" (b_i = mean_j r_beta_j) includes r_beta_i itself, a bias that is only a scale:
    its advantage is exactly (B-1)/B times leave_one_out's, so the two point the same way and
    differ by a learning-rate factor of 1.03 at B = 32. It is the default because it is the
    textbook form, its advantages sum to zero, and it is defined at any B (B = 1: zero update).
    """
    check_loss_inputs(logprobs, rewards, log_ratio, beta, baseline)
    r_beta = kl_regularized_reward(rewards, log_ratio, beta)
    advantage = advantages(r_beta, baseline)
    loss = -(advantage * logprobs).mean()
    metrics = {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std(correction=0).item(),
        "kl_to_anchor": log_ratio.mean().item(),
        "r_beta_mean": r_beta.mean().item(),
        "advantage_std": advantage.std(correction=0).item(),
        "loss": loss.item(),
    }
    return loss, metrics


# ----------------------------------------------------------------------------- one RL step


@dataclass(frozen=True)
class StepContext:
    """How one RL step runs, beside what it trains: whether it measures the KL to SFT (a metric
    only: False skips the SFT forward, the update is the same), the precision (device.Precision:
    every forward, sampling and scoring included, under its autocast; None: plain fp32) and the
    GradScaler the optimiser steps through (fp16; None: none)."""

    measure_kl_to_sft: bool = True
    precision: object = None
    scaler: object = None


def rl_step(policy, anchor, optimizer, prompt_ids: list[list[int]], components, config: WarpConfig,
            step: StepContext = StepContext()) -> dict[str, float]:
    """One step of run m (Algorithm 1, lines 6-9), then the EMA update of the anchor:

        y ~ pi_theta(.|x);  r_beta = r(x, y) - beta * log[pi_theta(y|x) / pi_ema(y|x)]
        theta <- Adam(theta, -mean (r_beta - b) grad log pi_theta(y|x));  theta_ema <- (1-mu) theta_ema + mu theta

    `components` supplies pi_sft (`.policy`, the KL-to-SFT reference of the metrics), the tokenizer,
    the reward scorer r and the sampling settings; `step` how it runs (StepContext: KL to SFT
    measured or not, precision, scaler). Each phase is named for profilers and benchmarks
    (execution.phases). Returns the step's metrics (floats; at a KL-measuring step also
    `samples`, the batch's texts with their reward and KL to SFT)."""
    measure_kl_to_sft, precision, scaler = step.measure_kl_to_sft, step.precision, step.scaler
    autocast = precision.autocast if precision is not None else contextlib.nullcontext
    tokenizer, sampling = components.tokenizer, components.sampling
    temperature = sampling.temperature
    device = next(policy.parameters()).device
    with phase("generation"), autocast():
        ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
        rollout = generate(policy, ids.to(device), mask.to(device), sampling,
                           tokenizer.eos_token_id, tokenizer.pad_token_id)
    with phase("reward"), autocast():
        texts = decode_texts(tokenizer, rollout)
        rewards = components.reward_scorer(texts).to(device, torch.float32)

    # One forward per model; the policy's log-softmax (with grad) serves the loss and the KL to SFT.
    reference = components.policy if measure_kl_to_sft else None
    with autocast():  # the backward pass runs outside autocast, as torch.amp asks
        scores = score_rollout(policy, rollout, temperature, reference=reference)
    with phase("anchor forward"), torch.no_grad(), autocast():  # the anchor is never differentiated
        anchor_logprobs = score_rollout(anchor, rollout, temperature).logprobs
    log_ratio = scores.logprobs.detach() - anchor_logprobs
    loss, metrics = reinforce_loss(scores.logprobs, rewards, log_ratio, config.beta, config.baseline)

    if scaler is not None and scaler.is_enabled():  # fp16: scaled backward, unscaled clipping
        with phase("backward"):
            backward_and_step(loss, optimizer, scaler, config.max_grad_norm)
    else:
        with phase("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with phase("optimizer"):
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            # Freed now, not before the next backward: otherwise the next step's forward, where
            # the activations peak, also holds a model's worth of stale gradients (0.54 GB for
            # SmolLM2). Adding into None or into zeros gives the same gradient.
            optimizer.zero_grad(set_to_none=True)
    with phase("EMA"):
        ema_(anchor, policy, config.mu)  # theta_ema <- (1 - mu) theta_ema + mu theta, after the step

    metrics.update(kl_to_sft=math.nan, kl_to_sft_sampled=math.nan,
                   response_len=rollout.response_lengths.float().mean().item())
    if measure_kl_to_sft:
        metrics.update(kl_to_sft=scores.kl.mean().item(),
                       kl_to_sft_sampled=(scores.logprobs.detach() - scores.ref_logprobs).mean().item())
        # The batch itself at the KL-measuring steps, for judges the policy never sees (the
        # overoptimization curves of report.py): one record per sample, never read by training.
        metrics["samples"] = [{"text": text, "completion": completion, "reward": reward, "kl": kl}
                              for text, completion, reward, kl in zip(
                                  texts, completion_texts(tokenizer, rollout), rewards.tolist(),
                                  scores.kl.tolist())]
    return metrics

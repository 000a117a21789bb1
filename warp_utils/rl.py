"""Rollouts and the REINFORCE loss of WARP's inner RL loop (Algorithm 1, lines 6-9).

One RL step of run m, for a batch of prompts x:
    y ~ pi_theta(. | x)                                   generate
    r_beta(x, y) = r(x, y) - beta * log(pi_theta(y|x) / pi_ema(y|x))
    theta <- theta + lr * r_beta(x, y) * grad log pi_theta(y|x)   reinforce_loss

Conventions (GPT-2 style, as in the tiny profile):
- `<|endoftext|>` is bos = eos = pad (one id). A mask is therefore NEVER built from
  `ids != pad_id`: it comes from the prompt attention mask and from the first EOS of a completion.
- Prompts are left-padded; position ids are rebuilt from the attention mask (GPT-2's forward
  would otherwise count pads as positions: position ids from `arange`).
- One temperature is used for sampling, log-probs and KL, so that log pi(y|x) is the
  log-probability of the distribution y was actually drawn from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import BASELINES, SamplingConfig, WarpConfig
from .weights import ema_

# ----------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """A batch of prompts (left-padded, length P) followed by their sampled completions (length N).

    input_ids      (B, P+N): prompt + completion; after a completion's first EOS, filler tokens.
    attention_mask (B, P+N): 1 on real prompt tokens and on completion tokens up to and including
                             the first EOS; 0 on left pads and after the first EOS.
    response_mask  (B, P+N): 1 only on completion tokens up to and including the first EOS.
    prompt_length  P.
    """

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    prompt_length: int

    @property
    def prompt_ids(self) -> Tensor:
        return self.input_ids[:, : self.prompt_length]

    @property
    def prompt_mask(self) -> Tensor:
        return self.attention_mask[:, : self.prompt_length]

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_length :]

    @property
    def completion_mask(self) -> Tensor:
        return self.response_mask[:, self.prompt_length :]

    @property
    def response_lengths(self) -> Tensor:
        """Tokens per completion, the EOS included: (B,)."""
        return self.response_mask.sum(-1)


def left_pad(token_id_lists: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Stack prompts of different lengths, pads on the left so that every prompt ends at column P-1
    and generation continues right after it."""
    if len(token_id_lists) == 0:
        raise ValueError("token_id_lists must hold at least 1 sequence, got 0")
    lengths = [len(ids) for ids in token_id_lists]
    if min(lengths) < 1:
        raise ValueError("token_id_lists must not hold empty sequences (length must be >= 1)")
    width = max(lengths)
    input_ids = torch.full((len(token_id_lists), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_id_lists), width), dtype=torch.long)
    for row, ids in enumerate(token_id_lists):
        input_ids[row, width - len(ids) :] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position of each token among the real tokens of its row: left pads do not shift positions.
    Pads get 0 (any valid id; they are masked out)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask_from_completion(completion_ids: Tensor, eos_token_id: int) -> Tensor:
    """1 on completion tokens up to and including the first EOS, 0 after it.

    Generation keeps writing pad (= EOS) after a row finished, so the first EOS is the only
    reliable end marker."""
    is_eos = (completion_ids == eos_token_id).long()
    eos_seen_before = is_eos.cumsum(-1) - is_eos  # EOS tokens strictly before position t
    return (eos_seen_before == 0).long()


def check_sampling(sampling: SamplingConfig) -> None:
    """Reject a sampling config whose distribution is not defined, before any compute."""
    if isinstance(sampling.max_new_tokens, bool) or not isinstance(sampling.max_new_tokens, int) \
            or sampling.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {sampling.max_new_tokens!r}")
    if not 0.0 < sampling.temperature < math.inf:  # also False for NaN
        raise ValueError(f"temperature must be a finite number > 0, got {sampling.temperature!r}")
    top_k = sampling.top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0: disabled), got {sampling.top_k!r}")
    if not 0.0 < sampling.top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {sampling.top_p!r}")


def generation_kwargs(sampling: SamplingConfig, eos_token_id: int, pad_token_id: int) -> dict:
    """Keyword arguments of HF `generate` that sample from softmax(logits / temperature) and nothing
    else.

    Explicit kwargs override the model's generation_config and transformers' defaults, and both
    can silently change the distribution: transformers fills an unset top_k with 50, and a
    pretrained generation_config may set repetition penalties, min_p, ... . top_k=0 (not None,
    which a GenerationConfig object would replace by 50) is transformers' "no TopK warper".
    REINFORCE needs y ~ pi exactly, so every such knob is pinned to its neutral value."""
    kwargs = {
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": sampling.do_sample,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "use_cache": True,
        "num_beams": 1,
        "min_length": 0,
        "min_new_tokens": None,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "bad_words_ids": None,
        "suppress_tokens": None,
        "begin_suppress_tokens": None,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
    }
    if sampling.do_sample:
        kwargs.update(
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=None,
            typical_p=1.0,
            epsilon_cutoff=0.0,
            eta_cutoff=0.0,
        )
    return kwargs


@torch.no_grad()
def generate(
    policy,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    sampling: SamplingConfig,
    eos_token_id: int,
    pad_token_id: int,
) -> Rollout:
    """Sample one completion per prompt, batched, with the KV cache of HF `generate`.

    Randomness: the global torch RNG (seed it with torch.manual_seed). The policy is put in eval
    mode (dropout would sample from a different distribution than the one we score) and put back in
    its previous mode. HF generate rebuilds position ids from the attention mask, so left padding is
    safe. Completions have N <= max_new_tokens columns: generation stops once every row emitted EOS.
    """
    check_sampling(sampling)
    if prompt_ids.ndim != 2 or prompt_ids.shape != prompt_mask.shape:
        raise ValueError(f"prompt_ids and prompt_mask must both be (B, P), got "
                         f"{tuple(prompt_ids.shape)} and {tuple(prompt_mask.shape)}")
    if (prompt_mask.sum(-1) < 1).any():
        raise ValueError("prompt_mask must have at least 1 real token per row")
    was_training = policy.training
    policy.eval()
    try:
        sequences = policy.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            **generation_kwargs(sampling, eos_token_id, pad_token_id),
        )
    finally:
        policy.train(was_training)
    return rollout_from_sequences(sequences, prompt_mask, eos_token_id)


def rollout_from_sequences(sequences: Tensor, prompt_mask: Tensor, eos_token_id: int) -> Rollout:
    """Masks of prompt + completion: the prompt's own mask, then 1 up to the first EOS."""
    prompt_length = prompt_mask.shape[1]
    completion_mask = response_mask_from_completion(sequences[:, prompt_length:], eos_token_id)
    prompt_mask = prompt_mask.to(completion_mask)
    return Rollout(
        input_ids=sequences,
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        response_mask=torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1),
        prompt_length=prompt_length,
    )


def decode_texts(tokenizer, rollout: Rollout) -> list[str]:
    """Prompt + completion text of each row: only attended tokens, special tokens skipped, so the
    reward model never sees `<|endoftext|>` nor what was generated after it. Decoded in one piece:
    byte-level BPE may split a character across the prompt/completion boundary."""
    return [
        tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True)
        for ids, mask in zip(rollout.input_ids, rollout.attention_mask)
    ]


# ----------------------------------------------------------------------------- log-probs and KL


def check_temperature(temperature: float) -> None:
    if not 0.0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def check_masks(input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor | None = None):
    if input_ids.ndim != 2 or input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must be (B, L) with L >= 2, got {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids "
                         f"{tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
    if response_mask is None:
        return
    if response_mask.shape != input_ids.shape:
        raise ValueError(f"response_mask must have the shape of input_ids "
                         f"{tuple(input_ids.shape)}, got {tuple(response_mask.shape)}")
    if response_mask[:, 0].any():
        raise ValueError("response_mask must be 0 at position 0 (the first token has no context)")


def next_token_log_probs(model, input_ids: Tensor, attention_mask: Tensor,
                         temperature: float = 1.0) -> Tensor:
    """log softmax(logits / temperature) of the next token at every position: (B, L-1, V).
    Row t is the distribution of token t+1 given tokens <= t."""
    check_temperature(temperature)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
    ).logits[:, :-1]
    # At least float32: half-precision log-softmax over 50k tokens loses the small probabilities.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.log_softmax(logits / temperature, dim=-1)


def token_logprobs(model, input_ids: Tensor, attention_mask: Tensor,
                   temperature: float = 1.0) -> Tensor:
    """log pi(token_t | tokens_<t) under softmax(logits / temperature), t = 1..L-1: (B, L-1)."""
    check_masks(input_ids, attention_mask)
    return taken_log_probs(next_token_log_probs(model, input_ids, attention_mask, temperature), input_ids)


def taken_log_probs(log_probs: Tensor, input_ids: Tensor) -> Tensor:
    """From next-token distributions (B, L-1, V), the log-prob of the token actually taken: (B, L-1)."""
    return log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def per_token_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) over the vocabulary at every position, (B, L-1, V) -> (B, L-1); >= 0 (a clamp
    removes float rounding below 0)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp(min=0.0)


def sum_over_response(per_token: Tensor, response_mask: Tensor) -> Tensor:
    """Sum of per-token values (B, L-1) where response_mask[:, 1:] is 1: (B,). `where`, not a
    product, so that a non-finite value at a masked position cannot leak into the sum."""
    keep = response_mask[:, 1:].bool()
    return torch.where(keep, per_token, torch.zeros_like(per_token)).sum(-1)


def sequence_logprobs(model, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor,
                      temperature: float = 1.0) -> Tensor:
    """log pi(y | x) = sum over response tokens of log pi(y_t | x, y_<t): (B,). Keeps the graph when
    called with grad enabled (the policy term of the loss)."""
    check_masks(input_ids, attention_mask, response_mask)
    per_token = token_logprobs(model, input_ids, attention_mask, temperature)
    return sum_over_response(per_token, response_mask)


@torch.no_grad()
def exact_kl(policy, reference, input_ids: Tensor, attention_mask: Tensor, response_mask: Tensor,
             temperature: float = 1.0) -> Tensor:
    """sum_t KL(pi(.|x, y_<t) || pi_ref(.|x, y_<t)) over the response, each KL exact over the
    vocabulary: (B,). Its expectation under y ~ pi equals the sequence-level KL(pi || pi_ref),
    with far less variance than the single-sample estimate log pi(y) - log pi_ref(y). A metric:
    no grad."""
    check_masks(input_ids, attention_mask, response_mask)
    log_p = next_token_log_probs(policy, input_ids, attention_mask, temperature)
    log_q = next_token_log_probs(reference, input_ids, attention_mask, temperature)
    return sum_over_response(per_token_kl(log_p, log_q), response_mask)


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


def rl_step(policy, anchor, optimizer, prompt_ids: list[list[int]], components, config: WarpConfig,
            measure_kl_to_sft: bool = True) -> dict[str, float]:
    """One step of run m (Algorithm 1, lines 6-9), then the EMA update of the anchor:

        y ~ pi_theta(.|x);  r_beta = r(x, y) - beta * log[pi_theta(y|x) / pi_ema(y|x)]
        theta <- Adam(theta, -mean (r_beta - b) grad log pi_theta(y|x));  theta_ema <- (1-mu) theta_ema + mu theta

    `components` supplies pi_sft (`.policy`, the KL-to-SFT reference of the metrics), the tokenizer,
    the reward scorer r and the sampling settings. `measure_kl_to_sft=False` skips the SFT forward
    (a metric only: the update is the same). Returns the step's metrics."""
    tokenizer, sampling, temperature = components.tokenizer, components.sampling, components.sampling.temperature
    device = next(policy.parameters()).device
    ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    rollout = generate(policy, ids.to(device), mask.to(device), sampling,
                       tokenizer.eos_token_id, tokenizer.pad_token_id)
    batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
    rewards = components.reward_scorer(decode_texts(tokenizer, rollout)).to(device)

    # One forward per model: the policy's (with grad) serves the loss and both KLs to SFT.
    policy_log_probs = next_token_log_probs(policy, rollout.input_ids, rollout.attention_mask, temperature)
    logprobs = sum_over_response(taken_log_probs(policy_log_probs, rollout.input_ids), rollout.response_mask)
    with torch.no_grad():  # the anchor and the SFT policy are never differentiated
        log_ratio = logprobs.detach() - sequence_logprobs(anchor, *batch, temperature=temperature)
    loss, metrics = reinforce_loss(logprobs, rewards, log_ratio, config.beta, config.baseline)

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    optimizer.step()
    ema_(anchor, policy, config.mu)  # theta_ema <- (1 - mu) theta_ema + mu theta, after the step

    metrics.update(kl_to_sft=math.nan, kl_to_sft_sampled=math.nan,
                   response_len=rollout.response_lengths.float().mean().item())
    if measure_kl_to_sft:
        with torch.no_grad():
            sft_log_probs = next_token_log_probs(components.policy, rollout.input_ids,
                                                 rollout.attention_mask, temperature)
            sft_logprobs = sum_over_response(taken_log_probs(sft_log_probs, rollout.input_ids),
                                             rollout.response_mask)
            kl_to_sft = sum_over_response(per_token_kl(policy_log_probs.detach(), sft_log_probs),
                                          rollout.response_mask)
        metrics.update(kl_to_sft=kl_to_sft.mean().item(),
                       kl_to_sft_sampled=(logprobs.detach() - sft_logprobs).mean().item())
    return metrics

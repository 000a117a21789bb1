"""Log-probabilities and KL of rollouts: log pi(y|x), log pi_ref(y|x), exact and sampled KL.

`score_rollout` is the one scoring primitive of a rollout, used by the RL step (rl.rl_step) and
by the held-out evaluation (evaluation.evaluate_policy): one forward per model over the
prompt + completion, then the output layer, log-softmax and KL over chunks of completion positions,
so that memory is O(B x chunk x V), not O(B x L x V) (the full profile's 64 x 64 x 50257 floats
would be ~0.8 GB per tensor). One log-softmax per model and position serves both the
log-probability of the sampled token and the exact KL over the vocabulary.

The unchunked functions (`next_token_log_probs`, `sequence_logprobs`, `exact_kl`) take any
response mask and are the plain definitions the chunked primitive is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..execution.phases import phase
from .sampling import Rollout, position_ids_from_mask

# Floats in one (B, chunk, V) block of logits: chunk = max(1, CHUNK_ELEMENTS // (B * V)).
# 2^24 floats = 64 MB: the tiny profile's (32, 24, 4096) fits in one chunk, the full profile's
# (64, 54, 50257) is cut into chunks of 5 positions.
CHUNK_ELEMENTS = 1 << 24


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
    return tempered_log_softmax(logits, temperature)


def tempered_log_softmax(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / temperature) over the last dimension, in at least float32:
    half-precision log-softmax over 50k tokens loses the small probabilities."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if temperature != 1.0:  # x / 1 == x exactly: no pass over (B, N, V) for nothing
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1)


def token_logprobs(model, input_ids: Tensor, attention_mask: Tensor,
                   temperature: float = 1.0) -> Tensor:
    """log pi(token_t | tokens_<t) under softmax(logits / temperature), t = 1..L-1: (B, L-1)."""
    check_masks(input_ids, attention_mask)
    return taken_log_probs(next_token_log_probs(model, input_ids, attention_mask, temperature), input_ids)


def taken_log_probs(log_probs: Tensor, input_ids: Tensor) -> Tensor:
    """From next-token distributions (B, L-1, V), the log-prob of the token actually taken: (B, L-1)."""
    return log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def taken_log_prob(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[target] = logit[target] - logsumexp(logits), (B, N, V) -> (B, N): no
    (B, N, V) log-softmax is written when only the taken token's log-prob is needed."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


def logsumexp_(logits: Tensor) -> Tensor:
    """torch.logsumexp(logits, -1), computed in place: `logits` ends up holding exp(logits - max).
    ATen's steps in ATen's order (max; an infinite max counted as 0; exp(x - max) summed; log;
    + max), so the result is bitwise torch.logsumexp's, without its (B, N, V) temporary."""
    maxes = logits.amax(-1, keepdim=True)
    maxes.masked_fill_(maxes.abs() == math.inf, 0)
    return logits.sub_(maxes).exp_().sum(-1).log_().add_(maxes.squeeze(-1))


class _TakenLogProbFromScratch(torch.autograd.Function):
    """z_t - logsumexp(z) whose backward writes d/dz = onehot(t) - softmax(z), times the incoming
    gradient, into z's own storage. autograd's graph through gather and logsumexp computes the same
    numbers (-g * exp(z - lse), plus g at the taken token: the same operations, bitwise) in three
    fresh (B, N, V) tensors (the exp, the product, the zeros of gather's backward); on the tiny
    policy those allocations were ~10% of an RL step."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        lse = torch.logsumexp(logits, -1)
        ctx.save_for_backward(logits, targets, lse)
        return logits.gather(-1, targets[..., None]).squeeze(-1) - lse

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, targets, lse = ctx.saved_tensors
        grad_logits = logits.sub_(lse[..., None]).exp_().mul_(grad.neg()[..., None])  # -g softmax(z)
        return grad_logits.scatter_add_(-1, targets[..., None], grad[..., None]), None


def taken_log_prob_from_scratch(logits: Tensor, targets: Tensor) -> Tensor:
    """`taken_log_prob` (bitwise the same value and gradient) for logits that are scratch: nothing
    else may read them afterwards. Without grad they are overwritten now (an in-place logsumexp);
    with grad, by the backward pass, which turns them into their own gradient. A second backward
    through them is an error (autograd sees the in-place change), never a silent wrong gradient."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if torch.is_grad_enabled() and logits.requires_grad:
        return _TakenLogProbFromScratch.apply(logits, targets)
    taken = logits.gather(-1, targets[..., None]).squeeze(-1)  # before logsumexp_ overwrites them
    return taken - logsumexp_(logits)


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


# ----------------------------------------------------------------------------- the scoring primitive


@dataclass
class RolloutScores:
    """Per-sequence scores of a rollout (all (B,), sums over each completion up to its first EOS).

    logprobs      log pi(y|x); keeps the graph when scored with grad enabled (the policy term).
    ref_logprobs  log pi_ref(y|x) (None without a reference); log_ratio = logprobs - ref_logprobs
                  is the single-sample KL estimate the paper plots.
    kl            sum_t KL(pi(.|x, y_<t) || pi_ref(.|x, y_<t)), each KL exact over the vocabulary
                  (None without a reference); no grad.
    """

    logprobs: Tensor
    ref_logprobs: Tensor | None = None
    kl: Tensor | None = None


def completion_hidden(model, rollout: Rollout):
    """One forward of `model` over prompt + completion. Returns (features, head): features at the
    positions P-1 .. L-2, those that predict the completion tokens (B, N, .), and the function
    turning features into logits. For GPT-2 the features are the final hidden states and the head
    is the output layer, applied later chunk by chunk (GPT-2 and Llama: a base model, then lm_head
    without bias); other models return their logits."""
    P = rollout.prompt_length
    inputs = dict(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                  position_ids=position_ids_from_mask(rollout.attention_mask))
    base = BASE_MODELS.get(getattr(model.config, "model_type", None))
    head = getattr(model, "lm_head", None)
    if base and head is not None and head.bias is None:  # logits = lm_head(base(x))
        return getattr(model, base)(**inputs)[0][:, P - 1 : -1], head
    return model(**inputs).logits[:, P - 1 : -1], (lambda logits: logits)


BASE_MODELS = {"gpt2": "transformer", "llama": "model"}  # model type -> attribute of its base model


def chunk_length(batch_size: int, vocab_size: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, batch_size * vocab_size))


def score_rollout(policy, rollout: Rollout, temperature: float, reference=None,
                  chunk_size: int | None = None) -> RolloutScores:
    """log pi(y|x) and, with a reference, log pi_ref(y|x) and the exact KL(pi || pi_ref), all under
    softmax(logits / temperature): two forwards at most, then per chunk of positions one
    log-softmax per model shared by the log-probs and the KL (without a reference, one logsumexp:
    log pi(y_t) = z_t - logsumexp(z)). GPT-2's head is linear without bias, so the temperature
    divides the hidden states before it (lm_head(h / T) = logits / T), not the vocabulary-wide logits.

    The policy is scored with grad when grad is enabled (call it under torch.no_grad() for a
    metric); the reference never is. Its phases ("policy forward", "reference forward",
    "log-softmax + KL") are named for profilers and benchmarks (execution.phases)."""
    check_temperature(temperature)
    targets = rollout.completion_ids  # (B, N)
    keep = rollout.completion_mask.bool()
    with phase("policy forward"):
        features, head = completion_hidden(policy, rollout)
    if reference is not None:
        with phase("reference forward"), torch.no_grad():
            ref_features, ref_head = completion_hidden(reference, rollout)
    vocab_size = getattr(policy.config, "vocab_size", None) or features.shape[-1]
    step = chunk_size or chunk_length(targets.shape[0], vocab_size)
    logprobs, ref_logprobs, kls = [], [], []
    with phase("log-softmax + KL"):
        for start in range(0, targets.shape[1], step):
            window = slice(start, start + step)
            # head(h / T) = logits / T for GPT-2's linear head: T divides C features, not V logits
            logits = head(features[:, window] / temperature)
            if reference is None:  # log-probs only: no (B, chunk, V) log-softmax to write
                logprobs.append(taken_log_prob_from_scratch(logits, targets[:, window]))  # logits: this chunk's
                continue
            log_p = tempered_log_softmax(logits, 1.0)
            logprobs.append(log_p.gather(-1, targets[:, window, None]).squeeze(-1))
            with torch.no_grad():
                log_q = tempered_log_softmax(ref_head(ref_features[:, window] / temperature), 1.0)
                ref_logprobs.append(log_q.gather(-1, targets[:, window, None]).squeeze(-1))
                kls.append(per_token_kl(log_p.detach(), log_q))

    def total(parts):  # `where`, not a product: a non-finite value after EOS cannot leak in
        values = torch.cat(parts, dim=1)
        return torch.where(keep, values, torch.zeros_like(values)).sum(-1)

    if reference is None:
        return RolloutScores(total(logprobs))
    return RolloutScores(total(logprobs), total(ref_logprobs), total(kls))

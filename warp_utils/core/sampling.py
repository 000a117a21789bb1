"""Rollouts y ~ pi_theta(. | x): left-padded prompts, batched sampling with a KV cache, masks.

Conventions (GPT-2 style, as in the tiny profile):
- `<|endoftext|>` is bos = eos = pad (one id). A mask is therefore NEVER built from
  `ids != pad_id`: it comes from the prompt attention mask and from the first EOS of a completion.
- Prompts are left-padded; position ids are rebuilt from the attention mask (GPT-2's forward
  would otherwise count pads as positions: position ids from `arange`).
- One temperature is used for sampling, log-probs and KL, so that log pi(y|x) is the
  log-probability of the distribution y was actually drawn from.

Three samplers draw from the same distribution softmax(logits / temperature):
- `gpt2_sampling.sample_gpt2` for GPT-2 (the tiny and full policies): the lean loop running GPT-2's
  blocks itself, without transformers' per-call machinery; tested token for token against HF.
- `llama_sampling.sample_llama`, the same for Llama-architecture policies (SmolLM2).
- `sample_with_cache`, the lean loop (plain temperature sampling, causal LMs that take a `cache`):
  one forward per token and one uniform number per row and token (inverse CDF). It replays
  HF `generate` token for token when given `draw=draw_multinomial` (tested), which is how its
  loop (cache, positions, finished rows) is checked; the inverse-CDF draw is ~6x cheaper than
  `torch.multinomial`, whose exponential noise per vocabulary entry dominated generation here.
- HF `generate`, for top-k / top-p and models the lean loop does not support.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import SamplingConfig, check_sampling
from .decoding import decode
from .gpt2_sampling import sample_gpt2, supports_gpt2_blocks
from .llama_sampling import REVISION as LLAMA_REVISION, sample_llama, supports_llama_layers

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


def draw_inverse_cdf(probs: Tensor) -> Tensor:
    """One token per row of `probs` (B, V): the first index whose cumulative probability exceeds
    u * total, u ~ U[0, 1) (one uniform per row, global torch RNG). Exact sampling: token k is drawn
    with probability probs[k] / total (float64 cumulative sums); a zero-probability token never is."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(1)


def draw_multinomial(probs: Tensor) -> Tensor:
    """HF generate's draw (`torch.multinomial`): same tokens as HF under the same seed, slower."""
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def supports_lean_sampling(policy, sampling: SamplingConfig) -> bool:
    """The lean loop does plain temperature sampling (no top-k / top-p) of a causal LM whose
    forward takes a `cache` and `logits_to_keep` (GPT-2 in transformers 5)."""
    import inspect

    plain = sampling.do_sample and sampling.top_k == 0 and sampling.top_p == 1.0
    parameters = inspect.signature(policy.forward).parameters
    return plain and "cache" in parameters and "logits_to_keep" in parameters


@torch.no_grad()
def sample_with_cache(policy, prompt_ids: Tensor, prompt_mask: Tensor, sampling: SamplingConfig,
                      eos_token_id: int, pad_token_id: int, draw=draw_inverse_cdf) -> Tensor:
    """prompt + completion ids (B, P+N), N <= max_new_tokens: HF `generate`'s sampling loop without
    its per-token machinery (logits processors, stopping criteria objects, generation config).

    One forward per token over the new token only (KV cache), positions counted from the
    attention mask, logits of the last position only. A finished row keeps being fed (the batch
    stays rectangular) and gets pad_token_id; the loop stops once every row emitted EOS."""
    from transformers import DynamicCache

    cache = DynamicCache(config=policy.config)
    attention_mask = prompt_mask.long()

    def forward(tokens: Tensor, positions: Tensor, step: int) -> Tensor:
        nonlocal attention_mask
        if step:  # the token fed now is attended from here on
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(tokens), 1)], dim=1)
        logits = policy(input_ids=tokens, attention_mask=attention_mask, position_ids=positions,
                        cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits.float() / sampling.temperature

    return decode(forward, prompt_ids, prompt_mask, sampling.max_new_tokens, eos_token_id, pad_token_id, draw)


@torch.no_grad()
def generate(
    policy,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    sampling: SamplingConfig,
    eos_token_id: int,
    pad_token_id: int,
    lean: bool | None = None,
) -> Rollout:
    """Sample one completion per prompt, batched, with a KV cache.

    lean: None picks `sample_with_cache` when `supports_lean_sampling`, else HF `generate`;
    True / False force one (True on an unsupported config is a ValueError).
    Randomness: the global torch RNG (seed it with torch.manual_seed). The policy is put in eval
    mode (dropout would sample from a different distribution than the one we score) and put back in
    its previous mode. Positions come from the attention mask, so left padding is safe.
    Completions have N <= max_new_tokens columns: generation stops once every row emitted EOS.
    """
    check_sampling(sampling)
    if prompt_ids.ndim != 2 or prompt_ids.shape != prompt_mask.shape:
        raise ValueError(f"prompt_ids and prompt_mask must both be (B, P), got "
                         f"{tuple(prompt_ids.shape)} and {tuple(prompt_mask.shape)}")
    if (prompt_mask.sum(-1) < 1).any():
        raise ValueError("prompt_mask must have at least 1 real token per row")
    supported = supports_lean_sampling(policy, sampling)
    if lean and not supported:
        raise ValueError("lean=True needs plain temperature sampling (top_k 0, top_p 1) of a model "
                         "whose forward takes `cache` and `logits_to_keep`")
    was_training = policy.training
    policy.eval()
    try:
        use_lean = supported if lean is None else lean
        if use_lean and supports_gpt2_blocks(policy):
            sequences = sample_gpt2(policy, prompt_ids, prompt_mask, sampling, eos_token_id, pad_token_id,
                                    draw=draw_inverse_cdf)
        elif use_lean and supports_llama_layers(policy):
            sequences = sample_llama(policy, prompt_ids, prompt_mask, sampling, eos_token_id, pad_token_id,
                                     draw=draw_inverse_cdf)
        elif use_lean:
            sequences = sample_with_cache(policy, prompt_ids, prompt_mask, sampling, eos_token_id,
                                          pad_token_id)
        else:
            sequences = policy.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                                        **generation_kwargs(sampling, eos_token_id, pad_token_id))
    finally:
        policy.train(was_training)
    return rollout_from_sequences(sequences, prompt_mask, eos_token_id)


def sampler_revision(policy) -> dict:
    """The sampler's own numerics version, for a run's config: {} for the loops that never changed
    since runstore.STEP_VERSION last moved (GPT-2's, HF's), so their runs keep the keys they were
    stamped with; {"llama_sampler": n} for the Llama loop, revised since."""
    return {"llama_sampler": LLAMA_REVISION} if supports_llama_layers(policy) else {}


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


def completion_texts(tokenizer, rollout: Rollout) -> list[str]:
    """The completion alone of each row (up to and including the first EOS, special tokens
    skipped): what the policy wrote, for judges that must not see the prompt."""
    return [
        tokenizer.decode(ids[mask.bool()].tolist(), skip_special_tokens=True)
        for ids, mask in zip(rollout.completion_ids, rollout.completion_mask)
    ]

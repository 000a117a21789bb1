"""Sampling from a Llama-architecture policy (SmolLM2) by running its decoder layers directly, as
`gpt2_sampling` does for GPT-2: transformers' per-call machinery (cache objects, mask builders,
rotary bookkeeping, output classes) is a large share of a decoding step on a CPU.

The same modules in the same order as transformers' Llama forward: embed_tokens; per layer
input_layernorm, q/k/v projections, rotary embedding of queries and keys, grouped-query scaled dot
product attention, o_proj, post_attention_layernorm, gated MLP; norm; lm_head. Keys and values are
written in place into one buffer per layer (decoding.KeyValues); the loop is decoding.decode. The temperature divides the
last hidden state instead of the logits: lm_head is linear without bias, so lm_head(h / t) =
lm_head(h) / t, and the division touches 576 numbers per row instead of 49,152.
Tested token for token against HF `generate` on a float64 random Llama (tests/test_llama_sampling.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import blocked_matmul
from .decoding import Attention, KeyValues, decode

# Which version of this loop's numerics trained a run (runstore's run config keeps it, so a run of
# an older loop is stale). 2: `linear` as (W @ x^T)^T; the draws moved (a smol run diverged).
# 3: float32 weights prepacked for oneDNN (Linears): other rounding, other draws.
# 4: blocked_matmul's kernel, in MKL's order of sums (generate's logits), F.linear as the fallback.
REVISION = 4


def supports_llama_layers(policy) -> bool:
    """A Llama whose attention is the plain rotary, grouped-query attention this loop computes."""
    config = getattr(policy, "config", None)
    head = getattr(policy, "lm_head", None)
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return (getattr(config, "model_type", None) == "llama" and hasattr(policy, "model")
            and head is not None and head.bias is None
            and rope.get("rope_type", "default") == "default"
            and not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False))


def linear(x: Tensor, module) -> Tensor:
    """module(x) for a bias-free nn.Linear, as transformers computes it. The fallback of Linears."""
    return F.linear(x, module.weight)


def can_use_kernel(policy) -> bool:
    """float32 weights on a CPU that runs blocked_matmul's kernel, outside autocast."""
    weight = policy.lm_head.weight
    return (weight.dtype == torch.float32 and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and blocked_matmul.available())


class Linears:
    """The bias-free linear layers of a policy as one rollout computes them. Decoding is bound by
    reading the weights (16 rows against 576-49,152 columns): blocked_matmul's kernel streams them,
    laid out once per rollout, faster than MKL's matmul and in MKL's order of sums, so the logits
    are generate's (benchmarks/smol_sampler.py). The layout costs one copy of the weights while the
    rollout lasts; the weights do not change during it. Elsewhere (float64, autocast, no kernel)
    it is `linear`."""

    def __init__(self, policy):
        self.packed = {}
        if can_use_kernel(policy):
            self.packed = {module: blocked_matmul.pack(module.weight)
                           for module in policy.modules() if isinstance(module, torch.nn.Linear)}

    def __call__(self, x: Tensor, module) -> Tensor:
        packed = self.packed.get(module)
        return linear(x, module) if packed is None else blocked_matmul.matmul(x, packed)

    def head(self, h: Tensor, lm_head, temperature: float) -> Tensor:
        """lm_head(h) / temperature, computed as lm_head(h / temperature): the division touches 576
        numbers per row instead of 49,152 (the same up to float32 rounding)."""
        return self(h / temperature, lm_head)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x (B, H, T, D) at the positions cos/sin (B, 1, T, D) were computed for."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@dataclass
class Step:
    """What every layer of one decoding step shares: the cache, the linear layers, the first
    position it writes, where each query may attend (B, 1, T, start + T), rotary (cos, sin) there."""

    cache: KeyValues
    linear: Linears
    start: int
    allowed: Tensor
    rotary: tuple[Tensor, Tensor]


def layer_forward(layer, x: Tensor, index: int, step: Step) -> Tensor:
    """Llama decoder layer `index` over positions step.start .. step.start + T - 1 of x (B, T, C)."""
    B, T, _ = x.shape
    project, cache, start, allowed, rotary = step.linear, step.cache, step.start, step.allowed, step.rotary
    attention = layer.self_attn
    D = attention.head_dim
    h = layer.input_layernorm(x)
    query = project(h, attention.q_proj).view(B, T, -1, D).transpose(1, 2)
    key = project(h, attention.k_proj).view(B, T, -1, D).transpose(1, 2)
    value = project(h, attention.v_proj).view(B, T, -1, D).transpose(1, 2)
    cos, sin = rotary
    keys, values = cache.write(index, start, rotate(key, cos, sin), value)
    attended = F.scaled_dot_product_attention(rotate(query, cos, sin), keys, values, attn_mask=allowed,
                                              scale=attention.scaling, enable_gqa=True)
    x = project(attended.transpose(1, 2).reshape(B, T, -1), attention.o_proj) + x
    mlp, h = layer.mlp, layer.post_attention_layernorm(x)
    return x + project(mlp.act_fn(project(h, mlp.gate_proj)) * project(h, mlp.up_proj), mlp.down_proj)


def rotary_at(model, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """(cos, sin) of the model's rotary embedding at `positions` (B, T), shaped (B, 1, T, D)."""
    cos, sin = model.rotary_emb(x, positions)
    return cos[:, None], sin[:, None]


@torch.no_grad()
def sample_llama(policy, prompt_ids: Tensor, prompt_mask: Tensor, sampling, eos_token_id: int,
                 pad_token_id: int, draw) -> Tensor:
    """prompt + completion ids (B, P + N), N <= max_new_tokens, by decoding.decode as
    `gpt2_sampling.sample_gpt2`: token t ~ softmax(logits_t / temperature) drawn by `draw`,
    positions from the attention mask (left padding), pad_token_id after a row's EOS."""
    model, layers = policy.model, policy.model.layers
    cache = KeyValues(len(layers), prompt_ids.shape[1] + sampling.max_new_tokens)
    attention, linears = Attention(prompt_mask, sampling.max_new_tokens), Linears(policy)

    def forward(tokens: Tensor, positions: Tensor, step: int) -> Tensor:
        start, mask = attention.at(step)
        x = model.embed_tokens(tokens)
        shared = Step(cache, linears, start, mask, rotary_at(model, x, positions))
        for index, layer in enumerate(layers):
            x = layer_forward(layer, x, index, shared)
        return linears.head(model.norm(x[:, -1]), policy.lm_head, sampling.temperature)

    return decode(forward, prompt_ids, prompt_mask, sampling.max_new_tokens, eos_token_id, pad_token_id, draw)

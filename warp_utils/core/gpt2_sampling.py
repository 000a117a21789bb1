"""Sampling from GPT-2 by running its blocks directly: the lean sampler's decoding loop without
transformers' per-call machinery (cache objects, mask builders, output classes), which on the
tiny policy (2 blocks of width 128) costs more than the blocks themselves.

The same modules in the same order as transformers' GPT-2 forward (wte + wpe, then per block
ln_1, c_attn, scaled_dot_product_attention, c_proj, ln_2, mlp; ln_f, lm_head), with the keys
and values written in place into one buffer per block; the loop around it is decoding.decode. Tested token for token against HF
`generate` under the same seed (tests/test_sampling.py); `sampling.generate` picks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoding import Attention, KeyValues, decode


def supports_gpt2_blocks(policy) -> bool:
    """A GPT-2 whose attention is the plain scaled dot product this loop computes."""
    config = getattr(policy, "config", None)
    head = getattr(policy, "lm_head", None)
    return (getattr(config, "model_type", None) == "gpt2" and hasattr(policy, "transformer")
            and head is not None and head.bias is None
            and getattr(config, "scale_attn_weights", True)
            and not getattr(config, "scale_attn_by_inverse_layer_idx", False)
            and not getattr(config, "reorder_and_upcast_attn", False)
            and not getattr(config, "add_cross_attention", False))


def block_forward(block, x: Tensor, cache: KeyValues, index: int, start: int, allowed: Tensor) -> Tensor:
    """One GPT-2 block over the positions start .. start + T - 1 of x (B, T, C); `allowed` (B, 1, T,
    start + T) says which positions each query attends to."""
    B, T, C = x.shape
    heads = block.attn.num_heads

    def split(t):
        return t.view(B, T, heads, C // heads).transpose(1, 2)

    query, key, value = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
    keys, values = cache.write(index, start, split(key), split(value))
    attended = F.scaled_dot_product_attention(split(query), keys, values, attn_mask=allowed,
                                              scale=block.attn.scaling)
    x = block.attn.c_proj(attended.transpose(1, 2).reshape(B, T, C)) + x
    return x + block.mlp(block.ln_2(x))


@torch.no_grad()
def sample_gpt2(policy, prompt_ids: Tensor, prompt_mask: Tensor, sampling, eos_token_id: int,
                pad_token_id: int, draw) -> Tensor:
    """prompt + completion ids (B, P + N), N <= max_new_tokens, by decoding.decode: token t ~
    softmax(logits_t / temperature) drawn by `draw`, positions from the attention mask, pad_token_id
    after a row's EOS, stop once every row emitted EOS."""
    transformer, blocks = policy.transformer, policy.transformer.h
    cache = KeyValues(len(blocks), prompt_ids.shape[1] + sampling.max_new_tokens)
    attention = Attention(prompt_mask, sampling.max_new_tokens)

    def forward(tokens: Tensor, positions: Tensor, step: int) -> Tensor:
        start, mask = attention.at(step)
        x = transformer.wte(tokens) + transformer.wpe(positions)
        for index, block in enumerate(blocks):
            x = block_forward(block, x, cache, index, start, mask)
        return policy.lm_head(transformer.ln_f(x[:, -1])).float() / sampling.temperature

    return decode(forward, prompt_ids, prompt_mask, sampling.max_new_tokens, eos_token_id, pad_token_id, draw)

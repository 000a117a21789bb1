"""Sampling from GPT-2 by running its blocks directly: the lean sampler's decoding loop without
transformers' per-call machinery (cache objects, mask builders, output classes), which on the
tiny policy (2 blocks of width 128) costs more than the blocks themselves.

The same modules in the same order as transformers' GPT-2 forward (wte + wpe, then per block
ln_1, c_attn, scaled_dot_product_attention, c_proj, ln_2, mlp; ln_f, lm_head), with the keys
and values written in place into one buffer per block. Tested token for token against HF
`generate` under the same seed (tests/test_sampling.py); `sampling.generate` picks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def next_token(logits: Tensor, temperature: float, unfinished: Tensor, eos_token_id: int, pad_token_id: int,
               draw) -> Tensor:
    """One token per row ~ softmax(logits / temperature) (drawn by `draw`), pad_token_id for rows
    that already ended; rows that emit EOS now are marked ended in `unfinished` (in place)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    token = torch.where(unfinished, draw(probs), pad_token_id)
    unfinished &= token != eos_token_id
    return token


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


class KeyValues:
    """Keys and values of every block, (B, H, P + N, D) each, filled position by position."""

    def __init__(self, blocks: int, length: int):
        self.length, self.keys, self.values = length, [None] * blocks, [None] * blocks

    def write(self, block: int, start: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' keys and values; return every position's up to the last new one."""
        if self.keys[block] is None:  # dtype and device of the first write (autocast may give bf16)
            shape = (*keys.shape[:2], self.length, keys.shape[-1])
            self.keys[block], self.values[block] = keys.new_empty(shape), values.new_empty(shape)
        end = start + keys.shape[2]
        self.keys[block][:, :, start:end] = keys
        self.values[block][:, :, start:end] = values
        return self.keys[block][:, :, :end], self.values[block][:, :, :end]


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


def prompt_mask_4d(prompt_mask: Tensor) -> Tensor:
    """(B, 1, P, P): causal and not padding. A padding query (left of a row's first token) attends
    to itself only: its output is never attended to, and a row with no allowed key would be NaN."""
    P = prompt_mask.shape[1]
    causal = torch.ones(P, P, dtype=torch.bool, device=prompt_mask.device).tril()
    itself = torch.eye(P, dtype=torch.bool, device=prompt_mask.device)
    return (causal & prompt_mask.bool()[:, None, :])[:, None] | itself


@torch.no_grad()
def sample_gpt2(policy, prompt_ids: Tensor, prompt_mask: Tensor, sampling, eos_token_id: int,
                pad_token_id: int, draw) -> Tensor:
    """prompt + completion ids (B, P + N), N <= max_new_tokens, as `sampling.sample_with_cache`:
    token t ~ softmax(logits_t / temperature) drawn by `draw`, positions from the attention mask,
    pad_token_id after a row's EOS, stop once every row emitted EOS."""
    transformer, blocks = policy.transformer, policy.transformer.h
    B, P = prompt_ids.shape
    cache = KeyValues(len(blocks), P + sampling.max_new_tokens)
    allowed = torch.zeros(B, 1, 1, P + sampling.max_new_tokens, dtype=torch.bool, device=prompt_ids.device)
    allowed[:, 0, 0, :P] = prompt_mask.bool()
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
    x, mask, start = transformer.wte(prompt_ids) + transformer.wpe(positions), prompt_mask_4d(prompt_mask), 0
    unfinished = torch.ones(B, dtype=torch.bool, device=prompt_ids.device)
    tokens = []
    for step in range(sampling.max_new_tokens):
        for index, block in enumerate(blocks):
            x = block_forward(block, x, cache, index, start, mask)
        token = next_token(policy.lm_head(transformer.ln_f(x[:, -1])), sampling.temperature, unfinished,
                           eos_token_id, pad_token_id, draw)
        tokens.append(token)
        if not unfinished.any():
            break
        start, positions = P + step, positions[:, -1:] + 1
        allowed[:, 0, 0, start] = True
        x, mask = transformer.wte(token[:, None]) + transformer.wpe(positions), allowed[..., : start + 1]
    return torch.cat([prompt_ids, torch.stack(tokens, dim=1)], dim=1)

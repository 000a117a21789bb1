"""The decoding loop every lean sampler shares: draw a token per row from the last position's
distribution, pad rows that already ended, stop once every row emitted EOS, feed the new token at
the next position. Only the forward differs between models (gpt2_sampling, llama_sampling, and
sampling.sample_with_cache for any causal LM that takes a cache): each is handed to `decode` as a
function of (new tokens, their positions, step) that returns the next token's tempered logits."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

# forward(tokens (B, T), positions (B, T), step) -> logits / temperature at the last position (B, V)
Forward = Callable[[Tensor, Tensor, int], Tensor]


def next_token(logits: Tensor, temperature: float, unfinished: Tensor, eos_token_id: int, pad_token_id: int,
               draw) -> Tensor:
    """One token per row ~ softmax(logits / temperature) (drawn by `draw`), pad_token_id for rows
    that already ended; rows that emit EOS now are marked ended in `unfinished` (in place)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    token = torch.where(unfinished, draw(probs), pad_token_id)
    unfinished &= token != eos_token_id
    return token


def prompt_positions(prompt_mask: Tensor) -> Tensor:
    """Position ids counted from the attention mask: left pads do not count (they sit at 0)."""
    return (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)


def decode(forward: Forward, prompt_ids: Tensor, prompt_mask: Tensor, max_new_tokens: int,
           eos_token_id: int, pad_token_id: int, draw) -> Tensor:
    """prompt + completion ids (B, P + N), N <= max_new_tokens. The forward returns logits already
    divided by the temperature (each model divides where it is cheapest), so the draw's is 1."""
    unfinished = torch.ones(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    inputs, positions, tokens = prompt_ids, prompt_positions(prompt_mask), []
    for step in range(max_new_tokens):
        token = next_token(forward(inputs, positions, step), 1.0, unfinished, eos_token_id, pad_token_id, draw)
        tokens.append(token)
        if not unfinished.any():
            break
        inputs, positions = token[:, None], positions[:, -1:] + 1
    return torch.cat([prompt_ids, torch.stack(tokens, dim=1)], dim=1)


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


def prompt_mask_4d(prompt_mask: Tensor) -> Tensor:
    """(B, 1, P, P): causal and not padding. A padding query (left of a row's first token) attends
    to itself only: its output is never attended to, and a row with no allowed key would be NaN."""
    P = prompt_mask.shape[1]
    causal = torch.ones(P, P, dtype=torch.bool, device=prompt_mask.device).tril()
    itself = torch.eye(P, dtype=torch.bool, device=prompt_mask.device)
    return (causal & prompt_mask.bool()[:, None, :])[:, None] | itself


class Attention:
    """Where each query may attend at each step of `decode`, and the first cache position it
    writes: step 0 is the prompt (prompt_mask_4d, from 0); step s feeds one token at P + s - 1,
    which sees the prompt's real tokens and every token sampled so far."""

    def __init__(self, prompt_mask: Tensor, max_new_tokens: int):
        B, self.P = prompt_mask.shape
        self.prompt = prompt_mask_4d(prompt_mask)
        self.allowed = torch.zeros(B, 1, 1, self.P + max_new_tokens, dtype=torch.bool, device=prompt_mask.device)
        self.allowed[:, 0, 0, : self.P] = prompt_mask.bool()

    def at(self, step: int) -> tuple[int, Tensor]:
        """(start, mask) of step `step`'s input."""
        if step == 0:
            return 0, self.prompt
        start = self.P + step - 1
        self.allowed[:, 0, 0, start] = True
        return start, self.allowed[..., : start + 1]

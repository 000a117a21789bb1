"""Prompts x for RL: the first `prompt_tokens` (10) policy tokens of each IMDB review.

Train prompts feed WARP training; test prompts are held out for evaluation. Reviews shorter
than the prompt length are excluded and counted. Order: a seeded shuffle (the local files are
sorted by label, and a prefix of them would be all negative).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import torch

from .artifacts import build_once, read_stamp
from .config import Profile, artifacts_dir, get_profile, to_dict
from .data import SPLITS, load_imdb


def first_tokens(texts: list[str], tokenizer, length: int) -> tuple[list[list[int]], list[int]]:
    """The first `length` token ids (no special tokens) of each text long enough, and the
    indices of those texts: shorter ones are excluded rather than padded."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    prompts, kept = [], []
    for start in range(0, len(texts), 1024):
        encoded = tokenizer(texts[start : start + 1024], add_special_tokens=False)["input_ids"]
        for offset, ids in enumerate(encoded):
            if len(ids) >= length:
                prompts.append(ids[:length])
                kept.append(start + offset)
    return prompts, kept


def build_prompt_split(dataset: datasets.Dataset, tokenizer, length: int, seed: int, limit: int | None):
    """Seeded-shuffled prompts of one split (columns input_ids, text, label) and the number of
    reviews excluded for being shorter than `length` tokens."""
    dataset = dataset.shuffle(seed=seed)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    ids, kept = first_tokens(dataset["text"], tokenizer, length)
    labels = dataset["label"]
    table = datasets.Dataset.from_dict(
        {"input_ids": ids, "text": tokenizer.batch_decode(ids), "label": [labels[i] for i in kept]}
    )
    return table, len(dataset) - len(kept)


def _build_prompts(profile: Profile, tokenizer, folder: Path) -> dict:
    data = profile.data
    limits = {"train": data.num_train_prompts, "test": data.num_test_prompts}
    splits, excluded = {}, {}
    for index, split in enumerate(SPLITS):
        splits[split], excluded[split] = build_prompt_split(
            load_imdb(split, data), tokenizer, data.prompt_tokens, data.seed + index, limits[split]
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return {"excluded_too_short": excluded, "rows": {k: len(v) for k, v in splits.items()}}


def ensure_prompts(profile: Profile | str | None = None, tokenizer=None, fresh: bool = False) -> Path:
    """data/artifacts/<profile>/prompts/ (a DatasetDict with train/test), built once per config.

    The prompts depend on the policy tokenizer, so the artifact is keyed on the SFT policy's
    stamp too: a rebuilt policy means rebuilt prompts.
    """
    from .models import ensure_sft_policy, load_policy  # local: avoid loading models for I/O only

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    policy_dir = ensure_sft_policy(profile)
    config = {"data": to_dict(profile.data), "policy_hash": read_stamp(policy_dir)["config_hash"]}

    def build(folder):
        nonlocal tokenizer
        if tokenizer is None:
            _, tokenizer = load_policy(policy_dir)
        return _build_prompts(profile, tokenizer, folder)

    return build_once(artifacts_dir(profile) / "prompts", config, build, fresh=fresh)


def load_prompts(profile: Profile | str | None = None) -> datasets.DatasetDict:
    return datasets.load_from_disk(str(ensure_prompts(profile)))


def prompt_batch(prompts: datasets.Dataset, indices) -> list[list[int]]:
    """The token ids of the prompts at `indices` (a list or 1-D tensor)."""
    if isinstance(indices, torch.Tensor):
        indices = indices.tolist()
    return prompts.select(indices)["input_ids"]

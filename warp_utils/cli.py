"""`python -m warp_utils run|train`: the course's pipeline, headless, stage by stage.

Every stage reuses the artifact of an earlier run when its config matches (`--fresh` rebuilds).
A bad value prints the ValueError's message and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import PROFILES, get_profile

WARP_FLAGS = {"I": int, "M": int, "T": int, "mu": float, "eta": float, "beta": float, "lr": float,
              "batch_size": int, "baseline": str, "seed": int}


def _stage(name: str, build):
    started = time.perf_counter()
    print(f"[{name}] ...", flush=True)
    result = build()
    print(f"[{name}] done in {time.perf_counter() - started:.1f} s -> {result}", flush=True)
    return result


def run(args) -> None:
    """SFT policy -> reward model -> prompts -> WARP training -> evaluation report."""
    from .models import ensure_sft_policy
    from .prompts import ensure_prompts
    from .report import copy_to_docs, write_report
    from .reward import ensure_reward_model

    profile = get_profile(args.profile)
    print(f"profile: {profile.name}")
    _stage("sft_policy", lambda: ensure_sft_policy(profile, fresh=args.fresh))
    _stage("reward_model", lambda: ensure_reward_model(profile, fresh=args.fresh))
    _stage("prompts", lambda: ensure_prompts(profile, fresh=args.fresh))
    _stage("warp", lambda: _train(profile, profile.warp, None, args.fresh))
    report = _stage("report", lambda: write_report(profile))
    if args.update_docs:
        docs = Path(__file__).resolve().parent.parent / "docs" / "results"
        _stage("docs", lambda: copy_to_docs(report, docs) or docs)


def _train(profile, config, name, fresh):
    from .pipeline import ensure_warp_run, warp_run_dir

    result = ensure_warp_run(profile, config, name=name, fresh=fresh)
    last = result.metrics.groupby(["iteration", "run"]).tail(1)
    print(last.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return warp_run_dir(profile, config, name)


def train(args) -> None:
    """WARP training alone, with flags overriding the profile's WarpConfig."""
    import dataclasses

    profile = get_profile(args.profile)
    overrides = {name: getattr(args, name) for name in WARP_FLAGS if getattr(args, name) is not None}
    config = dataclasses.replace(profile.warp, **overrides)  # validated: a bad value is a ValueError
    print(f"profile: {profile.name}\n{config}")
    _stage("warp", lambda: _train(profile, config, args.name, args.fresh))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m warp_utils", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole pipeline, reusing artifacts")
    run_parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                            help="tiny (default, CPU) or full (GPU, downloads models)")
    run_parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    run_parser.add_argument("--update-docs", action="store_true",
                            help="also copy the results table and main figures into docs/results/")
    run_parser.set_defaults(handler=run)

    train_parser = commands.add_parser("train", help="WARP training alone (writes warp/ or warp_runs/<name>/)")
    train_parser.add_argument("--profile", choices=sorted(PROFILES), default=None)
    for name, kind in WARP_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        train_parser.add_argument(flag, dest=name, type=kind, default=None, help=f"WarpConfig.{name}")
    train_parser.add_argument("--name", default=None, help="run folder under warp_runs/ (default: from the flags)")
    train_parser.add_argument("--fresh", action="store_true", help="start the run over instead of resuming")
    train_parser.set_defaults(handler=train)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

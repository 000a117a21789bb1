"""`python -m warp_utils run|train`: the course's pipeline, headless, stage by stage.

Every stage reuses the artifact of an earlier run when its config matches (`--fresh` rebuilds).
A bad value prints the ValueError's message and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from .config import PROFILES, get_profile


def _stage(name: str, build):
    started = time.perf_counter()
    print(f"[{name}] ...", flush=True)
    result = build()
    print(f"[{name}] done in {time.perf_counter() - started:.1f} s -> {result}", flush=True)
    return result


def run(args) -> None:
    """SFT policy -> reward model -> prompts (-> WARP training -> evaluation, when present)."""
    from .models import ensure_sft_policy
    from .prompts import ensure_prompts
    from .reward import ensure_reward_model

    profile = get_profile(args.profile)
    print(f"profile: {profile.name}")
    _stage("sft_policy", lambda: ensure_sft_policy(profile, fresh=args.fresh))
    _stage("reward_model", lambda: ensure_reward_model(profile, fresh=args.fresh))
    _stage("prompts", lambda: ensure_prompts(profile, fresh=args.fresh))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m warp_utils", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole pipeline, reusing artifacts")
    run_parser.add_argument("--profile", choices=sorted(PROFILES), default=None,
                            help="tiny (default, CPU) or full (GPU, downloads models)")
    run_parser.add_argument("--fresh", action="store_true", help="rebuild every artifact")
    run_parser.set_defaults(handler=run)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

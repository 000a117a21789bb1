"""The artifacts WARP training reads and writes, for the CLI and the notebooks.

data/artifacts/<profile>/warp/            the profile's default run (its WarpConfig)
data/artifacts/<profile>/warp_runs/<name>/ any other configuration (a flag, a study, a baseline)
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

from .config import Profile, WarpConfig, artifacts_dir
from .execution.overrides import get_profile
from .execution import distributed
from .execution.progress import quiet_loading
from .execution.runtime import Components, Execution, configure_threads, thread_count
from .store.artifacts import STAMP


def load_components(profile: Profile | str | None = None, execution: Execution | None = None) -> Components:
    """Build (once) and load the SFT policy, the reward model and the prompts of `profile`; set
    torch's threads by the one thread policy (or `execution.threads`)."""
    import datasets

    from .inputs.models import ensure_sft_policy, load_policy
    from .inputs.prompts import ensure_prompts
    from .inputs.reward import ensure_reward_model, load_reward_scorer

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    quiet_loading()
    policy, tokenizer = load_policy(ensure_sft_policy(profile))
    scorer = load_reward_scorer(ensure_reward_model(profile))
    prompts = datasets.load_from_disk(str(ensure_prompts(profile, tokenizer=tokenizer)))
    execution = execution or Execution()
    configure_threads(sum(p.numel() for p in policy.parameters()), execution.threads)
    return Components(policy, tokenizer, scorer, prompts, profile.sampling, execution).with_device()


def notebook_components(profile: Profile | str | None = None) -> Components:
    """load_components as a notebook wants them: WARP's runs on this machine's cores
    (runtime.local_workers), no tqdm bars (a notebook prints a line per step instead)."""
    from .execution.runtime import local_workers

    return load_components(profile, Execution(workers=local_workers(), progress_bars=False))


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


def worker_execution(components: Components) -> Execution:
    """The Execution a worker process loads its components with: one process each, and the thread
    count this process's policy gets among the workers, written out (the launcher forks one-thread
    CPU workers)."""
    params = sum(p.numel() for p in components.policy.parameters())
    execution = components.execution
    return dataclasses.replace(execution, workers=1,
                               threads=execution.threads or thread_count(params, processes=execution.workers))


def finished(run_dir: Path) -> bool:
    """The run directory holds a final merge (written last). Decides only where a run is loaded or
    trained (workers or not): whether it is fresh is train_warp's check, which retrains if not."""
    return (Path(run_dir) / "final" / STAMP).is_file()


def ensure_warp_run(profile: Profile | str | None = None, config: WarpConfig | None = None,
                    name: str | None = None, fresh: bool = False, components: Components | None = None,
                    step_callback=None, progress_bars: bool | None = None):
    """Train (or resume, or just load) a WARP run of `profile` and return its WarpResult.
    A run (i, m) already trained with the same inputs in another run directory of the profile is
    linked, not trained again (see runstore.run_config), unless the components' Execution.reuse is
    False. `progress_bars` overrides Execution.progress_bars."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    config = config or profile.warp
    components = components or load_components(profile)
    if progress_bars is not None:
        components = dataclasses.replace(components, execution=dataclasses.replace(components.execution,
                                                                                   progress_bars=progress_bars))
    run_dir = warp_run_dir(profile, config, name)
    execution = components.execution
    if execution.workers > 1 and distributed.world().size == 1 and (fresh or not finished(run_dir)):
        # start the workers, then load their result (a finished run is only loaded: no process starts)
        if fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        job = distributed.Job(profile, config, name, worker_execution(components))
        distributed.launch(job, run_job, execution.workers, step_callback)
        fresh, step_callback = False, None
    return train_here(profile, config, components, run_dir, step_callback, fresh)


def train_here(profile: Profile, config: WarpConfig, components: Components, run_dir: Path, step_callback=None,
               fresh: bool = False, keep: bool = True):
    """train_warp in this process (resumed unless `fresh`), reusing the profile's other run
    directories when Execution.reuse allows: its WarpResult, or None with keep=False (nothing held
    in memory: a worker's way, its parent loads the result from run_dir)."""
    from .store.warp_runs import train_warp

    reuse_runs_from = profile_run_dirs(profile) if components.execution.reuse else ()
    return train_warp(config, components, run_dir, resume=not fresh, reuse_runs_from=reuse_runs_from,
                      step_callback=step_callback, keep=keep)


def run_job(job: distributed.Job, step_callback, loaded: dict) -> None:
    """What a worker process does with its Job (the entrypoint pipeline hands to distributed.launch
    and launch_pool): load the job's components (once per process: `loaded` is kept from one job of
    a pool to the next), then train or resume its run, each step's row to `step_callback`."""
    key = (job.profile, job.execution)
    if key not in loaded:
        loaded[key] = load_components(job.profile, job.execution)
    # keep=False: the parent loads the result from the run directory; a worker holding every
    # iteration's weights too would double the memory of a run
    train_here(job.profile, job.config, loaded[key], warp_run_dir(job.profile, job.config, job.name), step_callback,
               keep=False)


def ensure_warp_runs(profile: Profile | str | None, configs, names=None, components: Components | None = None,
                     step_callback=None) -> list:
    """`ensure_warp_run` for several configurations (a study grid, the baselines): their WarpResults
    in order. `names[k]` names the run directory of `configs[k]` (None: from the changed fields).
    With Execution.workers = K > 1, K local processes share the configs (`distributed.launch_pool`:
    each trains whole configs, the next one as soon as it is free, so list the longest first);
    a config trains in one process either way, with the same threads, so its weights are bitwise
    those of a sequential loop. `step_callback(k, row)` sees every step of configs[k]."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    components = components or load_components(profile)
    names = list(names) if names is not None else [None] * len(configs)
    if len(names) != len(configs):
        raise ValueError(f"names must have one entry per config ({len(configs)}), got {len(names)}")
    serial = dataclasses.replace(components, execution=dataclasses.replace(components.execution, workers=1))
    jobs, folders = [], set()  # one job per unfinished run directory: two processes never build one folder
    for index, (config, name) in enumerate(zip(configs, names)):
        folder = warp_run_dir(profile, config, name)
        if folder not in folders and not finished(folder):
            folders.add(folder)
            jobs.append(distributed.Job(profile, config, name, worker_execution(components),
                                        label=folder.relative_to(artifacts_dir(profile)).as_posix(), index=index))
    if components.execution.workers > 1 and distributed.world().size == 1 and len(jobs) > 1:
        def relay(row):
            job = jobs[row.pop("job")]
            if step_callback is not None:
                step_callback(job.index, row)

        distributed.launch_pool(jobs, run_job, components.execution.workers, relay)
        return [ensure_warp_run(profile, config, name=name, components=serial)
                for config, name in zip(configs, names)]  # trained: loaded from disk
    # In order, in this process (a lone config still spreads its M runs over the workers)
    return [ensure_warp_run(profile, config, name=name, components=components,
                            step_callback=None if step_callback is None else functools.partial(step_callback, index))
            for index, (config, name) in enumerate(zip(configs, names))]

"""WARP (Algorithm 1, see core.warp) on a language model, every result kept in a run directory:

    run_dir/iter_<i>/run_<m>/   each run, trained by its owner rank (or linked from another run
                                directory of the profile when its run config is the same)
    run_dir/iter_<i>/slerp/     theta_slerp_i    run_dir/iter_<i>/init/   theta_init after LITI
    run_dir/final/              theta_slerp_I    run_dir/metrics.csv      every run's rows

Every folder is an artifact (store.artifacts.build_once): resumed after an interrupt, reused when
fresh. The layout and the I/O of one run are `runstore`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from ..core.warp import RunLoop, StepCallback, WarpResult, train_run
from ..core.weights import StateDict, clone_state, liti, slerp
from ..config import WarpConfig
from ..execution import distributed
from ..execution.progress import progress
from ..execution.runtime import Components
from . import runstore
from .artifacts import build_once, folder_lock, is_fresh


def train_warp(config: WarpConfig, components: Components, run_dir, resume: bool = True,
               reuse_runs_from=(), step_callback: StepCallback | None = None) -> WarpResult:
    """Algorithm 1. `components.policy` is pi_sft (left untouched: it is also the KL-to-SFT
    reference). Re-running with the same run_dir resumes: finished runs and merges are loaded, an
    interrupted run continues from its checkpoint; `resume=False` starts over. `reuse_runs_from`:
    other run directories whose finished runs with the same run config are linked, not trained.
    In a process group (distributed.py) the M runs of an iteration are spread over the ranks;
    rank 0 merges and returns the whole result."""
    prompts = components.train_prompts()
    if len(prompts) < 1:
        raise ValueError("prompts must hold at least 1 prompt")
    world, run_dir = distributed.world(), Path(run_dir)
    if not resume and run_dir.exists() and world.is_main:
        shutil.rmtree(run_dir)
    world.barrier()
    loop = RunLoop(components, config, prompts, runstore, step_callback)
    runs = RunsOfAnIteration(loop, run_dir, runstore.shared_inputs(components, prompts),
                             [Path(d) for d in reuse_runs_from if Path(d).resolve() != run_dir.resolve()])
    result, all_rows, all_samples = WarpResult(), [], []
    theta_init = clone_state(components.policy.eval())  # theta_init <- theta_sft

    for iteration in progress(range(1, config.I + 1), "WARP iterations", enabled=components.execution.progress_bars):
        theta_runs, theta_emas, rows, samples = runs.train(iteration, theta_init, world)
        all_rows += rows
        all_samples += samples
        theta_slerp = theta_next = None
        if world.is_main:
            merged = {"runs": [runstore.state_fingerprint(t) for t in theta_runs],
                      "theta_init": runstore.state_fingerprint(theta_init)}
            folder = run_dir / f"iter_{iteration}"
            theta_slerp = _merge(folder / "slerp", {**merged, "merge": "slerp"}, components,
                                 partial(slerp, theta_init, theta_runs))  # the trained theta_m, never the EMAs
            theta_next = _merge(folder / "init", {**merged, "merge": "liti", "eta": config.eta}, components,
                                partial(liti, theta_init, theta_slerp, config.eta))
            runstore.write_rows(run_dir / runstore.METRICS_FILE, all_rows)
        theta_init = world.broadcast_state(theta_next, theta_init, src=0)  # every rank starts i+1 from it
        result.theta_runs.append(theta_runs)
        result.theta_ema_runs.append(theta_emas)
        result.theta_slerp.append(theta_slerp)
        result.theta_init.append(theta_init)

    result.metrics = pd.DataFrame(all_rows, columns=runstore.METRIC_COLUMNS)
    result.samples = pd.DataFrame(all_samples)
    if world.is_main:
        _merge(run_dir / "final", {"theta_slerp": runstore.state_fingerprint(result.final)}, components,
               lambda: result.final)
    world.barrier()  # nobody reads final/ before it exists
    return result


@dataclass
class RunsOfAnIteration:
    """The M runs of one iteration: planned by rank 0 (done, linked from another run directory, or
    to train), trained by their owner rank, then sent to every rank in m order."""

    loop: RunLoop
    run_dir: Path
    inputs: dict  # fingerprints shared by every run: pi_sft, prompts, reward model
    reuse: list[Path]

    def train(self, iteration: int, theta_init: StateDict, world):
        config, components = self.loop.config, self.loop.components
        folders = [self.run_dir / f"iter_{iteration}" / f"run_{m}" for m in range(1, config.M + 1)]
        configs = [runstore.run_config(config, components.sampling, iteration, m, theta_init, self.inputs)
                   for m in range(1, config.M + 1)]
        plan = world.broadcast_object(self._plan(folders, configs) if world.is_main else None)
        if world.rank >= config.M and iteration == 1:
            print(f"rank {world.rank}: no run to train (M = {config.M} runs on {world.size} ranks); waiting")
        for m, (folder, run_cfg) in enumerate(zip(folders, configs), start=1):
            if plan[m - 1] == "train" and world.owner(m) == world.rank:
                world.status(f"training iter_{iteration}/run_{m}")
                self._build(iteration, m, theta_init, folder, run_cfg, world)
        theta_runs, theta_emas, rows, samples = [], [], [], []
        for m, folder in enumerate(folders, start=1):
            src = world.owner(m) if plan[m - 1] == "train" else 0
            mine = world.rank == src
            reference = components.policy
            theta_runs.append(world.broadcast_state(runstore.load_weights(reference, folder) if mine else None,
                                                    theta_init, src))
            theta_emas.append(world.broadcast_state(runstore.load_ema(folder) if mine else None, theta_init, src))
            rows += world.broadcast_object(runstore.read_rows(folder / runstore.METRICS_FILE) if mine else None, src)
            samples += world.broadcast_object(runstore.read_samples(folder / runstore.SAMPLES_FILE) if mine else None, src)
        return theta_runs, theta_emas, rows, samples

    def _plan(self, folders, configs) -> list[str]:
        """done | train for each run; a run finished in another run directory is linked here."""
        plan = []
        for folder, run_cfg in zip(folders, configs):
            with folder_lock(folder):  # never link over a folder another process is building
                if not is_fresh(folder, run_cfg, runstore.STEP_VERSION):
                    relative = folder.relative_to(self.run_dir).as_posix()
                    source = runstore.find_run(self.reuse, relative, run_cfg, runstore.STEP_VERSION)
                    if source is not None:
                        runstore.link_run(source, folder)  # the same run, already trained elsewhere
                plan.append("done" if is_fresh(folder, run_cfg, runstore.STEP_VERSION) else "train")
        return plan

    def _build(self, iteration: int, run: int, theta_init: StateDict, folder: Path, run_cfg: dict, world) -> None:
        components = self.loop.components

        def build(out):
            theta_m, theta_ema, rows = train_run(iteration, run, theta_init, self.loop, out)
            runstore.save_weights(components.policy, theta_m, components.tokenizer, out)
            runstore.save_ema(theta_ema, out)
            runstore.write_rows(out / runstore.METRICS_FILE, rows)
            runstore.write_samples(out / runstore.SAMPLES_FILE, rows)
            return {"threads": torch.get_num_threads(), "rank": world.rank, "world_size": world.size,
                    "pid": os.getpid()}  # who trained it: threads, rank of how many, which process

        build_once(folder, run_cfg, build, version=runstore.STEP_VERSION)


def _merge(folder: Path, config: dict, components: Components, compute: Callable[[], StateDict]) -> StateDict:
    """A merged state dict, computed and saved once (as a save_pretrained folder), else loaded."""
    build_once(folder, config, lambda out: runstore.save_weights(components.policy, compute(),
                                                                  components.tokenizer, out))
    return runstore.load_weights(components.policy, folder)

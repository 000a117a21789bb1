"""WARP (Algorithm 1, core.warp.algorithm1) on a language model, every result kept in a run directory:

    run_dir/iter_<i>/run_<m>/   each run, trained by its owner rank (or linked from another run
                                directory of the profile when its run config is the same)
    run_dir/iter_<i>/slerp/     theta_slerp_i    run_dir/iter_<i>/init/   theta_init after LITI
    run_dir/final/              theta_slerp_I    run_dir/metrics.csv      every run's rows

`RunFolders` is the store the loop is handed: every folder is an artifact (store.artifacts.
build_once), resumed after an interrupt, reused when fresh. The layout and the I/O of one run are
`runstore`; where the runs train (this process, or a process group) is execution.executors.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..core.warp import Run, RunLoop, StepCallback, TrainRun, WarpResult, algorithm1, train_run
from ..core.weights import StateDict, slerp
from ..config import WarpConfig
from ..execution import distributed
from ..execution.executors import InProcess, ProcessGroup
from ..execution.runtime import Components
from . import runstore
from .artifacts import build_once, folder_lock, is_fresh


def train_warp(config: WarpConfig, components: Components, run_dir, resume: bool = True,
               reuse_runs_from=(), step_callback: StepCallback | None = None,
               keep: bool = True) -> WarpResult | None:
    """Algorithm 1. `components.policy` is pi_sft (left untouched: it is also the KL-to-SFT
    reference). Re-running with the same run_dir resumes: finished runs and merges are loaded, an
    interrupted run continues from its checkpoint; `resume=False` starts over. `reuse_runs_from`:
    other run directories whose finished runs with the same run config are linked, not trained.
    In a process group (distributed.py) the M runs of an iteration are spread over the ranks;
    rank 0 merges and writes the merges and metrics. keep=False returns None and holds no finished
    iteration's weights in memory (a worker process: its parent loads the result from run_dir)."""
    prompts = components.train_prompts()
    if len(prompts) < 1:
        raise ValueError("prompts must hold at least 1 prompt")
    world, run_dir = distributed.world(), Path(run_dir)
    if not resume and run_dir.exists() and world.is_main:
        shutil.rmtree(run_dir)
    world.barrier()
    loop = RunLoop(components, config, prompts, runstore, step_callback)
    store = RunFolders(run_dir, config, components, runstore.shared_inputs(components, prompts),
                       [Path(d) for d in reuse_runs_from if Path(d).resolve() != run_dir.resolve()],
                       with_emas=keep)
    # pi_sft's own tensors, not a copy: nothing writes into a theta_init (runs load it into their
    # models, merges make new tensors), and a copy is half a GB at SmolLM2's size
    theta_sft = {name: tensor.detach() for name, tensor in components.policy.eval().state_dict().items()}

    def train(iteration, run, theta_init, folder):
        world.status(f"training iter_{iteration}/run_{run}")  # named if this process dies
        return train_run(iteration, run, theta_init, loop, folder)

    executor = InProcess() if world.size == 1 else ProcessGroup(world, like=theta_sft)
    history, final = [], None
    for iteration in algorithm1(theta_sft, config, train, executor, store, merge=slerp):
        if keep:
            history.append(iteration)
        final = iteration.theta_slerp if iteration.iteration == config.I else None
        del iteration  # not kept: freed before the next iteration trains
    if world.is_main:
        store.keep_final(final)
    world.barrier()  # nobody reads final/ before it exists
    if not keep:
        return None
    return WarpResult(
        theta_slerp=[it.theta_slerp for it in history], theta_init=[it.theta_next for it in history],
        theta_runs=[[run.theta for run in it.runs] for it in history],
        theta_ema_runs=[[run.theta_ema for run in it.runs] for it in history],
        metrics=pd.DataFrame(_rows([it.runs for it in history]), columns=runstore.METRIC_COLUMNS),
        samples=pd.DataFrame([sample for it in history for run in it.runs for sample in run.samples]))


@dataclass
class RunFolders:
    """Where the LM's Algorithm 1 keeps its runs and merges: folders of `run_dir` (module doc).
    A run is loaded from its folder when fresh, linked from another run directory (`reuse`) that
    holds the same run, else trained into its folder (resumed from its checkpoint there); a merge
    is computed once, saved, and loaded."""

    run_dir: Path
    config: WarpConfig
    components: Components
    inputs: dict  # fingerprints shared by every run: pi_sft, prompts, reward model
    reuse: list[Path]
    with_emas: bool = True  # False: runs come back without their EMA anchors (on disk; the loop never reads them)
    _made_of: dict = field(default_factory=dict)  # iteration -> fingerprints of its merges' inputs
    _done: list = field(default_factory=list)  # the metric rows of the iterations merged so far (rows only:
    # holding their Runs would hold every iteration's weights)

    def run(self, iteration: int, run: int, theta_init: StateDict, train: TrainRun) -> Run:
        folder = self.run_dir / f"iter_{iteration}" / f"run_{run}"
        key = runstore.run_config(self.config, self.components.sampling, iteration, run, theta_init, self.inputs)
        if not self._fresh_or_linked(folder, key):
            build_once(folder, key, lambda out: self._train(train, iteration, run, theta_init, out),
                       version=runstore.STEP_VERSION)
        # read back from the folder, trained just now or not: a run is the same bytes either way
        return Run(runstore.load_weights(self.components.policy, folder),
                   runstore.load_ema(folder) if self.with_emas else None,
                   runstore.read_rows(folder / runstore.METRICS_FILE),
                   runstore.read_samples(folder / runstore.SAMPLES_FILE))

    def _fresh_or_linked(self, folder: Path, key: dict) -> bool:
        """The run's folder is fresh, or is now: linked from a run directory that holds the run."""
        with folder_lock(folder):  # never link over a folder another process is building
            if is_fresh(folder, key, runstore.STEP_VERSION):
                return True
            relative = folder.relative_to(self.run_dir).as_posix()
            source = runstore.find_run(self.reuse, relative, key, runstore.STEP_VERSION)
            if source is None:
                return False
            runstore.link_run(source, folder)  # the same run, already trained elsewhere
            return is_fresh(folder, key, runstore.STEP_VERSION)

    def _train(self, train: TrainRun, iteration: int, run: int, theta_init: StateDict, out: Path) -> dict:
        components, world = self.components, distributed.world()
        theta_m, theta_ema, rows = train(iteration, run, theta_init, out)
        runstore.save_weights(components.policy, theta_m, components.tokenizer, out)
        runstore.save_ema(theta_ema, out)
        runstore.write_rows(out / runstore.METRICS_FILE, rows)
        runstore.write_samples(out / runstore.SAMPLES_FILE, rows)
        return {"threads": torch.get_num_threads(), "rank": world.rank, "world_size": world.size,
                "pid": os.getpid()}  # who trained it: threads, rank of how many, which process

    def merge(self, iteration: int, step: str, theta_init: StateDict, runs: list[Run],
              compute: Callable[[], StateDict]) -> StateDict:
        """iter_<i>/slerp/ or iter_<i>/init/ (LITI). The iteration's metrics.csv rows are written
        with its last merge, so an interrupted run directory holds those of its whole iterations."""
        if iteration not in self._made_of:  # both merges are functions of the same inputs
            self._made_of[iteration] = {"runs": [runstore.state_fingerprint(run.theta) for run in runs],
                                        "theta_init": runstore.state_fingerprint(theta_init)}
        made_of, folder = self._made_of[iteration], self.run_dir / f"iter_{iteration}"
        if step == "slerp":
            return self._keep(folder / "slerp", {**made_of, "merge": "slerp"}, compute)
        if step != "liti":
            raise ValueError(f"step must be 'slerp' or 'liti', got {step!r}")
        theta_next = self._keep(folder / "init", {**made_of, "merge": "liti", "eta": self.config.eta}, compute)
        self._done.extend(row for run in runs for row in run.rows)
        runstore.write_rows(self.run_dir / runstore.METRICS_FILE, self._done)
        return theta_next

    def keep_final(self, theta_slerp: StateDict) -> None:
        self._keep(self.run_dir / "final", {"theta_slerp": runstore.state_fingerprint(theta_slerp)},
                   lambda: theta_slerp)

    def _keep(self, folder: Path, key: dict, compute: Callable[[], StateDict]) -> StateDict:
        """A merged state dict, computed and saved once (as a save_pretrained folder), else loaded."""
        policy, tokenizer = self.components.policy, self.components.tokenizer
        build_once(folder, key, lambda out: runstore.save_weights(policy, compute(), tokenizer, out))
        return runstore.load_weights(policy, folder)


def _rows(iterations: list[list[Run]]) -> list[dict]:
    """The metric rows of the runs of every iteration, in i then m order."""
    return [row for runs in iterations for run in runs for row in run.rows]

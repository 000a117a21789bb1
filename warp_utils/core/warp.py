"""Algorithm 1 of the paper (WARP): Weight Averaged Rewarded Policies.

    theta_init <- theta_sft
    for i in 1..I:
        for m in 1..M:                       # independent runs, each with its own prompt order
            theta_m <- theta_init ; theta_m_ema <- theta_init ; fresh optimiser
            for t in 1..T:
                x ~ prompts ; y ~ pi_theta_m(.|x)
                r_beta = r(x, y) - beta * log[pi_theta_m(y|x) / pi_theta_m_ema(y|x)]
                theta_m <- Opt(theta_m, r_beta * grad log pi_theta_m(y|x))
                theta_m_ema <- (1 - mu) theta_m_ema + mu theta_m
        theta_slerp_i <- slerp(theta_init, [theta_1 .. theta_M])   # the trained weights, not the EMAs
        theta_init <- (1 - eta) theta_init + eta theta_slerp_i     # LITI
    return theta_slerp_I

The step itself is `rl.rl_step`; the merges are `weights.slerp` and `weights.liti`; where each
result is stored, resumed and shared between run directories is `runstore` (this module only
says *what* is computed, in the paper's order).
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from ..execution import distributed
from ..store import runstore
from ..store.artifacts import build_once, folder_lock, is_fresh
from ..config import WarpConfig
from ..execution.device import choose_precision, fused_optimizer
from ..execution.progress import log, progress
from .rl import rl_step
from ..execution.runtime import Components
from .weights import StateDict, clone_state, liti, slerp

StepCallback = Callable[[dict], None]


@dataclass
class WarpResult:
    theta_slerp: list[StateDict] = field(default_factory=list)  # theta_slerp_i, i = 1..I
    theta_init: list[StateDict] = field(default_factory=list)  # theta_init after the LITI of iteration i
    theta_runs: list[list[StateDict]] = field(default_factory=list)  # [i-1][m-1]: final weights of run m
    theta_ema_runs: list[list[StateDict]] = field(default_factory=list)  # the EMA anchor of each run at its end
    metrics: pd.DataFrame | None = None  # one row per RL step, columns runstore.METRIC_COLUMNS
    samples: pd.DataFrame | None = None  # the batches of the KL-measuring steps (runstore.write_samples)

    @property
    def final(self) -> StateDict:
        return self.theta_slerp[-1]


def prompt_indices(num_prompts: int, batch_size: int, seed: int, iteration: int, run: int, step: int):
    """Indices of the prompts of step t (1-based) of run m: a seeded permutation per run and per
    pass over the prompts, so every run sees its own order and a resumed run the same one."""
    start = (step - 1) * batch_size
    indices = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), num_prompts)
        generator = torch.Generator().manual_seed(run_seed(seed, iteration, run) + 7919 * epoch)
        order = torch.randperm(num_prompts, generator=generator)
        indices.extend(order[offset : offset + batch_size - len(indices)].tolist())
    return indices


def run_seed(seed: int, iteration: int, run: int) -> int:
    return seed * 1_000_003 + iteration * 1_009 + run


@dataclass
class RunLoop:
    """What the T steps of every run share: the inputs, the config, and two working models."""

    components: Components
    config: WarpConfig
    prompts: list
    step_callback: StepCallback | None = None

    def __post_init__(self):
        self.policy = copy.deepcopy(self.components.policy)  # theta_m, trained in place
        self.anchor = copy.deepcopy(self.components.policy).requires_grad_(False)  # theta_m_ema


def train_run(iteration: int, run: int, theta_init: StateDict, loop: RunLoop, folder: Path):
    """Run m of iteration i: T REINFORCE steps from theta_init with an EMA anchor, checkpointed in
    `folder` (resumed from it after an interrupt). Returns (theta_m, theta_m_ema, metric rows)."""
    config, execution = loop.config, loop.components.execution
    policy, anchor = loop.policy, loop.anchor
    policy.load_state_dict(theta_init)
    anchor.load_state_dict(theta_init)
    optimizer = fused_optimizer(torch.optim.Adam, policy.parameters(), lr=config.lr)  # fresh for every run
    precision = choose_precision(execution.device or "cpu", execution.precision)  # fp32 master weights
    scaler = precision.grad_scaler()  # enabled for fp16 only
    torch.manual_seed(run_seed(config.seed, iteration, run))
    done, rows = runstore.load_checkpoint(folder, policy, anchor, optimizer)
    if done:
        log(f"resuming iter_{iteration}/run_{run} from step {done}")
    policy.eval()  # dropout off: it would make the sampled and the scored policy differ
    steps = progress(range(done + 1, config.T + 1), f"iteration {iteration}/{config.I} run {run}/{config.M}",
                     total=config.T, initial=done, enabled=execution.progress_bars)
    for step in steps:
        indices = prompt_indices(len(loop.prompts), config.batch_size, config.seed, iteration, run, step)
        measure_kl = step in (1, config.T) or step % execution.kl_every == 0
        metrics = rl_step(policy, anchor, optimizer, [loop.prompts[i] for i in indices], loop.components,
                          config, measure_kl_to_sft=measure_kl, precision=precision, scaler=scaler)
        rows.append({"iteration": iteration, "run": run, "step": step, **metrics})
        steps.set_postfix(reward=f"{metrics['reward_mean']:.2f}")
        if loop.step_callback is not None:
            loop.step_callback(rows[-1])
        if step % execution.checkpoint_every == 0 and step < config.T:
            runstore.save_checkpoint(folder, step, policy, anchor, optimizer, rows)
    return clone_state(policy), clone_state(anchor), rows


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
    loop = RunLoop(components, config, prompts, step_callback)
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
            started = time.perf_counter()
            theta_m, theta_ema, rows = train_run(iteration, run, theta_init, self.loop, out)
            seconds = time.perf_counter() - started  # of this invocation (a resumed run: the rest)
            runstore.save_weights(components.policy, theta_m, components.tokenizer, out)
            runstore.save_ema(theta_ema, out)
            runstore.write_rows(out / runstore.METRICS_FILE, rows)
            runstore.write_samples(out / runstore.SAMPLES_FILE, rows)
            return {"threads": torch.get_num_threads(), "rank": world.rank, "world_size": world.size,
                    "pid": os.getpid(), "seconds": seconds}  # pid: which process trained it (a pool's worker)

        build_once(folder, run_cfg, build, version=runstore.STEP_VERSION)


def _merge(folder: Path, config: dict, components: Components, compute: Callable[[], StateDict]) -> StateDict:
    """A merged state dict, computed and saved once (as a save_pretrained folder), else loaded."""
    build_once(folder, config, lambda out: runstore.save_weights(components.policy, compute(),
                                                                  components.tokenizer, out))
    return runstore.load_weights(components.policy, folder)

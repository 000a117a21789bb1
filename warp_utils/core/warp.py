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

The step itself is `rl.rl_step`; the merges are `weights.slerp` and `weights.liti`. This module
holds the pieces that are maths (each run's seed and prompt order, the T steps of one run); the
loop over a run directory, with its runs resumed, linked and saved, is `store.warp_runs`. A run's
checkpoints go through the `checkpoints` object it is handed (store.runstore in practice).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..config import WarpConfig
from ..execution.device import choose_precision, fused_optimizer
from ..execution.progress import log, progress
from ..execution.runtime import Components
from .rl import StepContext, rl_step
from .weights import StateDict, clone_state

StepCallback = Callable[[dict], None]


@dataclass
class WarpResult:
    theta_slerp: list[StateDict] = field(default_factory=list)  # theta_slerp_i, i = 1..I
    theta_init: list[StateDict] = field(default_factory=list)  # theta_init after the LITI of iteration i
    theta_runs: list[list[StateDict]] = field(default_factory=list)  # [i-1][m-1]: final weights of run m
    theta_ema_runs: list[list[StateDict]] = field(default_factory=list)  # the EMA anchor of each run at its end
    metrics: pd.DataFrame | None = None  # one row per RL step, columns store.runstore.METRIC_COLUMNS
    samples: pd.DataFrame | None = None  # the batches of the KL-measuring steps (store.runstore.write_samples)

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
    """What the T steps of every run share: the inputs, the config, two working models, and where a
    run's checkpoints go (`checkpoints.load_checkpoint(folder, policy, anchor, optimizer)` and
    `checkpoints.save_checkpoint(folder, step, policy, anchor, optimizer, rows)`)."""

    components: Components
    config: WarpConfig
    prompts: list
    checkpoints: object
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
    done, rows = loop.checkpoints.load_checkpoint(folder, policy, anchor, optimizer)
    if done:
        log(f"resuming iter_{iteration}/run_{run} from step {done}")
    policy.eval()  # dropout off: it would make the sampled and the scored policy differ
    steps = progress(range(done + 1, config.T + 1), f"iteration {iteration}/{config.I} run {run}/{config.M}",
                     total=config.T, initial=done, enabled=execution.progress_bars)
    for step in steps:
        indices = prompt_indices(len(loop.prompts), config.batch_size, config.seed, iteration, run, step)
        measure_kl = step in (1, config.T) or step % execution.kl_every == 0
        metrics = rl_step(policy, anchor, optimizer, [loop.prompts[i] for i in indices], loop.components,
                          config, StepContext(measure_kl, precision, scaler))
        rows.append({"iteration": iteration, "run": run, "step": step, **metrics})
        steps.set_postfix(reward=f"{metrics['reward_mean']:.2f}")
        if loop.step_callback is not None:
            loop.step_callback(rows[-1])
        if step % execution.checkpoint_every == 0 and step < config.T:
            loop.checkpoints.save_checkpoint(folder, step, policy, anchor, optimizer, rows)
    return clone_state(policy), clone_state(anchor), rows

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

`algorithm1` is that loop, and the only one: the toy (course.toy) and the language model
(store.warp_runs) both run it. What differs between them is handed in as small objects:

    train     how to train run m of iteration i from theta_init: T steps of `rl.rl_step` here
              (`train_run`), the toy's exact-gradient bandit steps there
    executor  where the runs of an iteration train: one after another in this process, or spread
              over a process group (execution.executors); it returns them in m order
    store     where results are kept: nowhere for the toy (`InMemory`), a run directory for the
              LM, which finds, links, resumes and saves runs and merges (store.warp_runs)

The merges are `weights.slerp` and `weights.liti`; the seed of run m of iteration i is `run_seed`,
for the toy and the LM alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from ..config import WarpConfig
from ..execution.device import choose_precision, fused_optimizer, return_freed_memory
from ..execution.progress import log, progress
from ..execution.runtime import Components
from .rl import StepContext, rl_step
from .weights import StateDict, clone_state, liti, slerp

if TYPE_CHECKING:  # the toy runs this module's loop: it need not import pandas
    import pandas as pd

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


# ----------------------------------------------------------------------------- Algorithm 1


@dataclass
class Run:
    """Run m of an iteration, finished: its trained weights theta_m and its EMA anchor; the LM's
    runs also carry their metric rows and the batches of their KL-measuring steps."""

    theta: StateDict
    theta_ema: StateDict
    rows: list = field(default_factory=list)
    samples: list = field(default_factory=list)


@dataclass
class Iteration:
    """What iteration i of Algorithm 1 started from and made."""

    iteration: int
    theta_init: StateDict  # where its M runs started
    runs: list[Run]  # in m order
    theta_slerp: StateDict  # merge(theta_init, [theta_1 .. theta_M])
    theta_next: StateDict  # liti(theta_init, theta_slerp, eta): the next iteration's theta_init


# train(i, m, theta_init, folder) -> (theta_m, theta_m_ema) or (theta_m, theta_m_ema, rows): run m
# of iteration i from theta_init. `folder` is where the store lets the run keep its checkpoints
# (None: nowhere, the run is trained in one go).
TrainRun = Callable[[int, int, StateDict, object], tuple]


class Executor(Protocol):
    """Where the runs of an iteration train (execution.executors: InProcess, ProcessGroup)."""

    def map(self, train: Callable[[int], Run], runs: Iterable[int]) -> list[Run]:
        """train(m) for every m of `runs`, returned in that order (by every process)."""

    def on_main(self, compute: Callable[[], StateDict]) -> StateDict:
        """compute() once, on one process; its result on every process."""


class Store(Protocol):
    """Where results are kept (InMemory below; store.warp_runs.RunFolders, a run directory)."""

    def run(self, iteration: int, run: int, theta_init: StateDict, train: TrainRun) -> Run:
        """Run m of iteration i: the one kept, else train(...)'s, kept."""

    def merge(self, iteration: int, step: str, theta_init: StateDict, runs: list[Run],
              compute: Callable[[], StateDict]) -> StateDict:
        """The `step` ("slerp" or "liti") merge of iteration i: the one kept, else compute()'s, kept."""


class InMemory:
    """The store that keeps nothing: every run is trained and every merge computed (the toy's)."""

    def run(self, iteration: int, run: int, theta_init: StateDict, train: TrainRun) -> Run:
        return Run(*train(iteration, run, theta_init, None))

    def merge(self, iteration: int, step: str, theta_init: StateDict, runs: list[Run],
              compute: Callable[[], StateDict]) -> StateDict:
        return compute()


def algorithm1(theta_sft: StateDict, config, train: TrainRun, executor: Executor, store: Store,
               merge: Callable[..., StateDict] = slerp) -> Iterator[Iteration]:
    """Algorithm 1 with `config`'s I, M and eta (a WarpConfig, or the toy's ToyConfig): yields one
    Iteration per i, as it finishes. `merge` is SLERP (the paper); the toy also passes LERP, its
    baseline. The caller keeps what it needs (`list(...)`: every iteration); the loop itself
    holds only the next theta_init, so a process that keeps nothing (a worker whose results are
    on disk) does not pile up I x (2M + 2) copies of the weights."""
    theta_init = theta_sft
    for i in range(1, config.I + 1):
        # for m in 1..M: run m from theta_init, T steps of sample, reward, KL to its EMA anchor,
        # REINFORCE, EMA update (`train`), with its own seed (run_seed). The runs do not depend on
        # each other, so the executor may train several at once; the store hands back a run it
        # already keeps (trained before, or in another run directory) instead of training it.
        runs = executor.map(lambda m: store.run(i, m, theta_init, train), range(1, config.M + 1))
        thetas = [run.theta for run in runs]  # the trained weights theta_m, never their EMA anchors
        # SLERP of the M runs relative to theta_init, then LITI: theta_init moves a step eta towards
        # it. One process computes each merge (the store writes it once); every process gets it.
        theta_slerp = executor.on_main(lambda: store.merge(
            i, "slerp", theta_init, runs, lambda: merge(theta_init, thetas)))
        theta_next = executor.on_main(lambda: store.merge(
            i, "liti", theta_init, runs, lambda: liti(theta_init, theta_slerp, config.eta)))
        yield Iteration(i, theta_init, runs, theta_slerp, theta_next)
        theta_init = theta_next
        del runs, thetas, theta_slerp  # held by the caller if it keeps them, else freed now


# ----------------------------------------------------------------------------- one run of the LM


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
    """The seed of run `run` of iteration `iteration`, for the LM and the toy alike: distinct for
    every (iteration, run) of a config (runs differ), the same on every re-run (re-runs are
    identical). The LM counts both from 1 (iter_1/run_1); the toy from 0 (course.toy.make_run)."""
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
        return_freed_memory()  # between steps a run holds only its models and Adam's moments
        rows.append({"iteration": iteration, "run": run, "step": step, **metrics})
        steps.set_postfix(reward=f"{metrics['reward_mean']:.2f}")
        if loop.step_callback is not None:
            loop.step_callback(rows[-1])
        if step % execution.checkpoint_every == 0 and step < config.T:
            loop.checkpoints.save_checkpoint(folder, step, policy, anchor, optimizer, rows)
    # the last gradients and Adam's two moments (three models' worth) go before the two copies come
    policy.zero_grad(set_to_none=True)
    del optimizer
    return clone_state(policy), clone_state(anchor), rows

"""What a run needs besides its config: the models it reads and how to execute it.

`Components` are the inputs every WARP run shares (pi_sft, the tokenizer, the reward model r,
the prompts, the sampling settings). `Execution` says how to run (threads, workers, device,
progress output, checkpoint and metric cadence): it never changes what is computed, so it stays
outside every hashed config and changing it never rebuilds an artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field

import torch

from ..config import SamplingConfig

# Measured on this project's tiny models (2-core machine, `benchmarks/rl_step.py`): a second
# thread buys little on matrices of width 128 and costs a lot when the other core is busy, so
# small models get one thread per process unless OMP_NUM_THREADS says otherwise; large models
# (>= SMALL_MODEL_PARAMS) share every core among the processes that train side by side
# (SmolLM2 with --workers 2 at 2 threads each: 4 busy threads on 2 cores, ~60 s a step per worker
# against ~18 s at 1 thread each).
SMALL_MODEL_PARAMS = 20_000_000


def thread_count(num_params: int | None = None, processes: int = 1) -> int:
    """The one thread policy: $OMP_NUM_THREADS when set, else 1 for small models, else the cores
    divided among the `processes` that run side by side (at least 1)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS must be an integer >= 1, got {env!r}") from None
        if threads < 1:
            raise ValueError(f"OMP_NUM_THREADS must be an integer >= 1, got {env!r}")
        return threads
    if num_params is not None and num_params < SMALL_MODEL_PARAMS:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, processes))


def local_workers(limit: int = 2) -> int:
    """Processes for independent runs on this machine: one per core, at most `limit` (the course's
    notebooks train side by side on a 2-core laptop or Colab, one process elsewhere)."""
    return max(1, min(limit, os.cpu_count() or 1))


def configure_threads(num_params: int | None = None, threads: int | None = None) -> int:
    """Set torch's intra-op threads by the policy (or to `threads`) and return the count."""
    threads = threads or thread_count(num_params)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def all_cores():
    """Every core ($OMP_NUM_THREADS when set) for the work inside, then the thread count before.
    For work a process does alone: SFT pre-training, and evaluation, which runs once training
    workers are done. Measured on the tiny policy: a held-out evaluation takes ~0.7x the time on
    2 threads, with bitwise the same samples and metrics (tests/test_evaluation.py). A forked
    one-thread worker started afterwards is safe: its ops never enter an OpenMP parallel region
    (tests/test_distributed.py)."""
    previous = torch.get_num_threads()
    configure_threads(threads=thread_count())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Execution:
    """How to run; never what to compute (outside every hash: changing it rebuilds nothing)."""

    device: str | None = None  # cpu, cuda or cuda:<k>: where every model lives; None: cuda if available
    precision: str = "auto"  # auto (fp16 on a T4, bf16 on newer GPUs, fp32 on CPU), fp32, bf16, fp16
    threads: int | None = None  # torch threads per process; None: the thread policy (runtime.thread_count)
    workers: int = 1  # local processes training the M runs of an iteration side by side
    progress_bars: bool = True  # tqdm bars (a file or CI log gets a line every few seconds)
    checkpoint_every: int = 10  # RL steps between checkpoints of a run
    # RL steps between two measurements of the exact KL to SFT (a metric, also taken at steps 1 and T):
    # its SFT forward and full-vocabulary KL were ~18% of a tiny step (benchmarks/rl_step.py)
    kl_every: int = 5
    reuse: bool = True  # copy a finished run with the same run key instead of training it

    def __post_init__(self):
        for name in ("workers", "checkpoint_every", "kl_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be one of auto, fp32, bf16, fp16, got {self.precision!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")


@dataclass
class Components:
    """Everything a WARP run needs besides its WarpConfig: pi_sft (the policy the runs start from
    and the KL-to-SFT reference), its tokenizer, the reward scorer r (texts -> float tensor), the
    prompts (token-id lists, or a DatasetDict with train/test splits), sampling and execution."""

    policy: object
    tokenizer: object
    reward_scorer: object
    prompts: object
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    execution: Execution = field(default_factory=Execution)

    def with_device(self) -> "Components":
        """These components with the device resolved and pi_sft and r moved there."""
        from .device import choose_device

        device = choose_device(self.execution.device)
        self.policy.to(device)
        model = getattr(self.reward_scorer, "model", None)
        if model is not None:
            model.to(device)
        return dataclasses.replace(self, execution=dataclasses.replace(self.execution, device=device))

    def train_prompts(self) -> list:
        """The RL prompts as token-id lists: the `train` split of a DatasetDict, else the list."""
        prompts = self.prompts["train"] if hasattr(self.prompts, "keys") else self.prompts
        if hasattr(prompts, "column_names"):
            prompts = prompts["input_ids"][:]  # all rows at once: a datasets Column reads row by row
        return prompts

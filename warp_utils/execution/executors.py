"""Where the M runs of a WARP iteration train (the `executor` of core.warp.algorithm1).

    InProcess     one after another, in this process
    ProcessGroup  spread over the processes of a torch.distributed group (torchrun, or the
                  `--workers K` processes distributed.launch starts): rank r trains the runs m
                  with (m - 1) mod world_size == r; every rank then receives every run in m order

Either way a run is computed once, by one process, and the results come back in m order: SLERP
folds the runs in that order, so a K-process run is bitwise the sequential one at the same threads
per process. A merge is computed by rank 0 alone (no two ranks write one folder) and sent to all.
Weights travel by broadcast, tensor by tensor (exact bytes, never all_reduce).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, is_dataclass

import torch

from .distributed import StateDict, World


class InProcess:
    """Every run in this process, one after another; every merge here too."""

    def map(self, train: Callable[[int], object], runs: Iterable[int]) -> list:
        return [train(m) for m in runs]

    def on_main(self, compute: Callable[[], object]):
        return compute()


class _State:
    """Marks a state dict in a value's outline: it follows tensor by tensor, not pickled."""


@dataclass
class ProcessGroup:
    """The runs of an iteration dealt to the ranks of `world` by m (World.owner). `like`: a state
    dict whose names, shapes, dtypes and device every received state dict takes (theta_sft's:
    every theta_init, run and merge has them)."""

    world: World
    like: StateDict
    _idle_told: bool = False

    def map(self, train: Callable[[int], object], runs: Iterable[int]) -> list:
        runs = list(runs)
        mine = {m: train(m) for m in runs if self.world.owner(m) == self.world.rank}
        if not mine and not self._idle_told:
            print(f"rank {self.world.rank}: no run to train (M = {len(runs)} runs on {self.world.size} "
                  "ranks); waiting")
            self._idle_told = True
        return [self._share(mine.get(m), src=self.world.owner(m)) for m in runs]

    def on_main(self, compute: Callable[[], object]):
        return self._share(compute() if self.world.is_main else None, src=0)

    def _share(self, value, src: int):
        """`value` of rank `src` on every rank: a state dict, or a dataclass whose fields may be
        state dicts. First its outline (pickled; a state dict stands there as a marker), then each
        state dict tensor by tensor, in the outline's order (exact bytes)."""
        world, mine = self.world, self.world.rank == src
        outline = world.broadcast_object(_outline(value) if mine else None, src)

        def receive(state):
            return world.broadcast_state(state if mine else None, self.like, src)

        if isinstance(outline, _State):
            return receive(value)
        kind, parts = outline
        return kind(**{name: receive(getattr(value, name, None)) if isinstance(part, _State) else part
                       for name, part in parts.items()})


def _is_state(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _outline(value):
    if _is_state(value):
        return _State()
    if not is_dataclass(value):
        raise TypeError(f"ProcessGroup sends state dicts and dataclasses, got {type(value).__name__}")
    return type(value), {f.name: _State() if _is_state(getattr(value, f.name)) else getattr(value, f.name)
                         for f in fields(value)}

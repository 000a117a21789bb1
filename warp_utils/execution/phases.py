"""Named phases of one step (generation, reward, forwards, backward, ...), for whoever measures.

    with phase("generation"):
        ...

A phase is a torch.profiler range (torch.profiler.record_function), so a profile of a run shows
where its steps spend their time; and a benchmark may time every phase of the steps it runs
inside `timed_phases(timer)`, where `timer(name)` is a context manager factory
(benchmarks/rl_step.py). The product passes no timers around: no function takes one. A phase
inside another (the anchor's scoring within "anchor forward") is a profiler range of its own but
is not timed again: the timed phases of a step never overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch.profiler import record_function

_timer: Callable[[str], contextlib.AbstractContextManager] | None = None
_depth = 0  # phases entered and not left


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """One named phase: a profiler range, and timed by the timer of `timed_phases` if one is set
    and this phase is not inside another."""
    global _depth
    timed = _timer is not None and _depth == 0
    _depth += 1
    try:
        with record_function(name), (_timer(name) if timed else contextlib.nullcontext()):
            yield
    finally:
        _depth -= 1


@contextlib.contextmanager
def timed_phases(timer: Callable[[str], contextlib.AbstractContextManager]) -> Iterator[None]:
    """Every phase entered inside this block is also timed by `timer(name)` (this thread's steps)."""
    global _timer
    previous, _timer = _timer, timer
    try:
        yield
    finally:
        _timer = previous

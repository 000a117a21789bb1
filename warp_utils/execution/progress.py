"""Progress output that suits where it goes: a tqdm bar on a terminal or in a notebook, and in a
file or CI log a plain line every LOG_SECONDS at most (no carriage-return redraws)."""

from __future__ import annotations

import logging
import sys
import time

from tqdm.auto import tqdm

LOG_SECONDS = 10.0
LOGGER = logging.getLogger("warp_utils")  # what the artifacts say: rebuilt, resumed, waiting


class _Stdout(logging.Handler):
    """Writes to the sys.stdout of the moment (a CLI's log, pytest's capture), message only."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stdout, flush=True)


def step_printer(T: int, every: int = 25, names=None):
    """A step callback for training in a notebook: one line every `every` steps, no redrawn bar
    (hundreds of redraws can overflow a headless kernel's output). Takes `row`, or `(k, row)` as
    pipeline.ensure_warp_runs passes; `names`: a label, or one label per k."""

    def callback(*args) -> None:
        k, row = (None, args[0]) if len(args) == 1 else args
        if row["step"] % every:
            return
        name = names[k] if k is not None and names is not None and not isinstance(names, str) else names
        print(f"{name + ' ' if name else ''}iteration {row['iteration']} run {row['run']} step {row['step']}/{T}: "
              f"reward {row['reward_mean']:+.2f}, KL to SFT {row['kl_to_sft']:.2f}", flush=True)

    return callback


def log(message: str) -> None:
    """One line of what happened to an artifact (rebuilt and why, resumed, waited for). Shown on a
    command line; kept quiet in a notebook, where a learner reads results, not the cache's life
    (`show_log()` turns it on there)."""
    _configure()
    LOGGER.info(message)


def show_log(on: bool = True) -> None:
    """Show (or hide) the artifact log, wherever this runs."""
    _configure()
    LOGGER.setLevel(logging.INFO if on else logging.WARNING)


def _configure() -> None:
    if not any(isinstance(h, _Stdout) for h in LOGGER.handlers):
        LOGGER.addHandler(_Stdout())
        LOGGER.propagate = False
        LOGGER.setLevel(logging.WARNING if _in_notebook() else logging.INFO)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and shell.get_ipython().__class__.__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


def interactive() -> bool:
    """True on a terminal or in a Jupyter kernel: where a redrawn bar is read, not logged."""
    return _in_notebook() or sys.stderr.isatty()


class _Lines:
    """The log-file form of a bar: `desc: k/total (postfix)` at most every LOG_SECONDS, and at the end."""

    def __init__(self, iterable, desc, total, initial):
        self.iterable, self.desc, self.total, self.count = iterable, desc, total, initial
        self.postfix, self.last = "", time.monotonic()

    def set_postfix(self, **values):
        self.postfix = " ".join(f"{key}={value}" for key, value in values.items())

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.count += 1
            now = time.monotonic()
            if now - self.last >= LOG_SECONDS or self.count == self.total:
                self.last = now
                print(f"{self.desc}: {self.count}/{self.total} {self.postfix}".rstrip(), file=sys.stderr, flush=True)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable

    def set_postfix(self, **values):
        pass

    def __iter__(self):
        return iter(self.iterable)


def progress(iterable, desc: str, total: int | None = None, initial: int = 0, enabled: bool = True):
    """Iterate with progress shown: a bar where it is read live, log lines elsewhere, nothing if
    not `enabled`. The result supports `set_postfix(**values)` either way."""
    total = total if total is not None else len(iterable)
    if not enabled:
        return _Silent(iterable)
    if interactive():
        return tqdm(iterable, desc=desc, total=total, initial=initial, leave=False, mininterval=2.0)
    return _Lines(iterable, desc, total, initial)


def quiet_libraries() -> None:
    """Where nobody watches a bar (a file, a CI log): no bars from transformers (loading and
    writing checkpoints) or datasets (map, filter, save); our own stages log lines instead."""
    import datasets

    quiet_loading()
    datasets.disable_progress_bars()


def quiet_loading() -> None:
    """No "Loading weights" bar per from_pretrained: the course loads dozens of small checkpoints,
    and in a log each bar is noise."""
    from transformers.utils import logging

    logging.disable_progress_bar()

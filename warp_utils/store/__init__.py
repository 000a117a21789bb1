"""What is kept on disk, and how it is found fresh, resumed or reused.

    artifacts  one lifecycle for every artifact folder (stamp, lock, build once, resume)
    runstore   a WARP run directory: weights, checkpoints, metrics, run keys, linking
    warp_runs  WARP on a language model, each run and merge kept (resumed, linked) in a run directory

May import: config, execution, core.
"""

import importlib

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "read_stamp": "artifacts",
}


def __getattr__(name):  # a re-exported name is imported from its module when first used
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])

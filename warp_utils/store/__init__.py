"""What is kept on disk, and how it is found fresh, resumed or reused.

    artifacts  one lifecycle for every artifact folder (stamp, lock, build once, resume)
    runstore   a WARP run directory: weights, checkpoints, metrics, run keys, linking
    warp_runs  WARP on a language model, each run and merge kept (resumed, linked) in a run directory

May import: config, execution, core.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "read_stamp": "artifacts",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

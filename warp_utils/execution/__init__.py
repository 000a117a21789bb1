"""Devices, threads and processes: how a job runs, never what it computes.

    runtime      Execution (device, workers, threads, precision, ...) and Components, the loaded
                 inputs of one run; the one thread policy
    device       device and precision choice, fused optimisers
    distributed  the process world of a WARP job (torchrun, --workers, a pool of jobs)
    executors    where the runs of an iteration train: in this process, or over a process group
    progress     log lines, tqdm bars, the notebooks' step printer
    native       C kernels built on the machine that runs them (cc, a cache folder, ctypes)
    overrides    the profile in use (get_profile) with its SECTION.FIELD=VALUE overrides
                 (--set, $WARP_SET)

May import: config. A leaf under everything else: nothing here imports a wing above it.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "get_profile": "overrides",
    "step_printer": "progress",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

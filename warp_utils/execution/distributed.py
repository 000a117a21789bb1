"""The M runs of every WARP iteration spread over torch.distributed processes.

    torchrun --nproc_per_node K -m warp_utils train|run ...    # K GPUs / processes, N nodes
    python -m warp_utils train|run --workers K                   # K local processes, same code
    ensure_warp_run(..., components with Execution(workers=K))   # from a notebook

Rank r trains the runs m with (m - 1) mod world_size == r (executors.ProcessGroup, the executor
core.warp.algorithm1 is handed in a process group); rank 0 merges (SLERP folds the runs in m
order) and writes merges and metrics; weights travel by broadcast through the process group (never
all_reduce), so a K-process run is bitwise the sequential one at the same threads per process.
Backend: gloo on CPU, nccl on CUDA with each rank on its local GPU.

`--workers` starts the processes with torch's launcher API (torch.distributed.elastic
start_processes; forked for one-thread CPU workers, spawned otherwise: `start_method`); a TCPStore hosted by the parent carries each step's metric row back (so a
notebook's step_callback still sees every step) and names the run a failed rank was training.

`launch_pool` is the other way to use K processes: several independent WARP configs (a study
grid, the baselines), each trained whole by one process alone in its world, each process taking
the next config of the list when it finishes one. No process group: only the parent's store.

What a worker trains is a typed `Job`; how it trains it is the `entrypoint` the caller hands to
`launch` or `launch_pool` (pipeline.run_job): this module starts processes and carries rows, and
knows nothing of the pipeline above it.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..config import Profile, WarpConfig
from .runtime import Execution

StateDict = dict[str, torch.Tensor]

FAIL_ENV = "WARP_FAIL_AT"  # test hook: "rank:iteration:run:step" raises in that worker at that step


class WorkerFailed(RuntimeError):
    """A worker process died or raised: names the rank and the run it was training."""


@dataclass(frozen=True)
class Job:
    """One WARP configuration for worker processes to train: the profile whose components they
    load, the config, the run folder's name (None: from the changed fields), how they execute;
    `label` names it in a failure, `index` is its place in the caller's list."""

    profile: Profile
    config: WarpConfig
    name: str | None
    execution: Execution
    label: str = ""
    index: int = 0


# entrypoint(job, step_callback, loaded): train `job` in this process (joined to its world), each
# step's metric row to step_callback; `loaded` is a dict the entrypoint may keep this process's
# loaded components in, from one job of a pool to the next.
Entrypoint = Callable[[Job, Callable[[dict], None], dict], None]


@dataclass
class World:
    """This process's place among the processes training one WARP job."""

    rank: int = 0
    size: int = 1
    store: object | None = None  # the parent's TCPStore (only with --workers): rows, status
    slot: int | None = None  # the parent's channel for rows and status: a pool worker's index, else the rank
    job: str = ""  # what a pool worker is training (named in its status)

    @property
    def channel(self) -> int:
        return self.rank if self.slot is None else self.slot

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owner(self, run: int) -> int:
        """The rank that trains run m: (m - 1) mod world_size."""
        return (run - 1) % self.size

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def on_main(self, build: Callable[[], object]):
        """build() on rank 0 while the other ranks wait for it to finish: its result on rank 0,
        None on the others (no two ranks ever build or delete the same folder)."""
        result = build() if self.is_main else None
        self.barrier()
        return result

    def main_first(self, load: Callable[[], object]):
        """load() on rank 0 first, then on the other ranks: only rank 0 ever (re)builds what it
        loads; the others find it built."""
        if not self.is_main:
            self.barrier()
        result = load()
        if self.is_main:
            self.barrier()
        return result

    def broadcast_object(self, value, src: int = 0):
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def broadcast_state(self, state: StateDict | None, template: StateDict, src: int) -> StateDict:
        """`state` of rank `src`, received by every rank tensor by tensor (exact bytes)."""
        if self.size == 1:
            return state
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl moves GPU tensors only
        received = {}
        for name in sorted(template):
            like = template[name]
            tensor = (state[name] if self.rank == src else torch.empty_like(like)).to(device).contiguous()
            dist.broadcast(tensor, src=src)
            received[name] = tensor.to(like.device)
        return received

    def status(self, text: str) -> None:
        """Tell the parent what this rank is doing (named if the rank dies)."""
        if self.store is not None:
            self.store.set(f"status/{self.channel}", f"{text} ({self.job})" if self.job else text)

    def send_row(self, row: dict) -> None:
        if self.store is not None:
            count = self.store.add(f"rows/{self.channel}", 1)
            self.store.set(f"row/{self.channel}/{count}", json.dumps(row))


_world = World()


def world() -> World:
    return _world


def backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def check_devices(device: str, local_world_size: int) -> None:
    if device.startswith("cuda") and local_world_size > torch.cuda.device_count():
        raise ValueError(f"workers must be <= the {torch.cuda.device_count()} visible GPUs on device "
                         f"{device!r}, got {local_world_size}")


def init_from_env(device: str = "cpu") -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR); single process
    when not launched by torchrun."""
    global _world
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return _world
    check_devices(device, int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend(device))
    _world = World(dist.get_rank(), dist.get_world_size())
    return _world


def shutdown() -> None:
    """Leave the process group (torchrun's), if this process joined one."""
    global _world
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _world = World()


def _join(host: str, port: int, rank: int, size: int, device: str) -> World:
    global _world
    store = dist.TCPStore(host, port, is_master=False, timeout=timedelta(minutes=30))
    dist.init_process_group(backend(device), store=dist.PrefixStore("pg", store), rank=rank, world_size=size)
    _world = World(rank, size, store)
    return _world


def _injected_failure(rank: int):
    """The step callback of the FAIL_ENV test hook, or None."""
    spec = os.environ.get(FAIL_ENV)
    if not spec:
        return None
    target = tuple(int(part) for part in spec.split(":"))

    def fail(row):
        if (rank, row["iteration"], row["run"], row["step"]) == target:
            raise RuntimeError(f"injected failure ({FAIL_ENV}={spec})")
    return fail


def _worker(job: Job, entrypoint: Entrypoint, host: str, port: int, rank: int, size: int) -> None:
    """One spawned process: join the group, then the entrypoint trains this rank's runs of `job`."""
    me = _join(host, port, rank, size, job.execution.device)
    try:
        fail = _injected_failure(rank)

        def on_step(row):
            me.send_row(row)
            if fail is not None:
                fail(row)

        entrypoint(job, on_step, {})
    except BaseException as error:
        _record_error(me.store, rank, error)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _pool_worker(jobs: list[Job], entrypoint: Entrypoint, host: str, port: int, slot: int) -> None:
    """One spawned pool process: take the next job of the list until none is left; each job is a
    whole WARP config trained here alone (a one-process world), its rows sent tagged with its index."""
    global _world
    store = dist.TCPStore(host, port, is_master=False, timeout=timedelta(minutes=30))
    me = _world = World(store=store, slot=slot)
    try:
        loaded = {}  # the entrypoint's components, loaded once per process
        fail = _injected_failure(slot)
        while (index := store.add("next_job", 1) - 1) < len(jobs):
            job = jobs[index]
            me.job = job.label
            me.status("starting")

            def on_step(row, index=index):
                me.send_row({"job": index, **row})
                if fail is not None:
                    fail(row)

            entrypoint(job, on_step, loaded)
    except BaseException as error:
        _record_error(store, slot, error)
        raise
    finally:
        _world = World()


def launch(job: Job, entrypoint: Entrypoint, workers: int, step_callback=None) -> None:
    """Run `entrypoint` on `job` in `workers` local processes, one process group, and wait; every
    step's metric row reaches `step_callback` here. A failure ends all of them (WorkerFailed);
    an interrupt (Ctrl-C, a notebook's stop button) terminates them: no orphan processes.
    `entrypoint` must be picklable (a module-level function): spawned workers receive it."""
    check_devices(job.execution.device, workers)
    _start(_worker, lambda port, rank: (job, entrypoint, "127.0.0.1", port, rank, workers), workers,
           job.execution, step_callback, who="worker rank")


def launch_pool(jobs: list[Job], entrypoint: Entrypoint, workers: int, step_callback=None) -> None:
    """Train independent `jobs` on `workers` local processes, each process taking the next job of
    the list as soon as it is free and running `entrypoint` on it (the list's order is the order
    jobs start: longest first keeps both busy). Every step's metric row reaches `step_callback`
    with a "job" key, the job's position in the list. Failure and interrupt: as `launch`."""
    workers = min(workers, len(jobs))
    if workers < 1:
        return
    _start(_pool_worker, lambda port, slot: (jobs, entrypoint, "127.0.0.1", port, slot), workers,
           jobs[0].execution, step_callback, who="pool worker")


def _start(entrypoint, args, workers: int, execution, step_callback, who: str) -> None:
    """Spawn `workers` processes running entrypoint(*args(port, index)), relay their rows until
    all exit, and raise WorkerFailed (naming `who` failed, doing what) if one failed."""
    # start_processes installs its own SIGINT/SIGTERM handlers in this process; put the caller's back
    # afterwards, or a notebook kernel's Interrupt (SIGINT) and shutdown (SIGTERM) would raise
    # torch's SignalException from its event loop instead of being handled by the kernel.
    signals = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)]
    handlers = {sig: signal.getsignal(sig) for sig in signals} if threading.current_thread() is threading.main_thread() else {}
    try:
        _relay(entrypoint, args, workers, execution, step_callback, who)
    finally:
        for sig, handler in handlers.items():
            if handler is not None:  # None: installed outside Python, nothing to put back
                signal.signal(sig, handler)


def start_method(execution) -> str:
    """How worker processes start. fork on Linux for one-thread CPU workers: a child inherits the
    imported torch and transformers instead of importing them again (seconds per worker, the
    larger share of a short notebook launch); it still loads its components from disk. spawn
    otherwise: CUDA cannot be forked, and GNU OpenMP is not fork-safe, so a forked child of a
    process that ran multi-threaded ops can hang in its own first multi-threaded op."""
    device = execution.device or ("cuda" if torch.cuda.is_available() else "cpu")
    forkable = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
    return "fork" if forkable and device == "cpu" and execution.threads == 1 else "spawn"


def _relay(entrypoint, args, workers: int, execution, step_callback, who: str) -> None:
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, start_processes

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(minutes=30))
    threads = str(execution.threads or os.environ.get("OMP_NUM_THREADS") or "")
    envs = {rank: ({"OMP_NUM_THREADS": threads} if threads else {}) for rank in range(workers)}
    method = start_method(execution)
    with tempfile.TemporaryDirectory(prefix="warp_workers_") as logs, _quiet_tokenizers_fork(method):
        context = start_processes(
            name="warp", entrypoint=entrypoint, args={rank: args(store.port, rank) for rank in range(workers)},
            envs=envs, logs_specs=DefaultLogsSpecs(log_dir=logs), start_method=method)
        seen = [0] * workers
        try:
            while True:
                result = context.wait(timeout=0.5, period=0.1)
                _drain(store, seen, step_callback)
                if result is not None:
                    break
        except BaseException as error:
            context.close()  # terminate every worker before the interrupt goes on
            if getattr(error, "sigval", None) == signal.SIGINT:  # Ctrl-C / Interrupt, as torch reports it
                raise KeyboardInterrupt from error
            raise
    if result.is_failed():
        raise WorkerFailed(_failure_message(store, result.failures, who, workers))


@contextlib.contextmanager
def _quiet_tokenizers_fork(method: str):
    """A forked child of a process whose tokenizers ran in parallel prints a warning at fork and runs
    them serially; saying so beforehand (TOKENIZERS_PARALLELISM=false, only while forking) silences it."""
    if method != "fork" or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        del os.environ["TOKENIZERS_PARALLELISM"]


def _drain(store, seen: list[int], step_callback) -> None:
    for rank in range(len(seen)):
        count = store.add(f"rows/{rank}", 0)
        while seen[rank] < count:
            seen[rank] += 1
            row = json.loads(store.get(f"row/{rank}/{seen[rank]}"))
            if step_callback is not None:
                step_callback(row)


def _record_error(store, channel: int, error: BaseException) -> None:
    """A worker's exception, numbered in the order workers raised: the first is the cause, later
    ones its echoes (a peer's closed connection in gloo), whatever order the processes exit in."""
    store.set(f"error/{channel}", f"{type(error).__name__}: {error}")
    store.set(f"error_order/{channel}", str(store.add("errors", 1)))


def _failure_message(store, failures, who: str, workers: int) -> str:
    """One line naming the worker that raised first (every worker counts, failed or still exiting:
    the echo of a crash can end its process before the crashed one does), else the first to fail."""
    def text(key):
        return store.get(key).decode() if store.check([key]) else None

    ranks = sorted(failures, key=lambda rank: failures[rank].timestamp)
    raised = sorted((int(text(f"error_order/{rank}")), rank) for rank in range(workers) if text(f"error_order/{rank}"))
    first = raised[0][1] if raised else ranks[0]  # the cause, not the echoes
    doing = text(f"status/{first}") or "starting"
    exit_code = failures[first].exitcode if first in failures else "unknown"
    cause = (text(f"error/{first}") or f"exit code {exit_code}").rstrip(".")
    return (f"{who} {first} failed while {doing}: {cause}. Finished runs are kept: run the same "
            "command again to resume")

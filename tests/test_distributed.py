"""The M runs of an iteration on several processes (gloo on CPU): bitwise the sequential run."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest

from test_pipeline import SMOKE
from warp_utils.execution.distributed import World

STAGES = [item for assignment in SMOKE if not assignment.startswith("warp.") for item in ("--set", assignment)]


def test_runs_are_dealt_to_ranks_by_m():
    world = World(rank=1, size=2)
    assert [m for m in range(1, 4) if world.owner(m) == world.rank] == [2]  # M = 3 on 2 ranks: 1, 3 | 2
    assert [World(rank=0, size=2).owner(m) for m in range(1, 4)] == [0, 1, 0]
    assert World().broadcast_object("plan") == "plan"  # one process: the identity


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Fake IMDB and the pipeline's first three stages, built once for every test here."""
    from conftest import write_fake_imdb

    root = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "WARP_IMDB_DIR": str(write_fake_imdb(root / "imdb")), "WARP_DATA_ROOT": str(root / "data"),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WARP_SET": ""}
    return env, root


def train(env, *flags, launcher=(sys.executable, "-m", "warp_utils"), extra_env=None):
    done = subprocess.run([*launcher, "train", *STAGES, "--T", "3", "--batch-size", "4", "--no-reuse",
                           "--checkpoint-every", "1", *flags], capture_output=True, text=True, timeout=300,
                          env={**env, **(extra_env or {})})
    return done


def run_dir(root, name):
    return next((root / "data" / "artifacts").glob(f"tiny-set-*/warp_runs/{name}"))


def assert_same_run(root, a, b):
    for path in ("final/model.safetensors", "iter_1/slerp/model.safetensors", "iter_2/init/model.safetensors"):
        assert (run_dir(root, a) / path).read_bytes() == (run_dir(root, b) / path).read_bytes(), path
    assert (run_dir(root, a) / "metrics.csv").read_text() == (run_dir(root, b) / "metrics.csv").read_text()


def ranks_that_trained(root, name):
    return sorted(json.loads(p.read_text())["rank"] for p in run_dir(root, name).glob("iter_*/run_*/artifact.json"))


def test_two_workers_and_torchrun_equal_the_sequential_run_m3(smoke):
    env, root = smoke
    for name, flags, launcher in [
        ("seq3", (), (sys.executable, "-m", "warp_utils")),
        ("workers3", ("--workers", "2"), (sys.executable, "-m", "warp_utils")),
        ("torchrun3", (), (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "warp_utils")),
    ]:
        done = train(env, "--I", "2", "--M", "3", "--name", name, *flags, launcher=launcher)
        assert done.returncode == 0, done.stderr[-3000:]
    assert ranks_that_trained(root, "seq3") == [0] * 6
    assert ranks_that_trained(root, "workers3") == ranks_that_trained(root, "torchrun3") == [0, 0, 0, 0, 1, 1]
    assert_same_run(root, "seq3", "workers3")
    assert_same_run(root, "seq3", "torchrun3")


def test_workers_from_python_relay_every_step_and_equal_the_sequential_run_m2(smoke, monkeypatch):
    """What a notebook does: ensure_warp_run with Execution(workers=2) and a step_callback."""
    from warp_utils.execution.overrides import get_profile
    from warp_utils.pipeline import ensure_warp_run, load_components
    from warp_utils.execution.runtime import Execution

    env, root = smoke
    for key in ("WARP_IMDB_DIR", "WARP_DATA_ROOT", "OMP_NUM_THREADS"):  # the CLI's environment: same threads,
        monkeypatch.setenv(key, env[key])  # so the SFT policy built in this process equals the CLI's bitwise
    assert train(env, "--I", "2", "--M", "2", "--name", "seq2").returncode == 0
    profile = get_profile("tiny", [*SMOKE[:-4], "warp.T=3", "warp.batch_size=4", "warp.I=2", "warp.M=2"])
    components = load_components(profile, Execution(workers=2, reuse=False, progress_bars=False, threads=1))
    rows = []
    result = ensure_warp_run(profile, name="workers2", components=components, step_callback=rows.append)
    assert sorted((r["iteration"], r["run"], r["step"]) for r in rows) == [
        (i, m, t) for i in (1, 2) for m in (1, 2) for t in (1, 2, 3)]
    assert ranks_that_trained(root, "workers2") == [0, 0, 1, 1]
    assert_same_run(root, "seq2", "workers2")
    expected = pd.read_csv(run_dir(root, "seq2") / "metrics.csv")
    assert result.metrics["reward_mean"].tolist() == pytest.approx(expected["reward_mean"].tolist())


def _pool_setup(env, monkeypatch):
    import dataclasses

    from warp_utils.execution.overrides import get_profile
    from warp_utils.pipeline import load_components
    from warp_utils.execution.runtime import Execution

    for key in ("WARP_IMDB_DIR", "WARP_DATA_ROOT", "OMP_NUM_THREADS"):  # as above: same SFT policy as the CLI's
        monkeypatch.setenv(key, env[key])
    profile = get_profile("tiny", [*SMOKE[:-4], "warp.T=3", "warp.batch_size=4", "warp.I=1", "warp.M=1"])
    configs = [dataclasses.replace(profile.warp, M=2, mu=0.05), dataclasses.replace(profile.warp, mu=0.0),
               dataclasses.replace(profile.warp, lr=1e-3)]
    serial = load_components(profile, Execution(reuse=False, progress_bars=False, threads=1))
    pooled = dataclasses.replace(serial, execution=dataclasses.replace(serial.execution, workers=2))
    return profile, configs, serial, pooled


def assert_same_single_iteration(root, a, b):
    for path in ("final/model.safetensors", "iter_1/slerp/model.safetensors", "metrics.csv"):
        assert (run_dir(root, a) / path).read_bytes() == (run_dir(root, b) / path).read_bytes(), (a, b, path)


def test_a_pool_of_two_trains_whole_configs_side_by_side_and_equals_the_sequential_loop(smoke, monkeypatch):
    """What notebooks 05 and 06 do: ensure_warp_runs over independent configs with workers=2; once
    trained, the same calls load the runs without starting a process."""
    from warp_utils.execution import distributed
    from warp_utils.pipeline import ensure_warp_run, ensure_warp_runs

    env, root = smoke
    profile, configs, serial, pooled = _pool_setup(env, monkeypatch)
    sequential = ensure_warp_runs(profile, configs, names=[f"seq_{k}" for k in range(3)], components=serial)
    rows, handlers = [], (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    pool = ensure_warp_runs(profile, configs, names=[f"pool_{k}" for k in range(3)], components=pooled,
                            step_callback=lambda k, row: rows.append((k, row["run"], row["step"])))
    # torch's launcher replaced them while the workers ran: a kernel's Interrupt must work afterwards
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert sorted(rows) == sorted([(0, m, t) for m in (1, 2) for t in (1, 2, 3)]
                                  + [(k, 1, t) for k in (1, 2) for t in (1, 2, 3)])  # every step, its config's index
    for k in range(3):
        assert_same_single_iteration(root, f"seq_{k}", f"pool_{k}")
        assert pool[k].metrics["reward_mean"].tolist() == sequential[k].metrics["reward_mean"].tolist()
    pids = {json.loads(p.read_text())["pid"] for k in range(3) for p in run_dir(root, f"pool_{k}").glob("iter_1/run_*/artifact.json")}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes trained them, not this one
    for k in range(3):  # both runs of a config come from one process: configs, not runs, are dealt out
        assert len({json.loads(p.read_text())["pid"] for p in run_dir(root, f"pool_{k}").glob("iter_1/run_*/artifact.json")}) == 1

    def no_process(*args, **kwargs):
        raise AssertionError("a finished run started worker processes")

    monkeypatch.setattr(distributed, "launch_pool", no_process)
    monkeypatch.setattr(distributed, "launch", no_process)
    loaded = ensure_warp_runs(profile, configs, names=[f"pool_{k}" for k in range(3)], components=pooled)
    single = ensure_warp_run(profile, configs[0], name="pool_0", components=pooled)
    assert loaded[2].metrics["reward_mean"].tolist() == sequential[2].metrics["reward_mean"].tolist()
    assert single.metrics["reward_mean"].tolist() == sequential[0].metrics["reward_mean"].tolist()
    for k in range(3):
        shutil.rmtree(run_dir(root, f"pool_{k}"))


def test_the_failure_names_the_worker_that_raised_first_not_the_first_to_exit():
    """A rank whose peer died fails too (gloo: connection closed) and may exit first: the message
    names the rank that raised first, with its own error."""
    from datetime import timedelta
    from types import SimpleNamespace

    import torch.distributed as dist

    from warp_utils.execution.distributed import _failure_message, _record_error

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    store.set("status/1", "training iter_2/run_2")
    store.set("status/0", "training iter_2/run_1")
    _record_error(store, 1, RuntimeError("injected failure"))
    _record_error(store, 0, RuntimeError("Connection closed by peer"))
    failures = {0: SimpleNamespace(timestamp=1, exitcode=1), 1: SimpleNamespace(timestamp=2, exitcode=1)}
    message = _failure_message(store, failures, "worker rank", 2)
    assert message.startswith("worker rank 1 failed while training iter_2/run_2: RuntimeError: injected failure.")
    echo_only = {0: failures[0]}  # the crashed rank is still exiting when the launcher returns
    assert _failure_message(store, echo_only, "worker rank", 2) == message
    silent = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=30))
    assert _failure_message(silent, failures, "worker rank", 2).startswith("worker rank 0 failed while starting: exit code 1.")


def test_a_forked_one_thread_worker_runs_after_its_parent_ran_on_two_threads():
    """What notebook 05 does: an evaluation on every core (runtime.all_cores), then a pool of forked
    one-thread workers. GNU OpenMP is not fork-safe, but a one-thread child never enters a parallel
    region: it must finish (a hang fails on the timeout)."""
    code = (
        "import multiprocessing as mp, torch\n"
        "from warp_utils.execution.runtime import all_cores\n"
        "with all_cores():\n"
        "    assert torch.get_num_threads() == 2\n"
        "    a = torch.randn(512, 512); (a @ a).sum(); torch.log_softmax(torch.randn(64, 24, 4096), -1)\n"
        "def child(queue):\n"
        "    torch.set_num_threads(1)\n"
        "    x, head = torch.randn(64, 24, 128), torch.nn.Linear(128, 4096)\n"
        "    loss = torch.log_softmax(head(x), -1).mean()\n"
        "    loss.backward()\n"
        "    queue.put(float(loss))\n"
        "context = mp.get_context('fork')\n"
        "queue = context.Queue()\n"
        "process = context.Process(target=child, args=(queue,))\n"
        "process.start()\n"
        "print(queue.get(timeout=60))\n"
        "process.join(60)\n"
        "assert process.exitcode == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-2000:]


def test_workers_fork_only_on_cpu_with_one_thread():
    """fork skips the children's imports, but GNU OpenMP is not fork-safe and CUDA cannot be forked."""
    from warp_utils.execution.distributed import start_method
    from warp_utils.execution.runtime import Execution

    linux = sys.platform.startswith("linux")
    assert start_method(Execution(device="cpu", threads=1)) == ("fork" if linux else "spawn")
    assert start_method(Execution(device="cpu", threads=2)) == "spawn"
    assert start_method(Execution(device="cpu", threads=None)) == "spawn"  # unresolved: the safe way
    assert start_method(Execution(device="cuda", threads=1)) == "spawn"


def test_a_failed_pool_worker_names_its_config_and_the_rerun_resumes(smoke, monkeypatch):
    """With spawned workers (what CUDA and multi-thread workers use): every other test here forks."""
    from warp_utils.execution import distributed
    from warp_utils.execution.distributed import WorkerFailed
    from warp_utils.pipeline import ensure_warp_runs

    env, root = smoke
    monkeypatch.setattr(distributed, "start_method", lambda execution: "spawn")
    profile, configs, serial, pooled = _pool_setup(env, monkeypatch)
    if not any((root / "data" / "artifacts").glob("tiny-set-*/warp_runs/seq_2")):
        ensure_warp_runs(profile, configs, names=[f"seq_{k}" for k in range(3)], components=serial)
    names = [f"pfail_{k}" for k in range(3)]
    monkeypatch.setenv("WARP_FAIL_AT", "1:1:1:2")  # pool worker 1, iteration 1, run 1, step 2
    with pytest.raises(WorkerFailed, match=r"^pool worker 1 failed while training iter_1/run_1 \(warp_runs/pfail_\d\): "
                                           r"RuntimeError: injected failure"):
        ensure_warp_runs(profile, configs, names=names, components=pooled)
    monkeypatch.delenv("WARP_FAIL_AT")
    ensure_warp_runs(profile, configs, names=names, components=pooled)
    for k in range(3):
        assert_same_single_iteration(root, f"seq_{k}", names[k])


def test_a_failed_worker_names_its_rank_and_run_and_the_rerun_resumes(smoke):
    env, root = smoke
    if not any((root / "data" / "artifacts").glob("tiny-set-*/warp_runs/seq2")):
        assert train(env, "--I", "2", "--M", "2", "--name", "seq2").returncode == 0
    failed = train(env, "--I", "2", "--M", "2", "--name", "failed", "--workers", "2",
                   extra_env={"WARP_FAIL_AT": "1:2:2:2"})  # rank 1, iteration 2, run 2, step 2
    assert failed.returncode == 1
    message = next(line for line in failed.stderr.splitlines() if line.startswith("error:"))
    assert message.startswith("error: worker rank 1 failed while training iter_2/run_2") and "injected" in message
    folder = run_dir(root, "failed")
    assert not (folder / "iter_2" / "init").exists() and not (folder / "final").exists()  # no half iteration
    resumed = train(env, "--I", "2", "--M", "2", "--name", "failed", "--workers", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming iter_2/run_2 from step 1" in resumed.stdout + resumed.stderr
    assert_same_run(root, "seq2", "failed")
    shutil.rmtree(folder)

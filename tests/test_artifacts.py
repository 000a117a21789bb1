"""The one artifact lifecycle: fresh = stamp matches AND files verify; everything else rebuilt."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from warp_utils.store import artifacts
from warp_utils.store.artifacts import BUILDING, CHECKPOINT, STAMP, build_once, status

CONFIG = {"stage": "demo", "size": 3}


def writer(calls, content=b"weights" * 100):
    def build(folder):
        calls.append(sorted(p.name for p in folder.iterdir()))
        (folder / "model.bin").write_bytes(content)
        (folder / "sub").mkdir(exist_ok=True)
        (folder / "sub" / "vocab.txt").write_text("a b c")
        return {"accuracy": 0.9}
    return build


def test_built_once_then_reused_with_a_verified_file_list(tmp_path):
    calls, folder = [], tmp_path / "artifact"
    build_once(folder, CONFIG, writer(calls))
    build_once(folder, CONFIG, writer(calls))
    assert len(calls) == 1
    stamp = json.loads((folder / STAMP).read_text())
    assert stamp["accuracy"] == 0.9 and stamp["code_version"] == 0
    assert stamp["files"]["model.bin"][0] == 700 and set(stamp["files"]) == {"model.bin", "sub/vocab.txt"}
    assert not (folder / BUILDING).exists()


@pytest.mark.parametrize("damage, reason", [
    (lambda f: (f / "model.bin").unlink(), "model.bin is missing"),
    (lambda f: (f / "model.bin").write_bytes(b"weights"), "model.bin has 7 bytes, 700 when built"),
    (lambda f: (f / "sub" / "vocab.txt").write_text("a b d"), "sub/vocab.txt changed since it was built"),
])
def test_a_damaged_artifact_is_detected_and_rebuilt_with_one_line(tmp_path, damage, reason, capsys):
    calls, folder = [], tmp_path / "artifact"
    build_once(folder, CONFIG, writer(calls))
    damage(folder)
    assert status(folder, CONFIG) == ("damaged", reason)
    build_once(folder, CONFIG, writer(calls))
    assert len(calls) == 2 and calls[1] == [BUILDING]  # rebuilt from an empty folder
    assert capsys.readouterr().out.strip() == f"rebuilding artifact: {reason}"
    assert artifacts.is_fresh(folder, CONFIG)


def test_another_config_or_code_version_is_stale(tmp_path):
    calls, folder = [], tmp_path / "artifact"
    build_once(folder, CONFIG, writer(calls))
    assert status(folder, {**CONFIG, "size": 4})[0] == "stale"
    assert status(folder, CONFIG, version=1) == ("stale", "built by code version 0, now 1")
    build_once(folder, CONFIG, writer(calls), version=1)
    assert len(calls) == 2 and artifacts.is_fresh(folder, CONFIG, version=1)


def test_timings_are_kept_beside_the_content_but_not_listed_nor_fingerprinted(tmp_path):
    def build(seconds):
        def write(folder):
            writer([])(folder)
            artifacts.write_timings(folder, build_seconds=seconds)
            return {}
        return write

    first, second = tmp_path / "a", tmp_path / "b"
    build_once(first, CONFIG, build(1.5))
    build_once(second, CONFIG, build(7.25))  # the same content, built slower
    assert artifacts.read_timings(first) == {"build_seconds": 1.5}
    assert artifacts.TIMINGS not in json.loads((first / STAMP).read_text())["files"]
    assert artifacts.fingerprint(first) == artifacts.fingerprint(second)
    (first / artifacts.TIMINGS).write_text("{}")  # timings are no part of the content: still fresh
    assert artifacts.is_fresh(first, CONFIG) and artifacts.read_timings(tmp_path) == {}
    build_once(tmp_path / "c", CONFIG, writer([], content=b"other" * 140))
    assert artifacts.fingerprint(tmp_path / "c") != artifacts.fingerprint(first)  # content still counts


def test_a_failed_build_leaves_no_folder(tmp_path):
    def fail(folder):
        raise RuntimeError("hub unreachable")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "artifacts" / "tiny" / "sft_policy", CONFIG, fail)
    assert not (tmp_path / "artifacts").exists()  # nor the empty folders made for it


def test_an_interrupted_build_keeps_its_checkpoint_for_the_same_config_only(tmp_path, capsys):
    folder = tmp_path / "artifact"

    def interrupted(folder):
        (folder / CHECKPOINT).write_text("step 7")
        (folder / "model.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_once(folder, CONFIG, interrupted)
    assert status(folder, CONFIG) == ("partial", "an interrupted build of this config")
    assert not (folder / STAMP).exists()  # it does not look done
    seen = []

    def resume(folder):
        checkpoint = folder / CHECKPOINT
        seen.append(checkpoint.read_text() if checkpoint.exists() else None)
        (folder / "model.bin").write_bytes(b"whole")

    build_once(folder, CONFIG, resume)
    assert seen == ["step 7"] and not (folder / CHECKPOINT).exists()  # the checkpoint is not part of it
    assert "checkpoint.pt" not in json.loads((folder / STAMP).read_text())["files"]
    with pytest.raises(KeyboardInterrupt):
        build_once(tmp_path / "other", CONFIG, interrupted)
    build_once(tmp_path / "other", {**CONFIG, "size": 5}, resume)  # another config: starts clean
    assert seen == ["step 7", None]
    assert "rebuilding other: a half-built folder of another config" in capsys.readouterr().out


def test_fresh_rebuilds_even_a_fresh_artifact(tmp_path):
    calls, folder = [], tmp_path / "artifact"
    build_once(folder, CONFIG, writer(calls))
    build_once(folder, CONFIG, writer(calls), fresh=True)
    assert len(calls) == 2


# ----------------------------------------------------------------- one process at a time per folder
# Two notebooks open at once (or the course's notebooks side by side under nbval, or two CLI runs)
# may ask for the same artifact: one builds it, the other waits and finds it fresh.

def _slow_build(folder, builds, start, log_file=None):
    start.wait()

    def build(out):
        with open(builds, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for the other process to arrive mid-build
        (out / "model.bin").write_bytes(b"weights")

    log = None if log_file is None else (lambda line: Path(log_file).write_text(line))
    build_once(folder, CONFIG, build, log=log)


def _in_processes(*targets, timeout=60):
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [context.Process(target=target, args=(*args, start)) for target, args in targets]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
    return [process.exitcode for process in processes]


def test_two_processes_asking_for_one_folder_build_it_once(tmp_path):
    folder, builds = tmp_path / "sft_policy", tmp_path / "builds.txt"
    assert _in_processes((_slow_build, (folder, builds)), (_slow_build, (folder, builds))) == [0, 0]
    assert len(builds.read_text().split()) == 1  # without the lock: 2 (the second resumes the "partial" folder)
    assert status(folder, CONFIG) == ("fresh", "up to date")


def test_a_process_waits_for_the_lock_holder_and_says_so(tmp_path):
    folder, builds, said = tmp_path / "prompts", tmp_path / "builds.txt", tmp_path / "said.txt"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    with artifacts.folder_lock(folder, log=None):  # this process is "building" it
        child = context.Process(target=_slow_build, args=(folder, builds, start, said))
        child.start()
        start.set()
        deadline = time.monotonic() + 30
        while not said.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "waiting for another process building prompts" in said.read_text()
        assert not builds.exists() and child.is_alive()  # blocked, not building beside us
    child.join(60)
    assert child.exitcode == 0 and len(builds.read_text().split()) == 1


def test_no_wait_is_said_for_a_folder_that_is_built_already(tmp_path):
    folder, builds, said = tmp_path / "sft_policy", tmp_path / "builds.txt", tmp_path / "said.txt"
    build_once(folder, CONFIG, lambda out: (out / "model.bin").write_bytes(b"weights") and None, log=None)
    context = multiprocessing.get_context("fork")
    start = context.Event()
    with artifacts.folder_lock(folder, log=None):  # this process only checks it (a sibling worker)
        child = context.Process(target=_slow_build, args=(folder, builds, start, said))
        child.start()
        start.set()
        time.sleep(1.0)  # the child is blocked on the lock by now
        assert child.is_alive()
    child.join(60)
    assert child.exitcode == 0 and not builds.exists()  # found fresh: nothing built
    assert not said.exists()  # and no "waiting for another process building" line: nothing was built


def _nested_locks(folder, start):
    start.wait()
    with artifacts.folder_lock(folder), artifacts.folder_lock(folder):  # flock twice would block for ever
        pass


def test_the_lock_is_reentrant_within_a_process_and_not_beside_the_folder(tmp_path):
    assert _in_processes((_nested_locks, (tmp_path / "run_1",)), timeout=30) == [0]
    assert tmp_path not in artifacts.lock_path(tmp_path / "run_1").parents  # a failed build leaves nothing here


def test_the_artifact_log_is_quiet_in_a_notebook_and_shown_elsewhere(tmp_path, monkeypatch, capsys):
    from warp_utils.execution import progress

    def write(out):
        (out / "x.txt").write_text("x")

    def rebuild_damaged(name):
        folder = build_once(tmp_path / name, {"a": 1}, write)
        (folder / "x.txt").write_text("changed")  # damaged: rebuilt with one line saying why
        build_once(folder, {"a": 1}, write)

    for in_notebook, shown in ((True, False), (False, True)):
        monkeypatch.setattr(progress, "_in_notebook", lambda in_notebook=in_notebook: in_notebook)
        monkeypatch.setattr(progress.LOGGER, "handlers", [])  # configured afresh where it runs
        rebuild_damaged(f"folder_{in_notebook}")
        assert ("rebuilding folder_" in capsys.readouterr().out) == shown
    progress.show_log(True)  # a notebook can turn it on
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    rebuild_damaged("folder_shown")
    assert "rebuilding folder_shown" in capsys.readouterr().out


def test_the_step_printer_prints_every_kth_step_with_its_name(capsys):
    from warp_utils.execution.progress import step_printer

    row = {"iteration": 1, "run": 2, "step": 25, "reward_mean": 0.5, "kl_to_sft": 1.25}
    step_printer(50)(row)
    step_printer(50, names="WARP")({**row, "step": 24})  # not a 25th step: nothing
    step_printer(50, names=["mu=0.05", "lr=0.001"])(1, row)  # ensure_warp_runs' (k, row)
    assert capsys.readouterr().out.splitlines() == [
        "iteration 1 run 2 step 25/50: reward +0.50, KL to SFT 1.25",
        "lr=0.001 iteration 1 run 2 step 25/50: reward +0.50, KL to SFT 1.25"]

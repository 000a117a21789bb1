"""One lifecycle for every artifact under data/artifacts/<profile>/ (SFT policy, reward model,
prompts, each WARP run and merge, the report).

A folder is *fresh* when its stamp (`artifact.json`, written last) records the hash of the config
it was built from and the code version of its stage, AND every file it lists still has its size
and sha256 (every file but the stamp, the building marker and timings.json, where a build
records how long it took: a rebuild of the same content lists, and fingerprints, the same).
Anything else is rebuilt, with one line saying why:

    missing   no folder                        -> build
    partial   building.json without a stamp    -> resume: an interrupted build of the SAME config
                                                  keeps its folder (its checkpoint.pt); another
                                                  config's leftovers are removed
    stale     stamp of another config/version  -> rebuild
    damaged   a listed file missing or changed -> rebuild

A failed build never leaves a folder that looks done: the stamp is written only after `build`
returned, and a folder holding nothing but its building marker is removed (no empty folders).
One process at a time checks and builds a folder (`folder_lock`): a second process asking for it
(two notebooks open at once, two CLI runs) waits, then finds it fresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no inter-process lock (folder_lock does nothing)
    fcntl = None

from ..config import config_hash
from ..execution.progress import log as progress_log

STAMP = "artifact.json"
BUILDING = "building.json"  # marks a build in progress: config hash and code version
CHECKPOINT = "checkpoint.pt"  # a build's resumable state; removed before the stamp is written
# how long a build took: a fact about the machine, not the build's content, so neither listed nor
# fingerprinted (an identical rebuild keeps its fingerprint)
TIMINGS = "timings.json"
_NOT_LISTED = {STAMP, BUILDING, TIMINGS}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_list(folder: Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of every file in `folder` (nested folders included),
    except the stamp, the building marker and the timings."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): [path.stat().st_size, _sha256(path)]
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in _NOT_LISTED
    }


def write_timings(folder: Path, **seconds: float) -> None:
    """Record how long parts of a build took, beside its content (timings.json, not listed)."""
    (Path(folder) / TIMINGS).write_text(json.dumps(seconds, indent=2, sort_keys=True))


def read_timings(folder: Path) -> dict:
    """A build's timings ({} when it recorded none)."""
    return _read_json(Path(folder) / TIMINGS) or {}


def fingerprint(folder: Path) -> str:
    """sha256 of a built folder's contents, from its stamp's file list (names, sizes, sha256 of
    every file): equal for bitwise-equal builds, whatever the machine or the folder's path."""
    files = read_stamp(folder)["files"]
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def read_stamp(folder: Path) -> dict:
    return json.loads((Path(folder) / STAMP).read_text())


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def status(folder: Path, config, version: int = 0) -> tuple[str, str]:
    """(state, reason): state is fresh | missing | partial | stale | damaged (see module doc)."""
    folder, wanted = Path(folder), config_hash(config)
    if not folder.exists():
        return "missing", "not built yet"
    stamp = _read_json(folder / STAMP)
    if stamp is None:
        building = _read_json(folder / BUILDING)
        if building == {"config_hash": wanted, "code_version": version}:
            return "partial", "an interrupted build of this config"
        return "stale", "a half-built folder of another config" if building else "a folder without a stamp"
    if stamp.get("config_hash") != wanted:
        return "stale", "built from another config"
    if stamp.get("code_version", 0) != version:
        return "stale", f"built by code version {stamp.get('code_version', 0)}, now {version}"
    files = stamp.get("files", {})
    for name, (size, digest) in files.items():
        path = folder / name
        if not path.is_file():
            return "damaged", f"{name} is missing"
        if path.stat().st_size != size:
            return "damaged", f"{name} has {path.stat().st_size} bytes, {size} when built"
    for name, (size, digest) in files.items():  # sizes first: a hash reads the whole file
        if _sha256(folder / name) != digest:
            return "damaged", f"{name} changed since it was built"
    return "fresh", "up to date"


def is_fresh(folder: Path, config, version: int = 0) -> bool:
    """True when `folder` is a complete, undamaged build of exactly this `config` and version."""
    return status(folder, config, version)[0] == "fresh"


def write_stamp(folder: Path, config, version: int = 0, **extra) -> None:
    """The last write of a build: config, its hash, the code version and the file list."""
    folder = Path(folder)
    payload = {"config_hash": config_hash(config), "code_version": version, "config": config,
               **extra, "files": file_list(folder)}
    temporary = folder / (STAMP + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(temporary, folder / STAMP)  # atomic: a stamp is whole or absent


_held: dict[str, int] = {}  # this process's folder locks (re-entrant) -> depth
if hasattr(os, "register_at_fork"):  # a forked child holds none of them: it waits like any other process
    os.register_at_fork(after_in_child=_held.clear)


def lock_path(folder: Path) -> Path:
    """The lock file of `folder`: in the temp dir, named by a hash of the folder's absolute path.
    Not beside the folder, so that a failed build leaves nothing behind; never deleted (deleting a
    lock file another process waits on would let a third lock a new file of the same name)."""
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:32]
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"warp_utils_locks_{user}" / f"{key}.lock"


@contextlib.contextmanager
def folder_lock(folder: Path, log: Callable[[str], None] | None = progress_log,
                unbuilt: Callable[[], bool] | None = None):
    """Hold the exclusive lock of `folder` among this machine's processes (fcntl.flock); re-entrant
    within a process; released by the OS if the process dies. `log` gets one line when another
    process holds it, unless `unbuilt()` says the folder is built already (the other process is
    only checking it: saying "waiting for a build" would be false). Only the main rank builds
    under torchrun (cli._stage) and each run folder has one owner rank, so no build waits here for
    a rank that waits for it in a collective."""
    key = str(Path(folder).resolve())
    if fcntl is None or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None and (unbuilt is None or unbuilt()):
                log(f"waiting for another process building {Path(folder).name} ({folder})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)


def _only_marker_left(folder: Path) -> bool:
    return all(path.name in (BUILDING, STAMP + ".tmp") for path in folder.rglob("*") if path.is_file())


def build_once(folder: Path, config, build: Callable[[Path], dict | None], fresh: bool = False,
               version: int = 0, log: Callable[[str], None] | None = progress_log) -> Path:
    """Run `build(folder)` unless `folder` already holds a fresh build of `config`.

    `config` is a JSON-able dict of everything the artifact depends on; `version` the code version
    of its stage (bump it when the stage's numerics change). `build` writes into `folder`, which
    is empty, or holds an interrupted build of the same config (its `checkpoint.pt`, to resume
    from); it may return extra facts (metrics, timings) stored in the stamp. `log` gets one line
    when an existing folder is rebuilt, saying why, and when it waits for another process that
    holds the folder's lock (that process's build is then found fresh here, not built twice).
    """
    folder = Path(folder)
    with folder_lock(folder, log, unbuilt=lambda: fresh or status(folder, config, version)[0] != "fresh"):
        return _build_locked(folder, config, build, fresh, version, log)


def _build_locked(folder: Path, config, build, fresh: bool, version: int, log) -> Path:
    state, reason = status(folder, config, version)
    if state == "fresh" and not fresh:
        return folder
    if folder.exists() and (fresh or state != "partial"):
        if log is not None:
            log(f"rebuilding {folder.name}: {'--fresh' if fresh else reason}")
        shutil.rmtree(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again if the build fails
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUILDING).write_text(json.dumps({"config_hash": config_hash(config), "code_version": version}))
    try:
        extra = build(folder) or {}
    except BaseException:
        if _only_marker_left(folder):  # nothing worth resuming: leave no folder behind
            shutil.rmtree(folder, ignore_errors=True)
            for parent in created[1:]:  # nor the empty folders made for it
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        raise
    (folder / CHECKPOINT).unlink(missing_ok=True)
    write_stamp(folder, config, version, **extra)
    (folder / BUILDING).unlink()
    return folder

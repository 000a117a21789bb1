"""Build-once artifacts under data/artifacts/<profile>/, each stamped with the config it came from.

A folder is reused only if its stamp (`artifact.json`) matches the config's hash; a stale or
half-written folder is rebuilt. The stamp is written last, so an interrupted build never looks done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from .config import config_hash

STAMP = "artifact.json"


def is_fresh(folder: Path, config) -> bool:
    """True when `folder` was completely built from exactly this `config`."""
    stamp = Path(folder) / STAMP
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("config_hash") == config_hash(config)
    except json.JSONDecodeError:
        return False


def write_stamp(folder: Path, config, **extra) -> None:
    payload = {"config_hash": config_hash(config), "config": config, **extra}
    (Path(folder) / STAMP).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


def read_stamp(folder: Path) -> dict:
    return json.loads((Path(folder) / STAMP).read_text())


def build_once(folder: Path, config, build: Callable[[Path], dict | None], fresh: bool = False) -> Path:
    """Run `build(folder)` unless `folder` already holds a fresh build of `config`.

    `config` is a JSON-able dict of everything the artifact depends on. `build` writes into the
    (emptied) folder and may return extra facts (metrics, timings) stored in the stamp.
    """
    folder = Path(folder)
    if not fresh and is_fresh(folder, config):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    extra = build(folder) or {}
    write_stamp(folder, config, **extra)
    return folder

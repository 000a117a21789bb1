"""C kernels compiled on the machine that runs them: built once by its C compiler (`cc`) into a
cache folder ($XDG_CACHE_HOME or ~/.cache, then warp_utils/), loaded with ctypes. Where there is no
compiler, the CPU is not x86-64, or WARP_NATIVE=0, `load` returns None and callers use torch."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

# -ffp-contract=off: the kernels' arithmetic is what their source writes (no a*b+c fused behind it)
FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared"]


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "warp_utils"


def compile_library(source: Path, folder: Path) -> Path:
    """The shared library of `source`, built once per source text and flags (its name carries
    their hash); written to a temporary name and renamed, so concurrent workers never load half a file."""
    key = hashlib.sha256(source.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = folder / f"{source.stem}-{key}.so"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            built = Path(scratch) / target.name
            subprocess.run(["cc", *FLAGS, str(source), "-o", str(built)], check=True, capture_output=True)
            os.replace(built, target)
    return target


def load(source: Path):
    """The compiled `source` as a ctypes library, or None where native code is off or cannot build."""
    if os.environ.get("WARP_NATIVE", "1") == "0":
        return None
    if platform.machine().lower() not in ("x86_64", "amd64") or shutil.which("cc") is None:
        return None
    try:
        return ctypes.CDLL(str(compile_library(source, cache_folder())))
    except (OSError, subprocess.CalledProcessError):
        return None

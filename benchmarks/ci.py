"""CI's wall time: `.ci/run` on a fresh clone of this repository's HEAD, placed beside ../shared as
CI places it, and benchmarks/README.md's "Measured" sentence about it.

    python benchmarks/ci.py                  # ~13 min on 2 idle cores; writes results/ci.json, updates benchmarks/README.md
    python benchmarks/ci.py --update-readme  # only rewrites benchmarks/README.md's block from results/ci.json

The clone is made in a new folder next to this checkout (so that ../shared resolves as in CI) and
removed afterwards; its full log is kept in results/ci.log. The figures come from the lines
`.ci/run` prints: `install: N s`, pytest's summary line and `total: N s`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import readme_blocks  # benchmarks/: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULT, LOG = ROOT / "benchmarks" / "results" / "ci.json", ROOT / "benchmarks" / "results" / "ci.log"
README = ROOT / "benchmarks" / "README.md"  # links in its block are relative to benchmarks/
BEGIN, END = "<!-- ci-time:begin -->", "<!-- ci-time:end -->"
LIMIT_SECONDS = 17 * 60  # the developers' guide: the whole CI run under 17 minutes
SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ (?:passed|failed|error).*?) in (?P<seconds>[\d.]+)s", flags=re.MULTILINE)


def pytest_summary(text: str) -> tuple[dict, float] | None:
    """The outcome counts and seconds of pytest's last summary line in `text` (with or without the
    `=` rule that -q leaves out), or None when it has none."""
    summaries = list(SUMMARY.finditer(text))
    if not summaries:
        return None
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", summaries[-1]["counts"])}
    return counts, float(summaries[-1]["seconds"])


def parse_log(text: str) -> dict:
    """install, pytest and total seconds and pytest's outcome counts from a `.ci/run` log."""
    install = re.search(r"^install: (\d+) s$", text, flags=re.MULTILINE)
    total = re.search(r"^total: (\d+) s$", text, flags=re.MULTILINE)
    summary = pytest_summary(text)
    if not (install and summary):
        raise ValueError("the log holds no `install: N s` line or no pytest summary line")
    counts, seconds = summary
    return {"install_seconds": int(install[1]), "pytest_seconds": seconds,
            "total_seconds": int(total[1]) if total else None, "outcome": counts}


def measure() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0]
    clone = Path(tempfile.mkdtemp(prefix="ci_clone_", dir=ROOT.parent))  # its ../shared is CI's ../shared
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        started = time.perf_counter()
        run = subprocess.run([str(clone / ".ci" / "run")], cwd=clone, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    LOG.write_text(run.stdout + run.stderr)
    return {"date": datetime.now().strftime("%Y-%m-%d"), "commit": commit, "cores": os.cpu_count(),
            "load_average_at_start": round(load, 2), "returncode": run.returncode,
            "wall_seconds": round(seconds, 1), **parse_log(run.stdout)}


def render(result: dict) -> str:
    """benchmarks/README.md's sentence about the CI run, from a result of `measure`."""
    outcome = ", ".join(f"{count} {word}" for word, count in result["outcome"].items())
    total = result["total_seconds"] if result["total_seconds"] is not None else result["wall_seconds"]
    verdict = "green" if result["returncode"] == 0 else f"RED (exit {result['returncode']})"
    limit = "within" if total <= LIMIT_SECONDS else "OVER"
    return (f"Measured: `.ci/run` on a fresh clone of {result['commit']} (`python benchmarks/ci.py`, "
            f"{result['date']}, {result['cores']} cores, load average {result['load_average_at_start']} at the start; "
            f"[results](results/ci.json)): {verdict}, {outcome} in {result['pytest_seconds']:.0f} s, "
            f"{total:.0f} s in all (install {result['install_seconds']} s), {limit} the {LIMIT_SECONDS // 60}-minute limit.")


def readme_block(text: str) -> str | None:
    return readme_blocks.block(text, BEGIN, END)


def update_readme(result: dict) -> None:
    readme_blocks.replace_block(README, BEGIN, END, render(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true", help="only rewrite benchmarks/README.md's block from the result file")
    args = parser.parse_args()
    if args.update_readme:
        return readme_blocks.update_from_result(RESULT, "ci.py", update_readme)
    if not (ROOT.parent / "shared" / "data" / "imdb").is_dir():
        print(f"error: {ROOT.parent / 'shared' / 'data' / 'imdb'} not found: .ci/run reads IMDB from ../shared",
              file=sys.stderr)
        return 2
    try:
        result = measure()
    except subprocess.CalledProcessError as error:  # the clone itself failed: nothing was run
        print(f"error: {' '.join(error.cmd)} failed (exit {error.returncode})", file=sys.stderr)
        return 2
    except ValueError as error:  # .ci/run stopped before pytest's summary: its log says why
        print(f"error: {error}; see {LOG.relative_to(ROOT)}", file=sys.stderr)
        return 2
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    update_readme(result)
    print(render(result))
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

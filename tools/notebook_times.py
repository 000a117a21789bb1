"""Writes each notebook's run time into its **Time** line, from the notebook benchmark's result file.

    python tools/notebook_times.py           # rewrite the run times, then `jupytext --sync` the pairs
    python tools/notebook_times.py --check   # exit 1 if a notebook's run time is not the rendered one

A Time line reads `**Time**: <!-- run -->about 2 min<!-- /run --> to run on 2 CPU cores ...`: the
part between the markers (invisible in a rendered notebook) comes from
benchmarks/results/notebooks.json (`python benchmarks/notebooks.py`, each notebook from an empty
data folder, one after another), never typed; the reading time after it is an estimate.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RESULT = ROOT / "benchmarks" / "results" / "notebooks.json"
MARKED = re.compile(r"<!-- run -->(.*?)<!-- /run -->")


def phrase(seconds: float | None) -> str:
    """A run time as a learner reads it: rounded, never more precise than one run can say."""
    if seconds is None:
        return "not measured yet"
    if seconds < 20:
        return "seconds"
    if seconds < 60:
        return "under a minute"
    return f"about {round(seconds / 60)} min"


# Notebooks whose first run is a whole run of another profile, timed by that run's benchmark
# instead of benchmarks/notebooks.py (which would spend that run's half hour on one notebook):
# notebook 07 trains or loads the smol run (`python benchmarks/main_command.py --smol`)
SEPARATELY_MEASURED = {"07_real_text": ROOT / "benchmarks" / "results" / "smol_run.json"}


def measured() -> dict[str, float]:
    """{notebook stem: seconds} of the committed notebook benchmark, and of the runs that time the
    SEPARATELY_MEASURED notebooks (when measured)."""
    result = json.loads(RESULT.read_text())
    times = {Path(row["notebook"]).stem: row["seconds"] for row in result["notebooks"]}
    for stem, path in SEPARATELY_MEASURED.items():
        if path.is_file():
            times[stem] = json.loads(path.read_text())["seconds"]
    return times


def render(text: str, seconds: float | None) -> str:
    """`text` (a notebook's py:percent source) with its one marked run time rewritten."""
    if len(MARKED.findall(text)) != 1:
        raise ValueError("a notebook must hold exactly one <!-- run -->...<!-- /run --> run time")
    return MARKED.sub(lambda _: f"<!-- run -->{phrase(seconds)}<!-- /run -->", text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not RESULT.is_file():
        print(f"error: no {RESULT.relative_to(ROOT)}: run `python benchmarks/notebooks.py` first", file=sys.stderr)
        return 2
    times, rendered = measured(), {}
    for path in sorted(NOTEBOOKS.glob("*.py")):
        try:
            rendered[path] = render(path.read_text(), times.get(path.stem))
        except ValueError as error:  # every notebook is rendered before any is written
            print(f"error: {path.name}: {error}", file=sys.stderr)
            return 2
    stale = [path for path, new in rendered.items() if new != path.read_text()]
    if args.check:
        for path in stale:
            print(f"{path.name}: run time differs from {RESULT.name}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(rendered[path])
    if stale:
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", *map(str, stale)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

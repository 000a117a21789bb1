"""The course's run time: every notebook in order, each in a fresh kernel, from an empty data root
(a fresh clone), cell by cell.

    python benchmarks/notebooks.py                  # ~6 min on 2 idle cores; writes results/notebooks.json
    python benchmarks/notebooks.py --update-readme  # then rewrites the README's block from that file
    python benchmarks/notebooks.py --root ../old --out /tmp/old.json   # another checkout's course

`--root` times another checkout's notebooks with its own warp_utils (on the kernels' PYTHONPATH):
with farm-bench --vs, two commits' courses alternate on the same machine; then

    python benchmarks/notebooks.py --pairs A1.json B1.json A2.json B2.json --commits AFTER BEFORE

writes results/notebooks_pairs.json, which the README block reports pair by pair.

Runs the notebooks/*.ipynb the repository holds, in order, with nbclient (the engine nbval drives:
one kernel per notebook, working directory notebooks/), with WARP_DATA_ROOT set to a new temporary
folder so that every artifact (SFT policy, reward model, prompts, WARP runs) is built as on a fresh
clone. Per cell: the kernel's wall time from execute_input to execute_reply. Per notebook: the
wall time from kernel start to shutdown. The README's "Measured here" notebook line is rendered
from the result file (`render`), and tests/test_benchmark_results.py checks that it is.
Needs IMDB (WARP_IMDB_DIR) and no hub (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import readme_blocks  # benchmarks/: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "notebooks.json"
PAIRS = ROOT / "benchmarks" / "results" / "notebooks_pairs.json"  # alternating runs: this round's course and the one before
README = ROOT / "README.md"
BEGIN, END = "<!-- notebook-times:begin -->", "<!-- notebook-times:end -->"
TARGET_SECONDS = 300  # issue 10: nbval of all notebooks <= 5 min on an idle 2-core machine


def cell_seconds(cell) -> float | None:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def what(source: str) -> str:
    """The line that names a cell's work: its first call of an `ensure_` function, else its first
    line of code."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    named = [line for line in lines if "ensure_" in line and "import" not in line]
    return (named or lines or [""])[0][:90]


def time_notebook(path: Path) -> dict:
    import nbformat

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from patient_client import PatientNotebookClient  # polls, so a kernel reply cannot be missed (nbclient issue 312)

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    PatientNotebookClient(notebook, kernel_name="python3", record_timing=True, timeout=600,  # a cell that never ends: fail
                          resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - started
    timed = [(index, cell, cell_seconds(cell)) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    cells = [{"index": index, "seconds": round(seconds, 2), "what": what(cell.source)}
             for index, cell, seconds in timed if seconds is not None]
    return {"notebook": path.name, "seconds": round(seconds, 1),
            "slowest_cells": sorted(cells, key=lambda cell: -cell["seconds"])[:3], "cells": cells}


def measure(root: Path = ROOT) -> dict:
    import torch

    load = os.getloadavg()[0]  # an idle machine reads ~0 here
    paths = sorted((root / "notebooks").glob("*.ipynb"))
    if root != ROOT:  # the kernels (and the workers they start) import that checkout's warp_utils
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="warp_notebooks_") as data_root:
        os.environ["WARP_DATA_ROOT"] = data_root  # inherited by every kernel: nothing is cached
        results = []
        for path in paths:
            results.append(time_notebook(path))
            print(f"{path.name}: {results[-1]['seconds']:.0f} s", flush=True)
    return {"date": datetime.now().strftime("%Y-%m-%d"), "cores": os.cpu_count(), "torch": torch.__version__,
            "load_average_at_start": round(load, 2), "total_seconds": round(sum(r["seconds"] for r in results), 1),
            "notebooks": results}


def render(result: dict, pairs: dict | None = None) -> str:
    """The README's notebook-times paragraph, from a result of `measure` (and, given, the two sides
    of a paired run: this round's course and the one before it, alternating on one machine)."""
    parts = []
    for entry in result["notebooks"]:
        slowest = entry["slowest_cells"][0]
        parts.append(f"{entry['notebook'].split('_')[0]} {entry['seconds']:.0f} s "
                     f"(slowest cell {slowest['seconds']:.0f} s: `{slowest['what']}`)")
    total = result["total_seconds"]
    verdict = "met" if total <= TARGET_SECONDS else f"NOT met, {total - TARGET_SECONDS:.0f} s over"
    text = (f"Wall time of each notebook from an empty data root, as on a fresh clone "
            f"(`python benchmarks/notebooks.py`, {result['date']}, {result['cores']} cores, load average "
            f"{result['load_average_at_start']} at the start, torch {result['torch']}; "
            f"[results](benchmarks/results/notebooks.json)): " + "; ".join(parts)
            + f". In all {total:.0f} s = {total / 60:.1f} min; issue 10's target of 5 min: {verdict}.")
    if all("cells" in entry for entry in result["notebooks"]):
        text += "\n\n" + phase_table(result)
    if pairs is not None:
        text += "\n\n" + render_pairs(pairs)
    return text


def render_pairs(pairs: dict) -> str:
    """The paired runs: the two commits' courses alternating on one machine, so that each pair saw
    the same machine speed; per pair its ratio, then their median and each notebook's medians."""
    runs = pairs["pairs"]
    ratios = [after["total_seconds"] / before["total_seconds"] for after, before in runs]
    names = [entry["notebook"].split("_")[0] for entry in runs[0][0]["notebooks"]]

    def median_seconds(side: int, k: int) -> float:
        return statistics.median(run[side]["notebooks"][k]["seconds"] for run in runs)

    per_notebook = ", ".join(f"{name} {median_seconds(0, k):.0f}/{median_seconds(1, k):.0f}" for k, name in enumerate(names))
    totals = "; ".join(f"{after['total_seconds']:.0f} s against {before['total_seconds']:.0f} s" for after, before in runs)
    return (f"Paired runs, this round's course ({pairs['after']}) against the one before it ({pairs['before']}), "
            f"alternating on one machine ([pairs](benchmarks/results/notebooks_pairs.json), {runs[0][0]['date']}): "
            f"{totals}; ratios " + ", ".join(f"{r:.3f}" for r in ratios)
            + f", median {statistics.median(ratios):.3f}; per notebook, median after/before in s: {per_notebook}.")


def load_pairs() -> dict | None:
    """The committed paired runs, if there are any."""
    return json.loads(PAIRS.read_text()) if PAIRS.is_file() else None


def write_pairs(paths: list[Path], after: str, before: str) -> dict:
    """The pairs file from result files given as AFTER BEFORE [AFTER BEFORE ...] and the two commits."""
    if not paths or len(paths) % 2:
        raise SystemExit("error: --pairs takes result files two by two: AFTER BEFORE [AFTER BEFORE ...]")
    results = [json.loads(Path(path).read_text()) for path in paths]
    pairs = {"after": after, "before": before, "pairs": [results[k : k + 2] for k in range(0, len(results), 2)]}
    PAIRS.write_text(json.dumps(pairs, indent=1) + "\n")
    return pairs


PHASES = ("cells naming an `ensure_` call: building an artifact (first call) or training / loading RL runs",
          "the notebook's opening import cells: the libraries, and the models it loads",
          "other cells: evaluation, plots, exercises",
          "kernel start and time between cells")


def is_import(what_line: str) -> bool:
    return what_line.startswith(("import ", "from "))


def phases(entry: dict) -> tuple[float, float, float, float]:
    """A notebook's wall time in the four PHASES (they add up to it). The opening import cells are
    the code cells before the first that opens with anything else (a later cell that imports a
    helper and then evaluates counts as evaluation)."""
    cells = entry["cells"]
    opening = 0
    while opening < len(cells) and is_import(cells[opening]["what"]):
        opening += 1
    imports = sum(cell["seconds"] for cell in cells[:opening])
    work = sum(cell["seconds"] for cell in cells[opening:] if "ensure_" in cell["what"])
    other = sum(cell["seconds"] for cell in cells) - work - imports
    return work, imports, other, entry["seconds"] - work - imports - other


def phase_table(result: dict) -> str:
    """Seconds per notebook and phase, with the course's total per phase, and what the phases
    that no evaluation, plot or exercise is in add up to (the course's floor)."""
    rows = [(entry["notebook"].split("_")[0], entry["seconds"], *phases(entry)) for entry in result["notebooks"]]
    totals = ("all", *(sum(row[k] for row in rows) for k in range(1, 6)))
    lines = ["| notebook | wall s | " + " | ".join(PHASES) + " |", "|---|---|---|---|---|---|"]
    for name, *values in [*rows, totals]:
        lines.append(f"| {name} | " + " | ".join(f"{value:.0f}" for value in values) + " |")
    floor = totals[2] + totals[3] + totals[5]
    lines += ["", f"Building and training, imports and kernel starts alone: {floor:.0f} s, "
              f"{floor / TARGET_SECONDS:.0%} of the 5-minute target, before any evaluation, plot or exercise "
              f"({totals[4]:.0f} s)."]
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    return readme_blocks.block(text, BEGIN, END)


def update_readme(result: dict) -> None:
    readme_blocks.replace_block(README, BEGIN, END, render(result, load_pairs()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true", help="only rewrite the README block from the result file")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose notebooks to time (default: this one)")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"the result file (default: {RESULT.relative_to(ROOT)})")
    parser.add_argument("--pairs", type=Path, nargs="+", metavar="RESULT",
                        help=f"write {PAIRS.relative_to(ROOT)} from paired runs' result files, AFTER BEFORE ...")
    parser.add_argument("--commits", nargs=2, metavar=("AFTER", "BEFORE"), help="the two commits of --pairs")
    args = parser.parse_args()
    if args.pairs:
        if not args.commits:
            print("error: --pairs needs --commits AFTER BEFORE", file=sys.stderr)
            return 2
        print(render_pairs(write_pairs(args.pairs, *args.commits)))
        return 0
    if not (args.root / "notebooks").is_dir() or not (args.root / "warp_utils").is_dir():
        print(f"error: --root {args.root} holds no notebooks/ and warp_utils/", file=sys.stderr)
        return 2
    if args.update_readme:
        return readme_blocks.update_from_result(RESULT, "notebooks.py", update_readme)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    result = measure(args.root.resolve())
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

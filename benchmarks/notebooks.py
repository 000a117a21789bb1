"""The course's run time: every notebook in order, each in a fresh kernel, from an empty data root
(a fresh clone), cell by cell.

    python benchmarks/notebooks.py                  # ~6 min on 2 idle cores; writes results/notebooks.json
    python benchmarks/notebooks.py --update-readme  # then rewrites benchmarks/README.md's block from that file
    python benchmarks/notebooks.py --root ../old --out /tmp/old.json   # another checkout's course
    python benchmarks/notebooks.py --nbval          # `python -m pytest notebooks/` itself; results/notebooks_nbval.json

`--root` times another checkout's notebooks with its own warp_utils (on the kernels' PYTHONPATH):
with farm-bench --vs, two commits' courses alternate on the same machine; then

    python benchmarks/notebooks.py --pairs A1.json B1.json A2.json B2.json --commits AFTER BEFORE

writes results/notebooks_pairs.json, which benchmarks/README.md's block reports pair by pair.

Runs the notebooks/*.ipynb the repository holds, in order, with nbclient (the engine nbval drives:
one kernel per notebook, working directory notebooks/), with WARP_DATA_ROOT set to a new temporary
folder so that every artifact (SFT policy, reward model, prompts, WARP runs) is built as on a fresh
clone. Per cell: the kernel's wall time from execute_input to execute_reply. Per notebook: the
wall time from kernel start to shutdown. benchmarks/README.md's notebook-times block is rendered
from the result file (`render`), and tests/test_benchmark_results.py checks that it is.
Needs IMDB (WARP_IMDB_DIR) and no hub (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import ci  # benchmarks/: the script's own folder is on sys.path
import readme_blocks

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "notebooks.json"
PAIRS = ROOT / "benchmarks" / "results" / "notebooks_pairs.json"  # alternating runs: the course and the one before
NBVAL = ROOT / "benchmarks" / "results" / "notebooks_nbval.json"  # `pytest notebooks/`: nbval as a user runs it
# The same command with OMP_NUM_THREADS=2 exported: both lanes' kernels on two threads (conftest's rule overridden)
NBVAL_TWO_THREADS = ROOT / "benchmarks" / "results" / "nbval_lanes_two_threads.json"
README = ROOT / "benchmarks" / "README.md"  # links in its blocks are relative to benchmarks/
BEGIN, END = "<!-- notebook-times:begin -->", "<!-- notebook-times:end -->"
# notebook 07 trains the smol run: timed by `main_command.py --smol` (tools/notebook_times.py)
SEPARATELY_MEASURED = ("07_real_text",)
TARGET_SECONDS = 300  # issue 10: nbval of all notebooks <= 5 min on an idle 2-core machine
SAMPLE_SECONDS = 0.2  # how often CpuSampler reads /proc/stat


def cell_interval(cell) -> tuple[float, float] | None:
    """The cell's execute_input and execute_reply as Unix times (the kernel's stamps), if recorded."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()  # noqa: E731
    return parse(start), parse(end)


class CpuSampler:
    """The machine's busy CPU time (all processes, /proc/stat: user + nice + system + irq + softirq),
    sampled every `step` seconds in a thread, so that each cell's core-seconds can be read off its
    interval: wall time says how long a cell took, core-seconds say how much of the 2 cores it used,
    and the course's core-seconds / cores bound from below what any schedule of the same work can
    take. None on a system without /proc/stat."""

    def __init__(self, step: float = SAMPLE_SECONDS):
        self.step, self.samples, self.stop = step, [], threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def busy_jiffies() -> int | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
        return user + nice + system + irq + softirq

    def _run(self) -> None:
        while not self.stop.is_set():
            busy = self.busy_jiffies()
            if busy is None:
                return
            self.samples.append((time.time(), busy))
            self.stop.wait(self.step)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def wait_past(self, when: float) -> None:
        """Return once a sample taken after Unix time `when` exists (the interval ends inside the record)."""
        while self.thread.is_alive() and (not self.samples or self.samples[-1][0] < when):
            time.sleep(self.step / 4)

    def busy_at(self, when: float) -> float | None:
        """Busy jiffies at Unix time `when`, linear between the two samples around it."""
        samples = self.samples
        if len(samples) < 2 or not samples[0][0] <= when <= samples[-1][0]:
            return None
        low, high = 0, len(samples) - 1
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if samples[middle][0] <= when else (low, middle)
        (t0, b0), (t1, b1) = samples[low], samples[high]
        return b0 + (b1 - b0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)

    def core_seconds(self, start: float, end: float) -> float | None:
        """CPU seconds the machine spent busy between two Unix times (2 cores: at most 2 x wall)."""
        first, last = self.busy_at(start), self.busy_at(end)
        return None if first is None or last is None else (last - first) / self.tick


def what(source: str) -> str:
    """The line that names a cell's work: its first call of an `ensure_` function, else its first
    line of code."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    named = [line for line in lines if "ensure_" in line and "import" not in line]
    return (named or lines or [""])[0][:90]


def time_notebook(path: Path, sampler: CpuSampler | None = None) -> dict:
    import nbformat

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from patient_client import PatientNotebookClient  # polls, so a kernel reply cannot be missed (nbclient issue 312)

    notebook = nbformat.read(path, as_version=4)
    started, started_at = time.perf_counter(), time.time()
    PatientNotebookClient(notebook, kernel_name="python3", record_timing=True, timeout=600,  # a cell that never ends: fail
                          resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds, ended_at = time.perf_counter() - started, time.time()
    if sampler:
        sampler.wait_past(ended_at)
    cells = []
    for index, cell in enumerate(notebook.cells):
        interval = cell_interval(cell) if cell.cell_type == "code" else None
        if interval is not None:
            cells.append({"index": index, "seconds": round(interval[1] - interval[0], 2), "what": what(cell.source)})
            busy = sampler.core_seconds(*interval) if sampler else None
            if busy is not None:
                cells[-1]["core_seconds"] = round(busy, 2)
    entry = {"notebook": path.name, "seconds": round(seconds, 1),
             "slowest_cells": sorted(cells, key=lambda cell: -cell["seconds"])[:3], "cells": cells}
    busy = sampler.core_seconds(started_at, ended_at) if sampler else None
    if busy is not None:
        entry["core_seconds"] = round(busy, 1)
    return entry


def kernel_pythonpath(root: Path) -> str:
    """PYTHONPATH that puts `root`'s warp_utils before the installed one (for --root)."""
    return os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))


def measure(root: Path = ROOT) -> dict:
    import torch

    load = os.getloadavg()[0]  # an idle machine reads ~0 here
    paths = [path for path in sorted((root / "notebooks").glob("*.ipynb")) if path.stem not in SEPARATELY_MEASURED]
    if root != ROOT:  # the kernels (and the workers they start) import that checkout's warp_utils
        os.environ["PYTHONPATH"] = kernel_pythonpath(root)
    with tempfile.TemporaryDirectory(prefix="warp_notebooks_") as data_root:
        os.environ["WARP_DATA_ROOT"] = data_root  # inherited by every kernel: nothing is cached
        results = []
        with CpuSampler() as sampler:
            for path in paths:
                results.append(time_notebook(path, sampler))
                print(f"{path.name}: {results[-1]['seconds']:.0f} s", flush=True)
    return {"date": datetime.now().strftime("%Y-%m-%d"), "cores": os.cpu_count(), "torch": torch.__version__,
            "load_average_at_start": round(load, 2), "total_seconds": round(sum(r["seconds"] for r in results), 1),
            "notebooks": results}


def measure_nbval(root: Path = ROOT) -> dict:
    """`python -m pytest notebooks/` (nbval with the repository's pytest settings: xdist, its thread
    rule) from an empty data root: its wall time and pytest's outcome counts."""
    import torch

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="warp_nbval_") as data_root:
        env = {**os.environ, "WARP_DATA_ROOT": data_root}
        if root != ROOT:  # the kernels import that checkout's warp_utils, as in `measure`
            env["PYTHONPATH"] = kernel_pythonpath(root)
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "notebooks/", "-q"], cwd=root, env=env,
                             capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    summary = ci.pytest_summary(run.stdout)  # the same reading of pytest's last line as the CI benchmark's
    counts = summary[0] if summary else {}
    return {"date": datetime.now().strftime("%Y-%m-%d"), "cores": os.cpu_count(), "torch": torch.__version__,
            "load_average_at_start": round(load, 2), "command": "python -m pytest notebooks/",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),  # unset: the conftest's rule
            "returncode": run.returncode, "wall_seconds": round(seconds, 1), "outcome": counts,
            "log_tail": run.stdout.splitlines()[-30:]}  # pytest's slowest durations and its summary


def nbval_sentence(nbval: dict, two_threads: dict | None = None) -> str:
    """The course through nbval as a user runs it, and issue 10's verdict on that command (given,
    the same command with two-thread kernels, the other side of conftest's thread rule)."""
    seconds = nbval["wall_seconds"]
    state = "green" if nbval["returncode"] == 0 else f"RED (exit {nbval['returncode']})"
    outcome = ", ".join(f"{n} {word}" for word, n in nbval["outcome"].items()) or "no pytest summary"
    verdict = "met" if seconds <= TARGET_SECONDS and nbval["returncode"] == 0 else (
        f"NOT met, {seconds - TARGET_SECONDS:.0f} s over" if seconds > TARGET_SECONDS else "NOT met: the run failed")
    return (f"The same notebooks through nbval as a user runs them (`{nbval['command']}` from an empty data root, "
            f"{nbval['date']}, load average {nbval['load_average_at_start']} at the start; "
            f"[results](results/notebooks_nbval.json)): {state}, {outcome}, {seconds:.0f} s = "
            f"{seconds / 60:.1f} min; issue 10's target of 5 min for nbval of all notebooks: {verdict}."
            + ("" if two_threads is None else
               f" The same command with `OMP_NUM_THREADS=2` exported (both lanes' kernels on two threads, "
               f"{two_threads['date']}, load average {two_threads['load_average_at_start']} at the start; "
               f"[results](results/{NBVAL_TWO_THREADS.name})): {two_threads['wall_seconds']:.0f} s "
               f"({two_threads['wall_seconds'] / seconds:.2f}x)."))


def load_nbval(path: Path = NBVAL) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def render(result: dict, pairs: dict | None = None, nbval: dict | None = None) -> str:
    """benchmarks/README.md's notebook-times paragraph, from a result of `measure` (and, given, the two sides
    of a paired run: this round's course and the one before it, alternating on one machine)."""
    parts = []
    for entry in result["notebooks"]:
        slowest = entry["slowest_cells"][0]
        parts.append(f"{entry['notebook'].split('_')[0]} {entry['seconds']:.0f} s "
                     f"(slowest cell {slowest['seconds']:.0f} s: `{slowest['what']}`)")
    total = result["total_seconds"]
    text = (f"Wall time of each notebook from an empty data root, as on a fresh clone, one notebook after "
            f"another (`python benchmarks/notebooks.py`, {result['date']}, {result['cores']} cores, load average "
            f"{result['load_average_at_start']} at the start, torch {result['torch']}; "
            f"[results](results/notebooks.json)): " + "; ".join(parts)
            + f". In all {total:.0f} s = {total / 60:.1f} min one after another (nbval runs them in two lanes "
            f"side by side: below).")
    if all("cells" in entry for entry in result["notebooks"]):
        text += "\n\n" + phase_table(result)
    if nbval is not None:
        text += "\n\n" + nbval_sentence(nbval, load_nbval(NBVAL_TWO_THREADS))
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
    return (f"Paired runs, the course ({pairs['after']}) against the one before it ({pairs['before']}), "
            f"alternating on one machine ([pairs](results/notebooks_pairs.json), {runs[0][0]['date']}): "
            f"{totals}; ratios " + ", ".join(f"{r:.3f}" for r in ratios)
            + f", median {statistics.median(ratios):.3f}; per notebook, median after/before in s: {per_notebook}.")


def load_pairs() -> dict | None:
    """The committed paired runs, if there are any."""
    return json.loads(PAIRS.read_text()) if PAIRS.is_file() else None


def write_pairs(paths: list[Path], after: str, before: str) -> dict:
    """The pairs file from result files given as AFTER BEFORE [AFTER BEFORE ...] and the two commits."""
    if not paths or len(paths) % 2:
        raise ValueError("--pairs takes result files two by two: AFTER BEFORE [AFTER BEFORE ...]")
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        raise ValueError(f"--pairs: no result file {', '.join(missing)}")
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


def phases(entry: dict, key: str = "seconds") -> tuple[float, float, float, float]:
    """A notebook's wall time (key "core_seconds": its busy CPU time) in the four PHASES (they add
    up to it). The opening import cells are the code cells before the first that opens with
    anything else (a later cell that imports a helper and then evaluates counts as evaluation)."""
    cells = entry["cells"]
    opening = 0
    while opening < len(cells) and is_import(cells[opening]["what"]):
        opening += 1
    imports = sum(cell[key] for cell in cells[:opening])
    work = sum(cell[key] for cell in cells[opening:] if "ensure_" in cell["what"])
    other = sum(cell[key] for cell in cells) - work - imports
    return work, imports, other, entry[key] - work - imports - other


def has_core_seconds(result: dict) -> bool:
    return all("core_seconds" in entry and all("core_seconds" in cell for cell in entry["cells"])
               for entry in result["notebooks"])


def core_sentence(result: dict) -> str:
    """How much of the cores each phase used (machine-wide CPU time over the phase's wall time),
    and the bound that follows: the course's core-seconds spread over every core, perfectly."""
    wall = [sum(values) for values in zip(*(phases(entry) for entry in result["notebooks"]))]
    busy = [sum(values) for values in zip(*(phases(entry, "core_seconds") for entry in result["notebooks"]))]
    total = sum(entry["core_seconds"] for entry in result["notebooks"])
    names = ("`ensure_` cells", "opening imports", "other cells", "kernel starts")
    per_phase = "; ".join(f"{name} {b:.0f} core-s over {w:.0f} s ({b / w:.2f} cores busy)"
                          for name, b, w in zip(names, busy, wall) if w > 0)
    bound = total / result["cores"]
    return (f"CPU time, machine-wide (`/proc/stat`, sampled every {SAMPLE_SECONDS:g} s): {per_phase}. In all {total:.0f} "
            f"core-seconds: on {result['cores']} cores no schedule of the same work, notebooks side by side "
            f"included, takes less than {bound:.0f} s ({bound / TARGET_SECONDS:.0%} of the target).")


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
    if has_core_seconds(result):
        lines += ["", core_sentence(result)]
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    return readme_blocks.block(text, BEGIN, END)


def update_readme(result: dict) -> None:
    readme_blocks.replace_block(README, BEGIN, END, render(result, load_pairs(), load_nbval()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-readme", action="store_true", help="only rewrite benchmarks/README.md's block from the result file")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose notebooks to time (default: this one)")
    parser.add_argument("--out", type=Path, default=RESULT, help=f"the result file (default: {RESULT.relative_to(ROOT)})")
    parser.add_argument("--pairs", type=Path, nargs="+", metavar="RESULT",
                        help=f"write {PAIRS.relative_to(ROOT)} from paired runs' result files, AFTER BEFORE ...")
    parser.add_argument("--commits", nargs=2, metavar=("AFTER", "BEFORE"), help="the two commits of --pairs")
    parser.add_argument("--nbval", action="store_true",
                        help=f"time `python -m pytest notebooks/` instead; writes {NBVAL.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.pairs:
        if not args.commits:
            print("error: --pairs needs --commits AFTER BEFORE", file=sys.stderr)
            return 2
        try:
            print(render_pairs(write_pairs(args.pairs, *args.commits)))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if not (args.root / "notebooks").is_dir() or not (args.root / "warp_utils").is_dir():
        print(f"error: --root {args.root} holds no notebooks/ and warp_utils/", file=sys.stderr)
        return 2
    if args.update_readme:
        return readme_blocks.update_from_result(RESULT, "notebooks.py", update_readme)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.nbval:
        nbval = measure_nbval(args.root.resolve())
        (NBVAL if args.out == RESULT else args.out).write_text(json.dumps(nbval, indent=1) + "\n")
        print(nbval_sentence(nbval))
        return 0 if nbval["returncode"] == 0 else 1
    result = measure(args.root.resolve())
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

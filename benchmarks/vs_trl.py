"""The project's RL step (warp_utils.core.rl.rl_step) against trl.RLOOTrainer on the same saved models.

Same SFT policy, same reward model, same prompts (32 x 2 samples at the tiny size, 8 x 2 at
GPT-2-small size), temperature 0.7, no top-k / top-p, beta 0.1, fp32 on CPU, the same torch
thread count (the project's thread policy for the model size). Each side runs in a fresh
process, the two alternate, 2+ rounds; each process times `--steps` steps after one warm-up step.

Work counted: generated tokens per second. TRL is forced to exactly max_new_tokens tokens per
sample (`min_new_tokens`), the project counts the tokens it really sampled (up to and including
each completion's EOS). The project's step measures the exact KL to SFT every `--kl-every`
steps as train_warp does (an SFT forward TRL does not do); TRL does one no-grad policy forward
the project does not (its "old" log-probs).

TRL's reward-model path tokenizes with add_special_tokens=False, which drops DistilBERT's [CLS]:
TRL gets a reward function that scores prompt + completion with the project's RewardScorer,
i.e. as the reward model was trained.

    python benchmarks/vs_trl.py [--size tiny] [--rounds 2] [--steps 5]

writes benchmarks/results/vs_trl_<size>.json (TRL's whole config included); `python
benchmarks/measured_table.py` renders benchmarks/README.md's rows from it.
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

import torch
from setups import SIZES, load_setup, project_components

from warp_utils.execution.device import fused_optimizer
from warp_utils.execution.runtime import Execution, thread_count

RESULTS = Path(__file__).resolve().parent / "results"


def set_threads(model) -> int:
    threads = thread_count(sum(p.numel() for p in model.parameters()))
    torch.set_num_threads(threads)
    return threads


def run_project(size: str, steps: int, kl_every: int) -> dict:
    from warp_utils.core import rl

    setup = load_setup(size)
    policy, anchor, components = project_components(setup)
    threads = set_threads(policy)
    optimizer = fused_optimizer(torch.optim.Adam, policy.parameters(), lr=setup.warp.lr)
    torch.manual_seed(0)
    seconds, tokens = [], []
    for step in range(steps + 1):  # step 0: warm-up
        start = time.perf_counter()
        # The cadence of train_warp: step s (1-based) measures the KL to SFT when s % kl_every == 0.
        metrics = rl.rl_step(policy, anchor, optimizer, setup.prompts, components, setup.warp,
                             rl.StepContext(measure_kl_to_sft=(step + 1) % kl_every == 0))
        if step:
            seconds.append(time.perf_counter() - start)
            tokens.append(metrics["response_len"] * setup.batch_size)
    return {"side": "project", "threads": threads, "seconds": seconds, "tokens": tokens}


def trl_config(setup, output_dir: str, steps: int):
    from trl import RLOOConfig

    return RLOOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        disable_dropout=True, beta=setup.warp.beta, learning_rate=setup.warp.lr,
        num_generations=2, per_device_train_batch_size=setup.batch_size, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, temperature=setup.sampling.temperature, top_k=0,
        top_p=1.0, max_completion_length=setup.sampling.max_new_tokens,
        generation_kwargs={"min_new_tokens": setup.sampling.max_new_tokens},
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
        max_steps=steps + 1, shuffle_dataset=False, dataloader_num_workers=0, seed=0,
    )


def run_trl(size: str, steps: int) -> dict:
    import datasets
    from transformers import TrainerCallback
    from trl import RLOOTrainer

    from warp_utils.inputs.models import load_policy
    from warp_utils.inputs.reward import load_reward_scorer

    setup = load_setup(size)
    policy, tokenizer = load_policy(setup.policy_folder)
    threads = set_threads(policy)
    scorer = load_reward_scorer(setup.reward_folder, batch_size=setup.batch_size)

    def reward(prompts, completions, **_):  # the project's scorer: [CLS] text [SEP], as trained
        return scorer([p + c for p, c in zip(prompts, completions)]).tolist()

    unique = setup.prompts[::2]  # RLOO samples num_generations=2 completions per prompt itself
    texts = [tokenizer.decode(ids) for ids in unique] * (steps + 1)
    dataset = datasets.Dataset.from_dict({"prompt": texts})
    seconds = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - self.start)

    with tempfile.TemporaryDirectory() as output_dir:
        config = trl_config(setup, output_dir, steps)
        trainer = RLOOTrainer(model=policy, reward_funcs=reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Clock()])
        trainer.train()
        pinned = {k: v for k, v in config.to_dict().items() if k != "output_dir"}
    seconds = seconds[1:]  # drop the warm-up step
    tokens = [setup.batch_size * setup.sampling.max_new_tokens] * len(seconds)
    return {"side": "trl", "threads": threads, "seconds": seconds, "tokens": tokens, "config": pinned}


def worker(side: str, size: str, steps: int, kl_every: int) -> None:
    result = run_project(size, steps, kl_every) if side == "project" else run_trl(size, steps)
    print("RESULT " + json.dumps(result))


def spawn(side: str, size: str, steps: int, kl_every: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", side, "--size", size,
                          "--steps", str(steps), "--kl-every", str(kl_every)], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{side} worker failed:\n{out.stderr[-3000:]}")


def rate(result: dict) -> float:
    """Generated tokens per second over the timed steps (total tokens / total seconds)."""
    return sum(result["tokens"]) / sum(result["seconds"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="tiny", choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process")
    parser.add_argument("--kl-every", type=int, default=Execution().kl_every,
                        help="the project measures the exact KL to SFT every k steps (default: "
                             "runtime.Execution's, what train_warp does)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the result file (default: benchmarks/results/vs_trl_<size>.json)")
    parser.add_argument("--worker", choices=["project", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("rounds", "steps", "kl_every"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.out is not None and not args.out.parent.is_dir():  # before minutes of timing, not after
        print(f"error: --out {args.out}: no folder {args.out.parent}", file=sys.stderr)
        return 2
    if args.worker:
        return worker(args.worker, args.size, args.steps, args.kl_every)
    import trl

    setup = load_setup(args.size)
    result = {"date": datetime.now().strftime("%Y-%m-%d"), "torch": torch.__version__, "trl": trl.__version__,
              "load_average_at_start": round(os.getloadavg()[0], 2), "size": args.size,
              "batch": setup.batch_size, "prompts": setup.batch_size // 2, "max_new_tokens": setup.sampling.max_new_tokens,
              "steps": args.steps, "kl_every": args.kl_every, "rounds": []}
    print(f"torch {torch.__version__}, trl {trl.__version__}; {args.size}: batch {setup.batch_size} "
          f"({setup.batch_size // 2} prompts x 2), {setup.sampling.max_new_tokens} new tokens, "
          f"{args.steps} timed steps per process, {args.rounds} rounds alternating, project's KL to "
          f"SFT every {args.kl_every} step(s)")
    for round_ in range(1, args.rounds + 1):
        sides = {}
        for side in ("project", "trl"):
            run = spawn(side, args.size, args.steps, args.kl_every)
            if side == "trl" and round_ == 1:
                result["trl_config"] = run["config"]
                print("TRL config: " + json.dumps(run["config"], sort_keys=True, default=str))
            per_step = sum(run["seconds"]) / len(run["seconds"])
            sides[side] = {"threads": run["threads"], "seconds": run["seconds"], "tokens": run["tokens"],
                           "seconds_per_step": round(per_step, 4), "tokens_per_second": round(rate(run), 2)}
            print(f"round {round_} {side:7s}: {per_step:6.3f} s/step, "
                  f"{sum(run['tokens']) / len(run['tokens']):6.0f} tokens/step, "
                  f"{rate(run):7.1f} tokens/s ({run['threads']} thread(s))")
        sides["ratio"] = round(sides["project"]["tokens_per_second"] / sides["trl"]["tokens_per_second"], 4)
        result["rounds"].append(sides)
    rounds = result["rounds"]
    result["overall_ratio"] = round(sum(r["project"]["tokens_per_second"] for r in rounds)
                                    / sum(r["trl"]["tokens_per_second"] for r in rounds), 4)
    out = args.out or RESULTS / f"vs_trl_{args.size.replace('-', '_')}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("ratio project / TRL in generated tokens per second, per round: "
          + ", ".join(f"{r['ratio']:.2f}" for r in rounds) + f"; overall {result['overall_ratio']:.2f}x (wrote {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

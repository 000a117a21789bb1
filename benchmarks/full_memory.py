"""Memory and time of one WARP RL step at the full profile's shapes, and a 16 GB GPU budget.

Shapes: GPT-2 small (GPT2Config(): 124M parameters, vocab 50257) as the policy theta, its EMA
anchor and the SFT reference (three copies), DistilBERT-base (DistilBertConfig(), vocab 28996 as
distilbert-base-cased) as the reward model scoring up to 512 tokens; batch 64, 10 prompt + 54 new
tokens at temperature 0.7 (the full profile's sampling). Random weights (no hub): a random GPT-2
almost never samples EOS, so every completion runs to 54 tokens (the worst case). Tokenizers of
the same kind are trained here on IMDB ($WARP_IMDB_DIR): byte-level BPE (up to 50257 tokens; ids
above its size decode to nothing) and a cased WordPiece of 28996.

The step is the product's: `rl_step` (warp_utils.core.rl, the same call train_run makes) with a fresh
Adam. Measured, per batch size, in a fresh process each (ru_maxrss is a high-water mark):
- peak memory of the step above the loaded models (ru_maxrss after - RSS before; includes the
  Adam state and gradients allocated by the first step);
- the bytes autograd saves for backward (saved_tensors_hooks, storages counted once), split into
  (B, L-1, V) log-prob tensors and the rest (activations): exact, and what a GPU holds too;
- wall time of the step on this CPU.
FLOPs (2 x matmul params per token per forward, 6 x for forward + backward, attention's L^2 term
ignored) give GPU time estimates at an assumed fraction of the vendor's peak (`--mfu`) plus, per
generated token, the weights read once and an assumed launch/Python overhead (`--token-overhead`):
estimates, not measurements.

    HF_HUB_OFFLINE=1 WARP_IMDB_DIR=... python benchmarks/full_memory.py --batch 16 --batch 4
    python benchmarks/full_memory.py --batch 64            # the full shape: minutes on a CPU

Results go to benchmarks/results/full_memory.json (benchmarks/README.md quotes them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

GB = 1e9
PROMPT_TOKENS, NEW_TOKENS, REWARD_MAX_LENGTH = 10, 54, 512
GPU_BUDGET_GB = 16.0
CUDA_CONTEXT_GB = 0.5  # CUDA context + allocator slack, typical on a T4 (not measured here)
# Vendor specs: (dense half-precision tensor FLOP/s, memory bandwidth B/s, label, fp32 FLOP/s).
GPUS = {"T4": (65e12, 320e9, "fp16 autocast + GradScaler", 8.1e12),
        "A100": (312e12, 1555e9, "bf16 autocast", 19.5e12)}


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that cost a multiply-add per token: embedding lookups are free, except the
    token embedding GPT-2 reuses as its output layer."""
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    lookup_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding)
                  for p in m.parameters()} - head_ids
    return sum(p.numel() for p in model.parameters() if id(p) not in lookup_ids)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def imdb_texts(count: int) -> list[str]:
    import pandas as pd

    folder = os.environ.get("WARP_IMDB_DIR")
    if not folder:
        sys.exit("set WARP_IMDB_DIR to a folder with IMDB's train.parquet (tokenizers are trained on it)")
    return pd.read_parquet(Path(folder) / "train.parquet", columns=["text"]).text.head(count).tolist()


def build(batch: int, texts: list[str]):
    """The full profile's models (random weights), tokenizers and `batch` IMDB prompts."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
        GPT2Config,
        GPT2LMHeadModel,
        GPT2TokenizerFast,
    )

    from warp_utils.execution.overrides import get_profile
    from warp_utils.execution.runtime import Components
    from warp_utils.inputs.prompts import first_tokens
    from warp_utils.inputs.reward import EOS as REWARD_EOS
    from warp_utils.inputs.reward import RewardScorer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=50257, special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.padding_side = "left"
    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wordpiece.train_from_iterator(texts, vocab_size=28996, show_progress=False,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    reward_tokenizer = DistilBertTokenizerFast(vocab=wordpiece.get_vocab(), do_lower_case=False,
                                               strip_accents=False, model_max_length=REWARD_MAX_LENGTH)
    reward_tokenizer.eos_token = REWARD_EOS

    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    policy = GPT2LMHeadModel(GPT2Config(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)).eval()
    sft = copy.deepcopy(policy).requires_grad_(False)  # pi_sft: the KL-to-SFT reference
    anchor = copy.deepcopy(policy).requires_grad_(False)  # theta_ema
    reward_model = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=28996, num_labels=1, pad_token_id=0)).eval()
    profile = get_profile("full")
    scorer = RewardScorer(reward_model, reward_tokenizer, REWARD_MAX_LENGTH, profile.reward.score_batch_size)
    prompts, _ = first_tokens(texts[:4 * batch], tokenizer, PROMPT_TOKENS)
    components = Components(sft, tokenizer, scorer, prompts[:batch], profile.sampling)
    return policy, anchor, components, profile.warp, len(tokenizer)


class CountingScorer:
    """The product's scorer, counting the reward model's tokens (for the FLOP count)."""

    def __init__(self, scorer):
        self.scorer, self.tokens = scorer, 0

    def __call__(self, texts):
        from warp_utils.inputs.reward import fit_texts

        fitted = fit_texts(texts, self.scorer.tokenizer, self.scorer.max_length)
        self.tokens += sum(len(ids) for ids in self.scorer.tokenizer(fitted)["input_ids"])
        return self.scorer(texts)


def saved_for_backward(vocab: int, *models):
    """A saved_tensors_hooks context and the byte counts it fills: storages counted once, the
    models' own weights (saved by reference: no extra memory) not counted."""
    seen = {p.untyped_storage().data_ptr() for model in models for p in model.parameters()}
    sizes = {"log_probs": 0, "activations": 0}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            kind = "log_probs" if tensor.ndim == 3 and tensor.shape[-1] == vocab else "activations"
            sizes[kind] += storage.nbytes()
        return tensor

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), sizes


def measure(batch: int, steps: int) -> dict:
    """One process, one batch size: build, then `steps` RL steps of the product."""
    import dataclasses

    from warp_utils.core.rl import rl_step
    from warp_utils.execution.device import fused_optimizer

    texts = imdb_texts(10000)
    policy, anchor, components, warp, tokenizer_vocab = build(batch, texts)
    counting = CountingScorer(components.reward_scorer)
    components = dataclasses.replace(components, reward_scorer=counting)
    optimizer = fused_optimizer(torch.optim.Adam, policy.parameters(), lr=warp.lr)
    config = dataclasses.replace(warp, batch_size=batch)
    reward_tokenizer = counting.scorer.tokenizer  # the training format's length per review
    review_tokens = [min(len(ids), REWARD_MAX_LENGTH) for ids in reward_tokenizer(texts[:2000], verbose=False)["input_ids"]]
    before = rss_bytes()
    seconds, saved = [], None
    for _ in range(steps):
        hooks, sizes = saved_for_backward(policy.config.vocab_size, policy, anchor, components.policy)
        started = time.perf_counter()
        with hooks:
            metrics = rl_step(policy, anchor, optimizer, components.prompts, components, config)
        seconds.append(time.perf_counter() - started)
        saved = saved or sizes
    return {
        "batch": batch, "threads": torch.get_num_threads(), "step_seconds": seconds,
        "peak_above_models_bytes": max_rss_bytes() - before, "models_rss_bytes": before,
        "saved_log_probs_bytes": saved["log_probs"], "saved_activations_bytes": saved["activations"],
        "response_len": metrics["response_len"], "reward_tokens_per_sample": counting.tokens / (batch * steps),
        "policy_params": sum(p.numel() for p in policy.parameters()),
        "policy_matmul_params": matmul_params(policy),
        "reward_params": sum(p.numel() for p in components.reward_scorer.scorer.model.parameters()),
        "reward_matmul_params": matmul_params(components.reward_scorer.scorer.model),
        "vocab": policy.config.vocab_size, "tokenizer_vocab": tokenizer_vocab,
        "reward_tokens_per_review": sum(review_tokens) / len(review_tokens),
    }


def step_flops(m: dict, batch: int) -> dict:
    tokens = batch * (PROMPT_TOKENS + NEW_TOKENS)
    n = m["policy_matmul_params"]
    return {"generation": 2 * n * tokens, "policy fwd+bwd": 6 * n * tokens, "anchor fwd": 2 * n * tokens,
            "SFT fwd (KL metric)": 2 * n * tokens,
            "reward": 2 * m["reward_matmul_params"] * m["reward_tokens_per_sample"] * batch}


def budget(m: dict, batch: int) -> dict[str, float]:
    """GB on a GPU at `batch`, fp32 weights and states. Activations scale with the batch from the
    measured saved bytes; log-prob tensors: one (B, L-1, V) fp32 tensor, times the most that are
    alive at once in rl_step (the policy's, kept for the KL to SFT, plus the SFT forward's logits,
    scaled logits and log-probs, then exp, difference and product in per_token_kl: 5)."""
    per = batch / m["batch"]
    row = batch * (PROMPT_TOKENS + NEW_TOKENS - 1) * m["vocab"] * 4
    p = m["policy_params"] * 4
    return {
        "weights: policy + EMA anchor + SFT reference": 3 * p / GB,
        "weights: reward model": m["reward_params"] * 4 / GB,
        "gradients (fp32)": p / GB,
        "Adam state (2 x fp32)": 2 * p / GB,
        "activations saved for backward": m["saved_activations_bytes"] * per / GB,
        "logits / log-probs, one (B, L-1, V) fp32 tensor": row / GB,
        "KL to SFT peak: 4 more such tensors": 4 * row / GB,
        "CUDA context + allocator slack (typical)": CUDA_CONTEXT_GB,
    }


def largest_batch(m: dict) -> int:
    batch = 1
    while sum(budget(m, batch + 1).values()) <= GPU_BUDGET_GB:
        batch += 1
    return batch


def gpu_estimates(m: dict, batch: int, mfu: float, token_overhead: float) -> dict:
    flops = sum(step_flops(m, batch).values())
    out = {}
    for name, (peak, bandwidth, how, _) in GPUS.items():
        # Decode floor: autocast reads the fp32 weights and writes a half copy each forward.
        decode = NEW_TOKENS * (m["policy_params"] * 6 / bandwidth + token_overhead)
        out[name] = {"seconds": flops / (mfu * peak) + decode, "compute_s": flops / (mfu * peak),
                     "decode_floor_s": decode, "precision": how}
    return out


def reward_training(m: dict, mfu: float) -> dict:
    """FLOPs and ESTIMATED GPU time of the full profile's reward-model training (RewardTrainer in
    fp32, as reward.reward_training_args sets: bf16=False): both texts of every pair, every epoch,
    6 x matmul params per token (attention's L^2 term ignored: about +20% at 512 tokens)."""
    from warp_utils.execution.overrides import get_profile

    reward = get_profile("full").reward
    pairs = 12_500 if reward.num_pairs is None else reward.num_pairs  # the smaller IMDB class
    flops = 6 * m["reward_matmul_params"] * 2 * pairs * reward.epochs * m["reward_tokens_per_review"]
    return {"flops": flops, "pairs": pairs, "epochs": reward.epochs,
            "seconds": {name: flops / (mfu * spec[3]) for name, spec in GPUS.items()}}


def report(results: list[dict], batch: int, mfu: float, token_overhead: float, total_steps: int) -> None:
    m = max(results, key=lambda r: r["batch"])
    print(f"torch {torch.__version__}, {m['threads']} threads; policy {m['policy_params'] / 1e6:.1f}M params "
          f"(vocab {m['vocab']}, tokenizer {m['tokenizer_vocab']}), reward {m['reward_params'] / 1e6:.1f}M")
    print("\nmeasured on this CPU (the product's rl_step, fresh process per batch size):")
    print(f"  {'batch':>5s} {'step s':>8s} {'peak GB':>8s} {'saved act GB':>12s} {'saved logp GB':>13s} "
          f"{'resp len':>8s} {'reward tok':>10s}")
    for r in sorted(results, key=lambda r: r["batch"]):
        print(f"  {r['batch']:5d} {min(r['step_seconds']):8.1f} {r['peak_above_models_bytes'] / GB:8.2f} "
              f"{r['saved_activations_bytes'] / GB:12.3f} {r['saved_log_probs_bytes'] / GB:13.3f} "
              f"{r['response_len']:8.1f} {r['reward_tokens_per_sample']:10.1f}")
    if m["batch"] != batch:
        print(f"\nbatch {batch} below is EXTRAPOLATED from batch {m['batch']} (activations, log-probs and "
              f"FLOPs scale linearly with the batch)")
    flops = step_flops(m, batch)
    print(f"\nFLOPs of one RL step at batch {batch} ({PROMPT_TOKENS} + {NEW_TOKENS} tokens): "
          f"{sum(flops.values()) / 1e12:.2f} TFLOP")
    for phase, value in flops.items():
        print(f"  {phase:22s} {value / 1e12:7.2f} TFLOP")
    print(f"\nGPU memory budget at batch {batch} (fp32 master weights and states; 16 GB GPU):")
    table = budget(m, batch)
    for item, value in table.items():
        print(f"  {item:50s} {value:6.2f} GB")
    print(f"  {'total (an upper bound: activations are freed before the KL phase)':50s} "
          f"{sum(table.values()):6.2f} GB")
    print(f"largest batch within {GPU_BUDGET_GB:.0f} GB by this budget: {largest_batch(m)}")
    print(f"\nESTIMATED GPU time per RL step at batch {batch} ({mfu:.0%} of peak + per generated token: weights "
          f"read once + {token_overhead * 1e3:.0f} ms overhead); "
          f"whole WARP run = {total_steps} steps:")
    for name, est in gpu_estimates(m, batch, mfu, token_overhead).items():
        print(f"  {name:5s} {est['precision']:28s} {est['seconds']:6.2f} s/step  "
              f"(~{est['seconds'] * total_steps / 60:.0f} min for {total_steps} steps)")
    training = reward_training(m, mfu)
    print(f"ESTIMATED reward-model training ({training['pairs']} pairs x {training['epochs']:g} epochs, "
          f"{m['reward_tokens_per_review']:.0f} tokens per review, fp32): {training['flops'] / 1e15:.1f} PFLOP, "
          + ", ".join(f"{name} ~{sec / 60:.0f} min" for name, sec in training["seconds"].items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, action="append",
                        help="batch size(s) to measure, each in a fresh process (default: 64, the full profile's)")
    parser.add_argument("--target-batch", type=int, default=64, help="batch of the budget and estimates")
    parser.add_argument("--steps", type=int, default=1, help="RL steps per batch size (the first allocates Adam)")
    parser.add_argument("--mfu", type=float, default=0.3, help="assumed fraction of GPU peak FLOP/s")
    parser.add_argument("--token-overhead", type=float, default=0.01,
                        help="assumed seconds per generated token of launch and Python overhead on a GPU")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "full_memory.json")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.single:
        print("RESULT " + json.dumps(measure(args.single, args.steps)), flush=True)
        return
    results = []
    for batch in args.batch or [64]:
        done = subprocess.run([sys.executable, __file__, "--single", str(batch), "--steps", str(args.steps)],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"batch {batch} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.split("RESULT ", 1)[1]))
    from warp_utils.execution.overrides import get_profile

    warp = get_profile("full").warp
    total_steps = warp.I * warp.M * warp.T
    report(results, args.target_batch, args.mfu, args.token_overhead, total_steps)
    m = max(results, key=lambda r: r["batch"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "measured": results, "target_batch": args.target_batch, "extrapolated": m["batch"] != args.target_batch,
        "flops": step_flops(m, args.target_batch), "budget_gb": budget(m, args.target_batch),
        "largest_batch_16gb": largest_batch(m), "mfu": args.mfu, "whole_run_steps": total_steps,
        "token_overhead_s": args.token_overhead, "reward_training": reward_training(m, args.mfu),
        "gpu_estimates": gpu_estimates(m, args.target_batch, args.mfu, args.token_overhead),
    }, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

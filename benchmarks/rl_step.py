"""Seconds per WARP RL step (Algorithm 1, lines 6-9), split by phase, on CPU.

One step = sample y ~ pi (generate), score r(x, y) (reward), log pi_ema(y|x) (anchor forward),
log pi_theta(y|x) with grad + REINFORCE backward (policy fwd+bwd), Adam step (optimizer),
theta_ema <- (1 - mu) theta_ema + mu theta (EMA). log pi_theta(y|x) of the backward pass also gives
the KL term (detached), so the policy runs one forward per step, not two.

Models are built from config with random weights (no hub): the tiny profile's GPT-2
(2 layers, width 128, vocab 4096) and a GPT-2-small-size one (12 layers, 768, vocab 50257); the
reward model is the tiny DistilBERT (2 layers, 128) scoring random token ids of the same length.

FLOP/s are approximate: 2 * matmul params * tokens per forward, 6 * for forward + backward
(attention's seq^2 term ignored), against the best float32 2048x2048 matmul rate measured in this
run (before and after each setting). Times are the best of the timed steps, phase by phase: on a
shared machine the minimum is the least disturbed by other processes.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/rl_step.py [--quick] [--threads 1]
"""

import argparse
import copy
import time

import torch
from torch import nn
from transformers import (
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
)

from warp_utils.config import SamplingConfig, WarpConfig
from warp_utils.rl import generate, reinforce_loss, sequence_logprobs
from warp_utils.weights import ema_

PROMPT_TOKENS = 10
POLICIES = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 4096,
             "max_new_tokens": 24},
    "gpt2-small": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257,
                   "max_new_tokens": 54},
}


def matmul_peak_flops(size=2048, reps=5) -> float:
    """Best observed float32 FLOP/s of one square matmul: the ceiling the phases are compared to."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = min(timed(lambda: torch.matmul(a, b))[1] for _ in range(reps))
    return 2 * size**3 / best


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def matmul_params(model: nn.Module) -> int:
    """Parameters that cost a multiply-add per token: embedding lookups are free, except the
    token embedding GPT-2 reuses as its output layer."""
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    lookup_ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding)
                  for p in m.parameters()} - head_ids
    return sum(p.numel() for p in model.parameters() if id(p) not in lookup_ids)


def build_policy(n_layer, n_embd, n_head, vocab_size, **_):
    eos = vocab_size - 1  # GPT-2's <|endoftext|> is its last id
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                        n_positions=128, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    return GPT2LMHeadModel(config).eval()


def build_reward_model():
    config = DistilBertConfig(n_layers=2, dim=128, n_heads=2, hidden_dim=512, vocab_size=8192,
                              num_labels=1)
    return DistilBertForSequenceClassification(config).eval()


def rl_step(policy, anchor, reward_model, optimizer, prompt_ids, sampling, warp) -> dict:
    """One RL step, each phase timed separately. Returns seconds per phase and token counts."""
    eos = policy.config.eos_token_id
    seconds = {}
    rollout, seconds["generation"] = timed(lambda: generate(
        policy, prompt_ids, torch.ones_like(prompt_ids), sampling, eos, eos))
    args = (rollout.input_ids, rollout.attention_mask, rollout.response_mask, sampling.temperature)

    def score():
        # The policy's tokens mean nothing to the reward model's vocabulary: random ids of the same
        # length cost the same.
        ids = torch.randint(0, reward_model.config.vocab_size, rollout.input_ids.shape)
        with torch.no_grad():
            return reward_model(input_ids=ids, attention_mask=rollout.attention_mask).logits[:, 0]

    rewards, seconds["reward"] = timed(score)

    def anchor_forward():
        with torch.no_grad():
            return sequence_logprobs(anchor, *args)

    anchor_logprobs, seconds["anchor forward"] = timed(anchor_forward)

    def policy_forward_backward():
        logprobs = sequence_logprobs(policy, *args)
        log_ratio = logprobs.detach() - anchor_logprobs
        loss, _ = reinforce_loss(logprobs, rewards, log_ratio, warp.beta, warp.baseline)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()

    _, seconds["policy fwd+bwd"] = timed(policy_forward_backward)
    _, seconds["optimizer"] = timed(optimizer.step)
    _, seconds["EMA"] = timed(lambda: ema_(anchor, policy, warp.mu))
    batch, length = rollout.input_ids.shape
    return {"seconds": seconds, "batch": batch, "length": length,
            "new_tokens": length - rollout.prompt_length}


def flops(phase: str, step: dict, policy_params: int, reward_params: int) -> float | None:
    tokens = step["batch"] * step["length"]  # prefill + decode in generation: every position once
    per_phase = {
        "generation": 2 * policy_params * tokens,
        "reward": 2 * reward_params * tokens,
        "anchor forward": 2 * policy_params * tokens,
        "policy fwd+bwd": 6 * policy_params * tokens,
    }
    return per_phase.get(phase)


def bench(name: str, batch: int, reps: int) -> tuple[list[dict], int, int]:
    """`reps` timed RL steps after one warm-up; also the matmul params of policy and reward."""
    spec = POLICIES[name]
    torch.manual_seed(0)
    policy = build_policy(**spec)
    anchor = copy.deepcopy(policy)
    reward_model = build_reward_model()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-5)
    sampling = SamplingConfig(max_new_tokens=spec["max_new_tokens"], temperature=0.7, top_k=0)
    warp = WarpConfig()
    prompt_ids = torch.randint(0, spec["vocab_size"] - 1, (batch, PROMPT_TOKENS))
    policy_params, reward_params = matmul_params(policy), matmul_params(reward_model)

    rl_step(policy, anchor, reward_model, optimizer, prompt_ids, sampling, warp)  # warm-up
    steps = [rl_step(policy, anchor, reward_model, optimizer, prompt_ids, sampling, warp)
             for _ in range(reps)]
    return steps, policy_params, reward_params


def report(name, batch, steps, peak, policy_params, reward_params):
    step = steps[-1]
    phases = list(step["seconds"])
    best = {p: min(s["seconds"][p] for s in steps) for p in phases}
    total = sum(best.values())
    generated = step["batch"] * step["new_tokens"]
    print(f"\n{name} (policy {policy_params / 1e6:.1f}M matmul params), batch {batch}, "
          f"{PROMPT_TOKENS} prompt + {step['new_tokens']} new tokens, best of {len(steps)}, "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"  {'phase':16s} {'s':>8s} {'share':>6s} {'tokens/s':>10s} {'GFLOP/s':>8s} "
          f"{'% peak':>7s}")
    for phase in phases:
        tokens = generated if phase == "generation" else step["batch"] * step["length"]
        work = flops(phase, step, policy_params, reward_params)
        rate = f"{work / best[phase] / 1e9:8.1f} {100 * work / best[phase] / peak:6.1f}%" \
            if work else f"{'-':>8s} {'-':>7s}"
        per_token = phase not in ("optimizer", "EMA")  # per-step costs, not per token
        tok = f"{tokens / best[phase]:10.0f}" if per_token else f"{'-':>10s}"
        print(f"  {phase:16s} {best[phase]:8.3f} {best[phase] / total:6.1%} {tok} {rate}")
    print(f"  {'RL step':16s} {total:8.3f} {1:6.0%} {generated / total:10.0f}  "
          f"(generated tokens per second of RL)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 timed step per setting, gpt2-small at batch 8 only")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's). On a shared machine 1 can be much "
                             "faster: OpenMP threads spin-wait for a core another process holds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    settings = [("tiny", 8), ("tiny", 64), ("gpt2-small", 8)]
    if not args.quick:
        settings.append(("gpt2-small", 64))
    peak = 0.0  # best matmul rate seen so far: other processes only ever slow it down
    for name, batch in settings:
        peak = max(peak, matmul_peak_flops())
        steps, policy_params, reward_params = bench(name, batch, reps=1 if args.quick else 3)
        peak = max(peak, matmul_peak_flops())
        report(name, batch, steps, peak, policy_params, reward_params)


if __name__ == "__main__":
    main()

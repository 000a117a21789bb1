"""Held-out evaluation of a policy, and the reward-KL Pareto front of LITI (paper Fig. 1(b)).

`evaluate_policy` samples one completion per held-out prompt with the training generation settings
(same temperature) under a fixed seed, then reports, with 95% confidence half-widths:

    reward_mean         E[r(x, y)], the reward we optimise
    kl_to_sft           E_y[sum_t KL(pi(.|x, y_<t) || pi_sft(.|x, y_<t))], each KL exact over the
                        vocabulary (scoring.score_rollout): an unbiased, low-variance estimate of KL(pi || pi_sft)
    kl_to_sft_sampled   E_y[log pi(y|x) - log pi_sft(y|x)], the single-sample estimate the paper plots
    response_len        tokens per completion, EOS included
    distinct_1/2        unique n-grams / n-grams over all completions (diversity; drops when the
                        policy collapses on a few phrases)
    vader_compound      VADER sentiment of the texts: a judge we never optimise against, so reward
                        hacking (reward up, VADER flat) shows

Evaluation never changes anything: no gradients, models in eval mode (then put back in their mode),
the global RNG forked (the caller's random stream continues as if nothing happened).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..config import SamplingConfig
from ..execution.progress import progress
from ..core.rl import completion_texts, decode_texts, generate, left_pad, score_rollout
from ..execution.runtime import all_cores
from .text_metrics import distinct_n, vader_scores  # part of this module's interface
from ..core.weights import liti

Z_95 = 1.96  # normal quantile of a two-sided 95% interval
VADER_POSITIVE = 0.05  # VADER's own threshold: compound > 0.05 is "positive"
MAX_KL_GAP = 2.0  # reward_at_kl bridges neighbouring measured KLs at most this factor apart

METRIC_COLUMNS = [
    "reward_mean", "reward_ci95", "reward_std", "kl_to_sft", "kl_to_sft_ci95", "kl_to_sft_sampled",
    "kl_to_sft_sampled_ci95", "response_len", "distinct_1", "distinct_2", "vader_compound",
    "vader_positive_share", "n",
]

# ----------------------------------------------------------------------------- helpers


def _mean_std_ci(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the 95% half-width 1.96 std / sqrt(n) (NaN for n < 2)."""
    values = values.double()
    n = values.numel()
    mean = values.mean().item()
    if n < 2:
        return mean, math.nan, math.nan
    std = values.std(correction=1).item()
    return mean, std, Z_95 * std / math.sqrt(n)


def _prompt_list(prompts) -> list[list[int]]:
    if hasattr(prompts, "column_names"):  # a datasets.Dataset with an input_ids column
        prompts = prompts["input_ids"]
    prompts = [list(map(int, ids)) for ids in prompts]
    if not prompts:
        raise ValueError("prompts must hold at least 1 prompt")
    return prompts


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalContext:
    """What the evaluations of one comparison share (everything but the policy evaluated).

    reference: pi_sft, the causal LM the KL is measured to; tokenizer: the policies'; reward_scorer:
    list of texts -> float tensor (the reward model r); prompts: token-id lists (or a Dataset with
    `input_ids`); sampling: the training generation settings (its temperature is also used for
    log-probs and KL); seed: the generation seed (same seed, same prompts, same batch_size: same
    samples for two policies that are equal); cache: see evaluate_policy."""

    reference: object
    tokenizer: object
    reward_scorer: object
    prompts: object
    sampling: SamplingConfig
    seed: int = 0
    batch_size: int = 64
    cache: dict | None = field(default=None, compare=False)

    @classmethod
    def of(cls, components, prompts, seed: int, cache: dict | None = None) -> "EvalContext":
        """The context of runtime.Components: pi_sft as the reference, its tokenizer, r, sampling."""
        return cls(components.policy, components.tokenizer, components.reward_scorer, prompts,
                   components.sampling, seed, cache=cache)


def evaluate_policy(policy, context: EvalContext, return_samples: bool = False) -> dict:
    """Test-set statistics of `policy` (a causal LM, pi_theta): one sampled completion per prompt of
    `context`, seeded, KL to its reference. Returns the METRIC_COLUMNS as a dict of floats (`n` an int);
    with return_samples=True also `samples` (prompt + completion texts, what r and VADER score),
    `completions` (completion texts) and the per-sample `rewards`, `kl` and `kl_sampled` lists.

    Side-effect free: no gradients, no parameter touched, models in eval mode during the call and
    put back in their mode after, the global torch RNG forked (its state after == before).

    context.cache: a dict (yours, e.g. one per notebook) keeping each result under what it is a
    function of (the weights of policy and reference, r's weights, the prompts, sampling, seed,
    batch_size): an evaluation equal to an earlier one (a front's eta = 0 is the start policy) is
    looked up.
    """
    context = dataclasses.replace(context, prompts=_prompt_list(context.prompts),
                                  seed=_check_int("seed", context.seed, 0),
                                  batch_size=_check_int("batch_size", context.batch_size, 1))
    cache = context.cache
    key = _cache_key(policy, context) if cache is not None else None
    if key is not None and key in cache:
        return _with_samples(cache[key], return_samples)
    result = _evaluate(policy, context)
    if key is not None:
        cache[key] = result
    return _with_samples(result, return_samples)


SAMPLE_KEYS = ("samples", "completions", "rewards", "kl", "kl_sampled")


def _with_samples(result: dict, return_samples: bool) -> dict:
    """A copy of `result`, with or without its per-sample lists."""
    return copy.deepcopy({key: value for key, value in result.items() if return_samples or key not in SAMPLE_KEYS})


def _cache_key(policy, context: EvalContext) -> tuple | None:
    """What an evaluation is a function of; None when r exposes no weights (`.model`) to hash."""
    from ..store.runstore import prompts_fingerprint, scorer_fingerprint, state_fingerprint

    reference, reward_scorer, prompts = context.reference, context.reward_scorer, context.prompts
    sampling, seed, batch_size = context.sampling, context.seed, context.batch_size
    scorer = scorer_fingerprint(reward_scorer)
    if scorer is None:
        return None
    return (state_fingerprint(policy.state_dict()), state_fingerprint(reference.state_dict()), scorer,
            getattr(reward_scorer, "max_length", None), prompts_fingerprint(prompts), sampling, seed,
            batch_size, str(next(policy.parameters()).device))


def _evaluate(policy, context: EvalContext) -> dict:
    """evaluate_policy's work, samples included."""
    tokenizer, reference, reward_scorer = context.tokenizer, context.reference, context.reward_scorer
    prompts, sampling, seed, batch_size = context.prompts, context.sampling, context.seed, context.batch_size
    temperature = sampling.temperature
    device = next(policy.parameters()).device
    modes = [(model, model.training) for model in (policy, reference)]

    rewards, kls, kls_sampled, lengths, texts, completions = [], [], [], [], [], []
    try:
        policy.eval()
        reference.eval()
        # all cores: evaluation runs alone (after training); the samples do not depend on it
        with torch.random.fork_rng(), torch.no_grad(), all_cores():
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                ids, mask = left_pad(prompts[start : start + batch_size], tokenizer.pad_token_id)
                rollout = generate(policy, ids.to(device), mask.to(device), sampling,
                                   tokenizer.eos_token_id, tokenizer.pad_token_id)
                batch_texts = decode_texts(tokenizer, rollout)
                batch_rewards = torch.as_tensor(reward_scorer(batch_texts)).detach().float().flatten().cpu()
                if batch_rewards.numel() != len(batch_texts):
                    raise ValueError(f"reward_scorer returned {batch_rewards.numel()} rewards for "
                                     f"{len(batch_texts)} texts")
                # Two forwards (pi, pi_sft): log pi(y|x), log pi_sft(y|x) and the exact KL.
                scores = score_rollout(policy, rollout, temperature, reference=reference)
                kl, log_ratio = scores.kl, scores.logprobs - scores.ref_logprobs
                rewards.append(batch_rewards)
                kls.append(kl.double().cpu())
                kls_sampled.append(log_ratio.double().cpu())
                lengths.append(rollout.response_lengths.double().cpu())
                texts.extend(batch_texts)
                completions.extend(completion_texts(tokenizer, rollout))
    finally:
        for model, was_training in modes:
            model.train(was_training)

    rewards, kls, kls_sampled = torch.cat(rewards), torch.cat(kls), torch.cat(kls_sampled)
    reward_mean, reward_std, reward_ci95 = _mean_std_ci(rewards)
    kl_mean, _, kl_ci95 = _mean_std_ci(kls)
    kl_sampled_mean, _, kl_sampled_ci95 = _mean_std_ci(kls_sampled)
    vader = vader_scores(texts)
    result = {
        "reward_mean": reward_mean,
        "reward_ci95": reward_ci95,
        "reward_std": reward_std,
        "kl_to_sft": max(0.0, kl_mean),
        "kl_to_sft_ci95": kl_ci95,
        "kl_to_sft_sampled": kl_sampled_mean,
        "kl_to_sft_sampled_ci95": kl_sampled_ci95,
        "response_len": torch.cat(lengths).mean().item(),
        "distinct_1": distinct_n(completions, 1),
        "distinct_2": distinct_n(completions, 2),
        "vader_compound": sum(vader) / len(vader),
        "vader_positive_share": sum(score > VADER_POSITIVE for score in vader) / len(vader),
        "n": len(texts),
    }
    result.update(samples=texts, completions=completions, rewards=rewards.tolist(),
                  kl=kls.tolist(), kl_sampled=kls_sampled.tolist())
    return result


# ----------------------------------------------------------------------------- LITI Pareto front


def interpolate(theta_init, theta_merged, eta: float) -> dict[str, torch.Tensor]:
    """theta_eta = (1 - eta) theta_init + eta theta_merged: weights.liti, the LITI step itself."""
    return liti(theta_init, theta_merged, eta)


def _check_etas(etas) -> list[float]:
    etas = list(etas)
    if not etas:
        raise ValueError("etas must hold at least 1 eta")
    for eta in etas:
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    return [float(eta) for eta in etas]


def pareto_front(theta_start, theta_merged, etas, policy_template, context: EvalContext,
                 label=None) -> pd.DataFrame:
    """Evaluate theta_eta = liti(theta_start, theta_merged, eta) for each eta, all with the SAME
    seed and prompts (so eta = 0 is exactly `theta_start` evaluated, eta = 1 `theta_merged`).

    theta_start/theta_merged: state dicts keyed like policy_template.state_dict() (e.g. theta_sft
    and theta_slerp_i); policy_template is deep-copied once and never modified. Returns one row per
    eta: `label`, `eta` and the METRIC_COLUMNS. Every eta is validated before any evaluation.
    context: as in evaluate_policy, its cache too (eta = 0 and 1 are often evaluated elsewhere)."""
    etas = _check_etas(etas)
    policy = copy.deepcopy(policy_template)
    rows = []
    for eta in progress(etas, f"LITI front{'' if label is None else f' ({label})'}"):
        policy.load_state_dict(interpolate(theta_start, theta_merged, eta))
        metrics = evaluate_policy(policy, context)
        rows.append({"label": label, "eta": eta, **metrics})
    return pd.DataFrame(rows, columns=["label", "eta", *METRIC_COLUMNS])


# ----------------------------------------------------------------------------- comparing fronts


def reward_at_kl(front: pd.DataFrame, kl: float) -> float:
    """The best reward a front reaches within a KL budget: its upper envelope (the largest reward
    among points with KL to SFT <= k), linearly interpolated at `kl`. Fronts of different
    policies are compared at one common KL, where the paper reads 'higher reward at fixed KL'.

    NaN where the front was not measured: `kl` outside [smallest, largest] measured KL (no
    extrapolation), or between two neighbouring measured KLs more than MAX_KL_GAP times apart
    (a line across such a gap is a guess: e.g. between the SFT point at KL 0 and a first point
    at KL 4). A measured KL itself is always read."""
    for column in ("kl_to_sft", "reward_mean"):
        if column not in front.columns:
            raise ValueError(f"front has no column {column!r} (columns: {list(front.columns)})")
    if front.empty:
        raise ValueError("front must hold at least 1 row")
    front = front.sort_values("kl_to_sft")
    envelope = front["reward_mean"].cummax()  # a point with less KL is available within the budget too
    kls = front["kl_to_sft"].to_numpy(dtype=np.float64)
    if not kls[0] <= kl <= kls[-1]:  # also NaN for a NaN kl
        return math.nan
    above = int(np.searchsorted(kls, kl, side="left"))  # the first measured KL >= kl
    if kls[above] != kl and kls[above] > MAX_KL_GAP * kls[above - 1]:
        return math.nan
    return float(np.interp(kl, kls, envelope))


def common_kl(fronts: Sequence[pd.DataFrame]) -> float:
    """The largest KL every front reaches: the widest range on which all of them can be compared."""
    if len(fronts) == 0:
        raise ValueError("fronts must hold at least 1 front")
    return min(float(front["kl_to_sft"].max()) for front in fronts)


def paired_difference(values_a: Sequence[float], values_b: Sequence[float]) -> tuple[float, float]:
    """Mean of a_n - b_n over the same prompts and its 95% half-width. Two policies evaluated on
    the same prompts share the prompts' own variance (a review that starts badly scores low under
    both), so the paired interval is narrower than the two separate ones: the right yardstick
    for 'is A above B'."""
    a, b = torch.as_tensor(values_a, dtype=torch.float64), torch.as_tensor(values_b, dtype=torch.float64)
    if a.ndim != 1 or a.shape != b.shape or a.numel() < 2:
        raise ValueError(f"values_a and values_b must be 1-D of one length >= 2, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    mean, _, ci95 = _mean_std_ci(a - b)
    return mean, ci95


# ----------------------------------------------------------------------------- linear mode connectivity


def lmc_barrier(ts: Sequence[float], rewards, level: float = 0.95) -> dict:
    """The reward barrier between two policies along the straight line between their weights.

    ts: the points t of (1 - t) theta_a + t theta_b, with 0 and 1 among them; rewards: one row per
    t of per-prompt rewards on the same prompts and sampling seed (paired). For each interior t,
    the dip d(t) = mean_n [r_n(t) - ((1 - t) r_n(0) + t r_n(1))], the reward below the chord
    between the ends (negative: a barrier). Returns `barrier` = min_t d(t), its `t`, and `lower`,
    a one-sided `level` lower bound on the barrier, simultaneous over the interior points
    (Bonferroni): every d(t) is above its own bound with that probability, so the min is too."""
    from scipy.stats import norm

    from .stats import chord_dips

    ts = np.asarray(ts, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != ts.size or r.shape[1] < 2:
        raise ValueError(f"rewards must be (len(ts), prompts >= 2), got {r.shape} for {ts.size} points")
    per_prompt = chord_dips(ts, r)  # one row per interior t
    interior = ts[(ts > 0.0) & (ts < 1.0)]
    z = norm.ppf(1 - (1 - level) / len(interior))
    dips = per_prompt.mean(axis=1)
    bounds = dips - z * per_prompt.std(axis=1, ddof=1) / math.sqrt(r.shape[1])
    worst = int(np.argmin(dips))
    return {"barrier": float(dips[worst]), "t": float(interior[worst]), "lower": float(bounds.min()),
            "dips": [float(d) for d in dips]}

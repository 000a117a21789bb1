"""Held-out evaluation, LITI fronts and plots on tiny GPT-2s with a character-level reward."""

import copy
import itertools
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from warp_utils.evaluate import evaluation, plots
from warp_utils.evaluate.evaluation import EvalContext
from warp_utils.config import PolicyConfig, SamplingConfig
from warp_utils.inputs.models import tiny_gpt2, train_policy_tokenizer
from warp_utils.core.rl import exact_kl, generate, left_pad, sequence_logprobs
from warp_utils.core.warp import clone_state

CORPUS = ["a wonderful film with a moving story", "a dull and awful mess of a movie",
          "the actors were great", "the plot was boring"] * 10
SAMPLING = SamplingConfig(max_new_tokens=6, temperature=0.7)


def vowel_reward(texts):
    """A character-level reward: the share of vowels in the text."""
    return torch.tensor([sum(c in "aeiou" for c in t) / max(1, len(t)) for t in texts])


def perturbed(model, scale, seed):
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return other


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    tokenizer = train_policy_tokenizer(CORPUS, vocab_size=300)
    policy = tiny_gpt2(PolicyConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32), tokenizer).eval()
    other = perturbed(policy, 0.05, seed=1).eval()
    prompts = [tokenizer(text)["input_ids"][:k] for text, k in zip(CORPUS[:4], (3, 2, 4, 3))] * 4
    return policy, other, tokenizer, prompts


def evaluate(setup, policy=None, reference=None, seed=0, return_samples=False, **context):
    sft, _, tokenizer, prompts = setup
    context = EvalContext(reference or sft, tokenizer, vowel_reward, context.pop("prompts", prompts), SAMPLING, seed,
                          **context)
    return evaluation.evaluate_policy(policy or sft, context, return_samples=return_samples)


# ----------------------------------------------------------------------------- exact KL


def tiny_vocab_models(vocab=5):
    config = GPT2Config(vocab_size=vocab, n_layer=1, n_embd=8, n_head=2, n_positions=8,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(3)
    p = GPT2LMHeadModel(config).eval()
    q = perturbed(p, 0.5, seed=4).eval()
    return p, q


def brute_force_token_kl(p, q, ids, temperature):
    """sum over positions t >= 1 of sum_v p(v|ids_<t) log p/q, one unpadded row, python loops."""
    with torch.no_grad():
        log_p = torch.log_softmax(p(input_ids=ids[None]).logits[0].double() / temperature, -1)
        log_q = torch.log_softmax(q(input_ids=ids[None]).logits[0].double() / temperature, -1)
    total = 0.0
    for t in range(1, len(ids)):
        for v in range(log_p.shape[-1]):
            total += math.exp(log_p[t - 1, v]) * (log_p[t - 1, v] - log_q[t - 1, v]).item()
    return total


def test_exact_kl_equals_brute_force_sums_on_a_tiny_vocabulary():
    p, q, temperature = *tiny_vocab_models(), 0.7
    # Two left-padded rows (prompt lengths 2 and 1, responses of 3 tokens): padding must not matter.
    rows = [torch.tensor([3, 1, 4, 2, 2]), torch.tensor([2, 3, 3, 1])]
    input_ids = torch.tensor([[3, 1, 4, 2, 2], [0, 2, 3, 3, 1]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    response_mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
    kl = exact_kl(p, q, input_ids, attention_mask, response_mask, temperature)
    # brute force over the response positions only: all positions minus the prompt's
    expected = [brute_force_token_kl(p, q, row, temperature) - brute_force_token_kl(p, q, row[:-3], temperature)
                for row in rows]
    assert kl.tolist() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert (kl > 1e-3).all()
    assert exact_kl(p, p, input_ids, attention_mask, response_mask, temperature).tolist() == [0.0, 0.0]

    # Its expectation under y ~ p is the sequence-level KL: enumerate every 2-token response.
    prompt = [3, 1]
    responses = torch.tensor(list(itertools.product(range(5), repeat=2)))
    input_ids = torch.cat([torch.tensor(prompt).expand(len(responses), 2), responses], 1)
    attention_mask = torch.ones_like(input_ids)
    response_mask = torch.tensor([[0, 0, 1, 1]]).expand_as(input_ids)
    with torch.no_grad():
        log_p = sequence_logprobs(p, input_ids, attention_mask, response_mask, temperature).double()
        log_q = sequence_logprobs(q, input_ids, attention_mask, response_mask, temperature).double()
    weights = log_p.exp()
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    sequence_kl = (weights * (log_p - log_q)).sum().item()
    expected_exact = (weights * exact_kl(p, q, input_ids, attention_mask, response_mask, temperature).double()).sum().item()
    assert sequence_kl > 1e-2
    assert expected_exact == pytest.approx(sequence_kl, rel=1e-4)


def test_kl_to_itself_is_exactly_zero_and_positive_to_a_perturbed_copy(setup):
    policy, other, _, _ = setup
    same = evaluate(setup, policy=policy, reference=policy)
    assert same["kl_to_sft"] == 0.0
    assert same["kl_to_sft_sampled"] == 0.0
    different = evaluate(setup, policy=other, reference=policy)
    assert different["kl_to_sft"] > 0.01 and different["kl_to_sft_ci95"] > 0
    assert same["n"] == different["n"] == len(setup[3])


def test_sampled_kl_estimate_agrees_with_the_exact_kl_in_expectation(setup):
    policy, other, _, prompts = setup
    result = evaluate(setup, policy=other, reference=policy, prompts=prompts * 32, batch_size=256,
                      return_samples=True)
    exact, sampled = torch.tensor(result["kl"]), torch.tensor(result["kl_sampled"])
    assert len(exact) == result["n"] == 512
    assert (exact >= 0).all()
    assert result["kl_to_sft"] == pytest.approx(exact.mean().item())
    assert result["kl_to_sft_sampled"] == pytest.approx(sampled.mean().item())
    difference = sampled - exact  # E[log p/q (y)] = E[sum_t KL_t]: the difference has mean 0
    standard_error = difference.std().item() / math.sqrt(len(difference))
    print(f"exact {exact.mean():.4f} sampled {sampled.mean():.4f} se {standard_error:.4f}")
    assert abs(difference.mean().item()) < 4 * standard_error
    assert sampled.std() > exact.std()  # the point of the exact estimator: less variance
    assert exact.mean() > 8 * standard_error  # the test can tell a real KL from zero


def test_evaluation_scores_each_batch_with_two_forwards_and_matches_the_plain_definitions(setup):
    policy, other, tokenizer, prompts = setup
    scoring_calls = []  # forwards over whole prompt + completion rows (generation feeds P or 1 tokens)
    hooks = [model.transformer.register_forward_hook(
        lambda module, args, kwargs, out, name=name: scoring_calls.append(name)
        if (args[0] if args else kwargs["input_ids"]).shape[1] > max(map(len, prompts)) else None,
        with_kwargs=True)
        for name, model in (("policy", other), ("reference", policy))]
    try:
        result = evaluate(setup, policy=other, reference=policy, seed=5, batch_size=6, return_samples=True)
    finally:
        for hook in hooks:
            hook.remove()
    batches = math.ceil(len(prompts) / 6)
    assert scoring_calls == ["policy", "reference"] * batches
    # Oracle: the same seeded rollouts scored by the unchunked definitions, batch by batch.
    kl, kl_sampled = [], []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(5)
        for start in range(0, len(prompts), 6):
            ids, mask = left_pad(prompts[start : start + 6], tokenizer.pad_token_id)
            rollout = generate(other, ids, mask, SAMPLING, tokenizer.eos_token_id, tokenizer.pad_token_id)
            batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
            kl += exact_kl(other, policy, *batch, temperature=SAMPLING.temperature).tolist()
            kl_sampled += (sequence_logprobs(other, *batch, temperature=SAMPLING.temperature)
                           - sequence_logprobs(policy, *batch, temperature=SAMPLING.temperature)).tolist()
    assert result["kl"] == pytest.approx(kl, rel=1e-5, abs=1e-6)
    assert result["kl_sampled"] == pytest.approx(kl_sampled, rel=1e-5, abs=1e-5)
    assert max(kl) > 1e-3


# ----------------------------------------------------------------------------- text statistics


def test_distinct_n_on_known_strings():
    texts = ["the cat sat", "the cat ran"]
    assert evaluation.distinct_n(texts, 1) == pytest.approx(4 / 6)  # the cat sat ran / 6 words
    assert evaluation.distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice
    assert evaluation.distinct_n(texts, 3) == pytest.approx(2 / 2)
    assert evaluation.distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert evaluation.distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)  # no n-gram spans two texts
    assert evaluation.distinct_n(["one", ""], 2) == 0.0
    with pytest.raises(ValueError, match="n must"):
        evaluation.distinct_n(texts, 0)


def test_vader_prefers_the_positive_review():
    good, bad = evaluation.vader_scores(["a wonderful, moving film", "a dull, awful mess"])
    assert good > 0.05 > -0.05 > bad


# ----------------------------------------------------------------------------- determinism, no side effects


def test_evaluation_is_seeded_and_side_effect_free(setup):
    policy, other, _, _ = setup
    before_weights = clone_state(other)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    other.train()  # dropout on: evaluation must switch it off, then restore the mode
    first = evaluate(setup, policy=other, reference=policy, seed=7, return_samples=True)
    assert other.training and not policy.training
    assert torch.equal(torch.get_rng_state(), rng_before)
    other.eval()
    second = evaluate(setup, policy=other, reference=policy, seed=7, return_samples=True)
    assert first == second
    third = evaluate(setup, policy=other, reference=policy, seed=8, return_samples=True)
    assert third["samples"] != first["samples"]
    assert third["reward_mean"] != first["reward_mean"]
    for name, value in clone_state(other).items():
        assert torch.equal(value, before_weights[name]), name
    assert all(parameter.grad is None for parameter in other.parameters())
    assert set(evaluation.METRIC_COLUMNS) <= set(first)
    assert first["response_len"] <= SAMPLING.max_new_tokens
    assert 0 < first["distinct_1"] <= 1 and -1 <= first["vader_compound"] <= 1
    assert first["reward_ci95"] == pytest.approx(1.96 * first["reward_std"] / math.sqrt(first["n"]))


def test_evaluation_runs_on_every_core_with_the_same_samples_as_on_one(setup, monkeypatch):
    """all_cores: $OMP_NUM_THREADS (else every core) during the evaluation, the caller's count after;
    the tiny policy's width (128) and a batch of 64, where matmuls do split over threads."""
    _, _, tokenizer, prompts = setup
    torch.manual_seed(3)
    policy = tiny_gpt2(PolicyConfig(n_layer=2, n_embd=128, n_head=4, n_positions=32), tokenizer).eval()
    seen = []

    def reward(texts):
        seen.append(torch.get_num_threads())
        return vowel_reward(texts)

    results, before = {}, torch.get_num_threads()
    for threads in ("2", "1"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        context = EvalContext(perturbed(policy, 0.02, 4), tokenizer, reward, prompts * 4, SAMPLING, seed=5)
        results[threads] = evaluation.evaluate_policy(policy, context, return_samples=True)
        assert torch.get_num_threads() == before
    assert seen == [2, 1]
    assert results["2"] == results["1"]


# ----------------------------------------------------------------------------- LITI front


def test_pareto_front_endpoints_match_direct_evaluation_and_etas_are_checked(setup):
    policy, other, tokenizer, prompts = setup
    theta_start, theta_merged = clone_state(policy), clone_state(other)
    context = EvalContext(policy, tokenizer, vowel_reward, prompts, SAMPLING, seed=5)
    front = evaluation.pareto_front(theta_start, theta_merged, [0.0, 0.5, 1.0], policy, context, label="iteration 1")
    assert front["eta"].tolist() == [0.0, 0.5, 1.0]
    assert (front["label"] == "iteration 1").all()
    start = evaluate(setup, policy=policy, reference=policy, seed=5)
    end = evaluate(setup, policy=other, reference=policy, seed=5)
    for column in evaluation.METRIC_COLUMNS:
        assert front.loc[0, column] == pytest.approx(start[column], nan_ok=True), column
        assert front.loc[2, column] == pytest.approx(end[column], nan_ok=True), column
    assert front.loc[0, "kl_to_sft"] == 0.0 < front.loc[1, "kl_to_sft"] < front.loc[2, "kl_to_sft"]
    assert torch.equal(policy.state_dict()["transformer.wte.weight"], theta_start["transformer.wte.weight"])
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="eta"):
            evaluation.pareto_front(theta_start, theta_merged, [0.0, eta], policy, context)
    assert evaluation.interpolate(theta_start, theta_merged, 1.0)["lm_head.weight"].equal(theta_merged["lm_head.weight"])


# ----------------------------------------------------------------------------- plots


def test_plots_draw_one_curve_per_label_and_error_bars():
    front = pd.DataFrame({"label": ["it 1"] * 3 + ["it 2"] * 3, "eta": [0, 0.5, 1] * 2,
                          "kl_to_sft": [0, 1, 2, 2, 3, 4], "reward_mean": [0, 1, 1.5, 1.5, 2, 2.2],
                          "reward_mean_ci95": [0.1] * 6})
    ax = plots.plot_front(front)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["it 1", "it 2"]
    assert sum(t.get_text().startswith("η=") for t in ax.texts) == 6
    metrics = pd.DataFrame([{"iteration": i, "run": m, "step": t, "reward_mean": i + t / 10}
                            for i in (1, 2) for m in (1, 2) for t in range(1, 6)])
    ax = plots.plot_training_curves(metrics, "reward_mean")
    smooth = [line for line in ax.get_lines() if line.get_label().startswith("iteration")]
    assert len(smooth) == 4 and min(smooth[-1].get_xdata()) == 6  # iteration 2 follows iteration 1
    table = pd.DataFrame({"policy": ["sft", "warp"], "reward_mean": [0.1, 0.5], "reward_mean_ci95": [0.02, 0.03],
                          "distinct_1": [0.6, 0.4]})
    ax = plots.plot_bars(table, ["reward_mean", "distinct_1"])
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == ["sft", "warp"]
    with pytest.raises(ValueError, match="nope"):
        plots.plot_bars(table, "nope")
    plt.close("all")


def test_curves_join_the_measured_points_of_a_metric_taken_every_few_steps():
    # The KL to SFT is measured at steps 1, T and multiples of kl_every (NaN elsewhere): the
    # curves must join the measured points, not break into dots at the NaNs.
    kl_every, T = 5, 20
    metrics = pd.DataFrame([{"iteration": 1, "run": m, "step": t,
                             "kl_to_sft": m * t if t in (1, T) or t % kl_every == 0 else math.nan}
                            for m in (1, 2) for t in range(1, T + 1)])
    ax = plots.plot_training_curves(metrics, "kl_to_sft", window=1)
    for line in ax.get_lines()[:2]:
        assert list(line.get_xdata()) == [1, 5, 10, 15, 20] and np.isfinite(line.get_ydata()).all()
    ax = plots.plot_study_curves({"a": metrics}, "kl_to_sft", window=1)
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [1, 5, 10, 15, 20]
    assert list(line.get_ydata()) == pytest.approx([1.5 * t for t in (1, 5, 10, 15, 20)])  # mean of runs
    with pytest.raises(ValueError, match="no measured value of 'kl_to_sft'"):
        plots.plot_training_curves(metrics.assign(kl_to_sft=math.nan), "kl_to_sft")
    plt.close("all")


def test_reward_at_kl_reads_the_upper_envelope_and_common_kl_is_the_shortest_reach():
    front = pd.DataFrame({"kl_to_sft": [2.0, 0.0, 3.0, 1.0], "reward_mean": [1.0, 0.0, 3.0, 2.0]})  # unsorted
    # envelope over KL 0, 1, 2, 3: rewards 0, 2, 2 (the KL-1 point is within budget), 3
    assert evaluation.reward_at_kl(front, 1.0) == pytest.approx(2.0)
    assert evaluation.reward_at_kl(front, 1.5) == pytest.approx(2.0)  # KL 1 -> 2: exactly 2x, bridged
    assert evaluation.reward_at_kl(front, 2.5) == pytest.approx(2.5)
    assert evaluation.reward_at_kl(front, 0.0) == 0.0 and evaluation.reward_at_kl(front, 3.0) == 3.0
    other = front.assign(kl_to_sft=front.kl_to_sft / 2)
    assert evaluation.common_kl([front, other]) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="reward_mean"):
        evaluation.reward_at_kl(front.drop(columns="reward_mean"), 1.0)


def test_reward_at_kl_is_nan_beyond_the_front_and_across_wide_gaps():
    front = pd.DataFrame({"kl_to_sft": [0.0, 0.5, 2.1, 2.4, 4.0], "reward_mean": [0.0, 1.0, 2.0, 1.5, 3.0]})
    nan = pytest.approx(math.nan, nan_ok=True)
    for kl in (-0.1, 4.01, 9.0, math.nan):  # no extrapolation
        assert evaluation.reward_at_kl(front, kl) == nan
    for kl in (0.25, 1.0, 2.0):  # 0 -> 0.5 and 0.5 -> 2.1 are more than 2x apart
        assert evaluation.reward_at_kl(front, kl) == nan
    assert evaluation.reward_at_kl(front, 0.5) == 1.0 and evaluation.reward_at_kl(front, 2.1) == 2.0
    # 2.1 -> 2.4 -> 4.0 are within 2x: the envelope (2.0 at KL 2.4, not 1.5) interpolated as before
    assert evaluation.reward_at_kl(front, 2.25) == pytest.approx(2.0)
    assert evaluation.reward_at_kl(front, 3.2) == pytest.approx(2.5)
    dense = pd.DataFrame({"kl_to_sft": [1.0, 1.5, 2.5], "reward_mean": [1.0, 2.0, 4.0]})
    assert evaluation.reward_at_kl(dense, 2.0) == pytest.approx(3.0)  # halfway from 2.0 to 4.0


def test_study_curves_average_the_runs_of_each_step_and_highlight_one():
    def metrics(offset):
        return pd.DataFrame([{"iteration": 1, "run": m, "step": t, "reward_mean": offset + m + t}
                             for m in (1, 2) for t in range(1, 5)])

    ax = plots.plot_study_curves({"a": metrics(0), "b": metrics(10)}, "reward_mean", window=1, highlight="b")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["a"].get_xdata()) == [1, 2, 3, 4]
    assert list(lines["a"].get_ydata()) == pytest.approx([2.5, 3.5, 4.5, 5.5])  # mean of runs 1 and 2
    assert lines["b"].get_linewidth() > lines["a"].get_linewidth()
    with pytest.raises(ValueError, match="kl_to_sft"):
        plots.plot_study_curves({"a": metrics(0)}, "kl_to_sft")
    plt.close("all")


def test_paired_difference_removes_the_shared_prompt_effect():
    prompt_effect = [-3.0, 2.0, 0.5, -1.0, 4.0]  # large, shared by both policies
    a = [p + d for p, d in zip(prompt_effect, [1.0, 1.2, 0.8, 1.1, 0.9])]
    mean, ci95 = evaluation.paired_difference(a, prompt_effect)
    differences = torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9], dtype=torch.float64)
    assert mean == pytest.approx(1.0)
    assert ci95 == pytest.approx(1.96 * differences.std().item() / math.sqrt(5))
    assert ci95 < 0.2  # the unpaired intervals would be ~2.5 wide
    with pytest.raises(ValueError, match="values_a and values_b"):
        evaluation.paired_difference([1.0, 2.0], [1.0])


def test_the_evaluation_cache_looks_up_equal_evaluations_and_only_those(setup, monkeypatch):
    from test_warp import ModelScorer  # vowel_reward plus a bias held in weights: r with a fingerprint

    sft, other, tokenizer, prompts = setup
    calls = []
    real = evaluation._evaluate
    monkeypatch.setattr(evaluation, "_evaluate", lambda *args: calls.append(1) or real(*args))
    cache, scorer = {}, ModelScorer(bias=0.0)

    def run(policy, seed=0, reward_scorer=scorer, batch_size=64, return_samples=False):
        context = EvalContext(sft, tokenizer, reward_scorer, prompts, SAMPLING, seed, batch_size, cache)
        return evaluation.evaluate_policy(policy, context, return_samples=return_samples)

    first = run(other, return_samples=True)
    assert run(other, return_samples=True) == first and len(calls) == 1
    plain = run(copy.deepcopy(other))  # equal weights in another object: looked up, without samples
    assert len(calls) == 1 and "samples" not in plain and all(plain[key] == first[key] for key in plain)
    uncached = evaluation.evaluate_policy(other, EvalContext(sft, tokenizer, scorer, prompts, SAMPLING, 0),
                                          return_samples=True)
    assert uncached == first and len(calls) == 2
    first["samples"].clear()  # the caller's copy: the cache keeps its own
    assert run(other, return_samples=True)["samples"] == uncached["samples"]
    run(other, seed=1), run(sft), run(other, reward_scorer=ModelScorer(bias=1.0)), run(other, batch_size=3)
    assert len(calls) == 6  # another seed, policy, reward model or batching: evaluated
    front = evaluation.pareto_front(clone_state(sft), clone_state(other), [0.0, 0.5, 1.0], sft,
                                    EvalContext(sft, tokenizer, scorer, prompts, SAMPLING, seed=0, cache=cache))
    assert len(calls) == 7  # eta = 0 is sft, eta = 1 is other: both looked up
    assert front.loc[2, "reward_mean"] == uncached["reward_mean"]
    assert evaluation.evaluate_policy(other, EvalContext(sft, tokenizer, vowel_reward, prompts, SAMPLING, 0, cache=cache))
    assert len(calls) == 8  # a reward function without weights is never cached


def test_lmc_barrier_is_the_dip_below_the_chord_with_a_simultaneous_lower_bound():
    from scipy.stats import norm

    from warp_utils.evaluate.evaluation import lmc_barrier

    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    noise = np.array([[0.3, -0.3, 0.1, -0.1]] * 5) * np.array([[0], [1], [2], [1], [0]])
    ends = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 2.0, 5.0, 0.0])
    chord = np.array([(1 - t) * ends[0] + t * ends[1] for t in ts])
    dip = np.array([0.0, -0.1, -0.4, -0.2, 0.0])[:, None]  # the reward under the chord at each t
    out = lmc_barrier(ts, chord + dip + noise)
    assert out["barrier"] == pytest.approx(-0.4) and out["t"] == 0.5
    assert out["dips"] == pytest.approx([-0.1, -0.4, -0.2])
    z = norm.ppf(1 - 0.05 / 3)  # one-sided, Bonferroni over the 3 interior points
    bounds = [d - z * (noise[k] + 0).std(ddof=1) / 2 for k, d in zip((1, 2, 3), (-0.1, -0.4, -0.2))]
    assert out["lower"] == pytest.approx(min(bounds))
    no_barrier = lmc_barrier(ts, chord + noise)
    assert no_barrier["barrier"] == pytest.approx(0.0) and no_barrier["lower"] < 0 < -out["barrier"]
    with pytest.raises(ValueError, match="both ends"):
        lmc_barrier([0.0, 0.5], chord[:2])

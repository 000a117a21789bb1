# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · WARP training: Algorithm 1, end to end
#
# $$
# \begin{aligned}
# &\theta_{\text{init}} \leftarrow \theta_{\text{sft}}\\
# &\textbf{for } i = 1..I:\\
# &\quad \textbf{for } m = 1..M \text{ (independent runs, each with its own prompt order)}:\\
# &\quad\quad \theta^m \leftarrow \theta_{\text{init}},\ \theta^m_{\text{ema}} \leftarrow \theta_{\text{init}},\ \text{fresh optimiser}\\
# &\quad\quad \textbf{for } t = 1..T:\\
# &\quad\quad\quad x \sim \mathcal{D},\ y \sim \pi_{\theta^m}(\cdot \mid x)\\
# &\quad\quad\quad r_\beta(x, y) = r(x, y) - \beta \log \frac{\pi_{\theta^m}(y \mid x)}{\pi_{\theta^m_{\text{ema}}}(y \mid x)}\\
# &\quad\quad\quad \theta^m \leftarrow \text{Adam}\big(\theta^m,\ r_\beta(x, y)\, \nabla_\theta \log \pi_{\theta^m}(y \mid x)\big)\\
# &\quad\quad\quad \theta^m_{\text{ema}} \leftarrow (1-\mu)\,\theta^m_{\text{ema}} + \mu\,\theta^m\\
# &\quad \theta^i_{\text{slerp}} \leftarrow \text{SLERP}\big(\theta_{\text{init}}, \{\theta^m\}_{m=1}^M\big)\\
# &\quad \theta_{\text{init}} \leftarrow (1-\eta)\,\theta_{\text{init}} + \eta\,\theta^i_{\text{slerp}}\\
# &\textbf{return } \theta^I_{\text{slerp}}
# \end{aligned}
# $$
#
# Each piece below is one function of `warp_utils`, called next to its equation; then the
# real run of the current profile, its curves, and samples before and after.

# %%
import copy

import matplotlib.pyplot as plt
import torch

from warp_utils.config import get_profile
from warp_utils.pipeline import ensure_warp_run, load_components, warp_run_dir

profile = get_profile()
print("profile:", profile.name)
config, sampling = profile.warp, profile.sampling
print(config)
print(sampling)
parts = load_components(profile)  # builds the SFT policy, reward model and prompts if missing
policy, tokenizer, reward_scorer, prompts = parts.policy, parts.tokenizer, parts.reward_scorer, parts.prompts

# %% [markdown]
# ## 1. Rollouts: $x \sim \mathcal{D}$, $y \sim \pi_\theta(\cdot \mid x)$
# Prompts are left-padded so that generation continues right after them; GPT-2 then needs its
# position ids from the attention mask. The response mask covers the completion **up to and
# including the first EOS**: tokens after it are not part of $y$. Since
# `<|endoftext|>` is bos = eos = pad, no mask is ever built from `ids != pad_id`.

# %%
from warp_utils.rl import decode_texts, generate, left_pad

torch.manual_seed(config.seed)
ids, mask = left_pad(prompts["train"]["input_ids"][:4], tokenizer.pad_token_id)
rollout = generate(policy, ids, mask, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
texts = decode_texts(tokenizer, rollout)  # special tokens skipped: r never sees <|endoftext|>
rewards = reward_scorer(texts)
for text, reward in zip(texts, rewards):
    print(f"r = {reward:+.2f} | {text}")
print("response lengths (EOS included):", rollout.response_lengths.tolist())

# %% [markdown]
# ## 2. $r_\beta$ and the REINFORCE loss
# $\log \pi(y \mid x) = \sum_{t \in y} \log \pi(y_t \mid x, y_{<t})$ under the **tempered**
# policy (the temperature used to sample is the one used to score: otherwise REINFORCE would
# be off-policy and the sampled KL biased). Each sample's penalty uses its own log-ratio, and
# $r_\beta$ is a constant weight (computed without gradient):
#
# $$\mathcal{L}(\theta) = -\frac{1}{B}\sum_b \big(r_\beta(x_b, y_b) - b\big)\,\log \pi_\theta(y_b \mid x_b).$$
#
# The baseline $b$ (here the batch mean) leaves the expected gradient unchanged and cuts its
# variance; `baseline="none"` is the literal algorithm.

# %%
from warp_utils.rl import reinforce_loss, sequence_logprobs

anchor = copy.deepcopy(policy)  # at t = 1 the anchor is theta_init itself
batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
logprobs = sequence_logprobs(policy, *batch, temperature=sampling.temperature)
with torch.no_grad():
    log_ratio = logprobs.detach() - sequence_logprobs(anchor, *batch, temperature=sampling.temperature)
loss, step_metrics = reinforce_loss(logprobs, rewards, log_ratio, config.beta, config.baseline)
print({k: round(v, 4) for k, v in step_metrics.items()})
assert log_ratio.abs().max() < 1e-5  # pi_theta = pi_ema at the start: no penalty yet

# %% [markdown]
# ## 3. The EMA anchor, SLERP and LITI
# `ema_` updates the anchor in place after every optimiser step; `slerp` merges the **trained**
# runs' task vectors $\delta^m = \theta^m - \theta_{\text{init}}$ (never the EMAs);
# `liti` returns a new state dict, so $\theta_{\text{init}}$ is never interpolated with
# itself. Notebook 03 derives and tests all three.

# %%
import inspect

import warp_utils.warp as warp

print(inspect.getsource(warp.rl_step))  # one RL step: rollout, r, r_beta, REINFORCE, then the EMA

# %% [markdown]
# ## 4. The run
# `ensure_warp_run` trains the profile's configuration once, checkpointing every few steps,
# and writes `data/artifacts/<profile>/warp/`: `iter_<i>/run_<m>/`, `iter_<i>/slerp/`,
# `iter_<i>/init/`, `final/` and `metrics.csv`. Re-running this cell resumes or reloads.
# Interrupt it (Colab disconnects) and run it again: it continues from the last checkpoint.

# %%
result = ensure_warp_run(profile, components=parts)
metrics = result.metrics
print("run directory:", warp_run_dir(profile, config))
metrics.groupby(["iteration", "run"])[["reward_mean", "kl_to_anchor", "kl_to_sft", "response_len"]].agg(["first", "last"]).round(3)

# %% [markdown]
# ## 5. Curves: reward and KL to SFT during training
# The x axis is the global step: iteration 2 starts from the LITI point $\theta_{\text{init}}$,
# which is why its KL to SFT does not start at 0. `kl_to_sft` is the exact per-token KL summed
# over the response; `kl_to_sft_sampled` is the single-sample estimate the paper plots.

# %%
from warp_utils.plots import plot_training_curves

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
for axis, column in zip(axes, ["reward_mean", "kl_to_sft", "kl_to_anchor"]):
    plot_training_curves(metrics, column, ax=axis)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Before and after: the same held-out prompts
# SFT policy against $\theta^I_{\text{slerp}}$, the same test prompts and the same seed.

# %%
from warp_utils.evaluation import evaluate_policy

warp_policy = copy.deepcopy(policy)
warp_policy.load_state_dict(result.final)
test_prompts = prompts["test"].shuffle(seed=0).select(range(128))["input_ids"]
evaluation = {}
for name, model in (("sft", policy), ("warp", warp_policy)):
    evaluation[name] = evaluate_policy(model, tokenizer, policy, reward_scorer, test_prompts, sampling,
                                       seed=0, return_samples=True)
for sft_text, warp_text in list(zip(evaluation["sft"]["samples"], evaluation["warp"]["samples"]))[:6]:
    print(f"SFT : {sft_text}\nWARP: {warp_text}\n")
{name: {k: round(v, 3) for k, v in stats.items() if isinstance(v, float)} for name, stats in evaluation.items()}

# %% [markdown]
# ## Checks
# - WARP raised the mean reward on held-out test prompts above the SFT policy's;
# - after LITI, $\theta_{\text{init}}$ differs from both $\theta_{\text{slerp}}$ and the previous
#   $\theta_{\text{init}}$ (with $0 < \eta < 1$ it lies strictly between them);
# - each run's EMA stayed closer to $\theta_{\text{init}}$ than its trained $\theta^m$:
#   $\|\theta^m_{\text{ema}} - \theta_{\text{init}}\| < \|\theta^m - \theta_{\text{init}}\|$.

# %%
from warp_utils.weights import task_vector


def distance(state, origin):
    return sum(float(v.double().pow(2).sum()) for k, v in task_vector(state, origin).items() if v.is_floating_point()) ** 0.5


print(f"test reward: sft {evaluation['sft']['reward_mean']:.3f} -> warp {evaluation['warp']['reward_mean']:.3f}")
assert evaluation["warp"]["reward_mean"] > evaluation["sft"]["reward_mean"]

theta_sft = {k: v.detach().clone() for k, v in policy.state_dict().items()}
inits = [theta_sft] + result.theta_init
for i in range(config.I):
    assert distance(result.theta_init[i], inits[i]) > 0 and distance(result.theta_init[i], result.theta_slerp[i]) > 0
    for m in range(config.M):
        ema_gap, run_gap = distance(result.theta_ema_runs[i][m], inits[i]), distance(result.theta_runs[i][m], inits[i])
        print(f"iteration {i + 1} run {m + 1}: |ema - init| = {ema_gap:.4f} < |theta_m - init| = {run_gap:.4f}")
        assert ema_gap < run_gap

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
# loop itself in a dozen lines on a tiny budget, the real run of the current profile, its curves,
# and samples before and after.
#
# **You will learn to** sample rollouts and mask them at the first EOS, compute the KL-regularised
# reward $r_\beta$ and the REINFORCE loss (a **policy gradient**: raise $\log\pi_\theta(y \mid x)$
# in proportion to how good $y$ was), run Algorithm 1 end to end, and spot two bugs of public
# reproductions in this step.
#
# **Prerequisites**: notebooks 00-02 (the SFT policy, the reward model $r$, the prompts) and 03
# (EMA, SLERP, LITI; the objective $\mathbb{E}[r] - \beta\,\mathrm{KL}$).
#
# **Time**: <!-- run -->under a minute<!-- /run --> to run on 2 CPU cores the first time (it trains the WARP run), seconds once cached;
# 30-45 min to read and do the 2 exercises.
#
# **Symbols**: $I$, $M$, $T$ WARP iterations, runs per iteration, steps per run; $B$ the batch size;
# $b$ the REINFORCE baseline; the rest as in notebooks 03 and 03a (glossary: end of notebook 00).

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import copy

import matplotlib.pyplot as plt
import torch

from warp_utils.config import shown_path
from warp_utils.execution import get_profile
from warp_utils.pipeline import ensure_warp_run, notebook_components, warp_run_dir
from warp_utils.execution import step_printer

profile = get_profile()
print("profile:", profile.name)
config, sampling = profile.warp, profile.sampling
print(config)
print(sampling)
# builds the SFT policy, reward model and prompts if missing; WARP's runs train on this machine's cores
parts = notebook_components(profile)
policy, tokenizer, reward_scorer, prompts = parts.policy, parts.tokenizer, parts.reward_scorer, parts.prompts

# %% [markdown]
# ## 1. Rollouts: $x \sim \mathcal{D}$, $y \sim \pi_\theta(\cdot \mid x)$
# Prompts are left-padded so that generation continues right after them; GPT-2 then needs its
# position ids from the attention mask. The response mask covers the completion **up to and
# including the first EOS**: tokens after it are not part of $y$. Since
# `<|endoftext|>` is bos = eos = pad, no mask is ever built from `ids != pad_id`.

# %%
from warp_utils.core import decode_texts, generate, left_pad

torch.manual_seed(config.seed)
ids, mask = left_pad(prompts["train"]["input_ids"][:4], tokenizer.pad_token_id)
rollout = generate(policy, ids, mask, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
texts = decode_texts(tokenizer, rollout)  # special tokens skipped: r never sees <|endoftext|>
rewards = reward_scorer(texts)
for text, reward in zip(texts, rewards):
    print(f"r = {reward:+.2f} | {text}")
print("response lengths (EOS included):", rollout.response_lengths.tolist())

# %% [markdown]
# ### Exercise 1 · the response mask
# Write `mask_of(completion_ids, eos_token_id)`: for a $(B, N)$ tensor of completion tokens, 1 on
# every token up to **and including** the first EOS, 0 after it (the sampler keeps writing filler
# after a row finished). The grader compares it with `rl.response_mask_from_completion`.

# %%
from warp_utils.course import bugs, exercises


def mask_of(completion_ids, eos_token_id):
    raise NotImplementedError  # your code here (hint: cumsum)


mask_of = exercises.check("response_mask", mask_of)
assert torch.equal(mask_of(rollout.completion_ids, tokenizer.eos_token_id).long(), rollout.completion_mask.long())

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("response_mask"))

# %% [markdown]
# ### Spot the bug · what counts as the completion?
# A reproduction builds its mask like this (GPT-2's `<|endoftext|>` is both EOS and pad). What goes
# wrong, and what does it do to $\log\pi(y \mid x)$, to the KL, and to training?

# %%
import inspect

print(inspect.getsource(bugs.response_mask_not_pad))
print(inspect.getsource(bugs.response_mask_after_eos_counted))

# %% [markdown]
# <details><summary>Answer</summary>
#
# `ids != eos` drops the EOS itself (the policy is never rewarded or penalised for *stopping*) and,
# if the sampler wrote anything but EOS after the end, keeps those filler tokens. A mask of ones
# counts everything after the EOS: tokens the reward model never saw become part of $y$, their
# log-probabilities are pushed up or down by a reward they did not earn, and the KL grows with
# junk, so the front shifts right (more KL for the same reward). The grader's completions with
# filler after the EOS catch both.
# </details>

# %%
for bug in ("tokens after EOS counted", "mask from ids != pad (eos = pad)"):
    assert exercises.spot_the_bug("response_mask", bug) == "wrong"

# %% [markdown]
# ## 2. $r_\beta$ and the REINFORCE loss
# $\log \pi(y \mid x) = \sum_{t \in y} \log \pi(y_t \mid x, y_{<t})$ under the **tempered**
# policy (the temperature used to sample is the one used to score). REINFORCE is **on-policy**:
# its gradient $\mathbb{E}_{y \sim \pi_\theta}[r \nabla \log \pi_\theta]$ is only right for samples
# drawn from the very policy whose log-probabilities it differentiates. Scoring at another
# temperature would make the samples come from a different distribution, **off-policy**, and
# both the gradient and the sampled KL would be biased. Each sample's penalty uses its own log-ratio, and
# $r_\beta$ is a constant weight (computed without gradient):
#
# $$\mathcal{L}(\theta) = -\frac{1}{B}\sum_b \big(r_\beta(x_b, y_b) - b\big)\,\log \pi_\theta(y_b \mid x_b).$$
#
# The baseline $b$ (here the batch mean) leaves the expected gradient unchanged and cuts its
# variance; `baseline="none"` is the literal algorithm.
#
# ### Exercise 2 · $r_\beta$ and the REINFORCE loss
# Write `loss_of(logprobs, rewards, log_ratio, beta)`: first $r_\beta = r - \beta\cdot$`log_ratio`
# as a **constant** (the grader passes a `log_ratio` that still carries the policy's graph: a
# penalty left attached adds a wrong term to the gradient, with the same loss value), then the scalar
# $-\frac{1}{B}\sum_b (r_{\beta,b} - \bar r_\beta)\,\log\pi_\theta(y_b \mid x_b)$ with the batch-mean
# baseline $\bar r_\beta$. The grader checks the value **and the gradient** against
# `rl.reinforce_loss`.

# %%
def loss_of(logprobs, rewards, log_ratio, beta):
    raise NotImplementedError  # your code here


loss_of = exercises.check("reinforce_loss", loss_of)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("reinforce_loss"))

# %%
from warp_utils.core import reinforce_loss, sequence_logprobs

anchor = copy.deepcopy(policy)  # at t = 1 the anchor is theta_init itself
batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
logprobs = sequence_logprobs(policy, *batch, temperature=sampling.temperature)
with torch.no_grad():
    log_ratio = logprobs.detach() - sequence_logprobs(anchor, *batch, temperature=sampling.temperature)
loss, step_metrics = reinforce_loss(logprobs, rewards, log_ratio, config.beta, config.baseline)
print({k: round(v, 4) for k, v in step_metrics.items()})
assert log_ratio.abs().max() < 1e-5  # pi_theta = pi_ema at the start: no penalty yet
if config.baseline == "batch_mean":  # your loss (or the reference) on the real batch
    assert torch.allclose(loss_of(logprobs, rewards, log_ratio, config.beta), loss, atol=1e-6)

# %% [markdown]
# ### Spot the bug · the KL penalty
# This loss has exactly the right **value**. What is wrong with it?

# %%
print(inspect.getsource(bugs.reinforce_loss_kl_not_detached))

# %% [markdown]
# <details><summary>Answer</summary>
#
# `log_ratio` still carries the policy's graph, so the gradient also flows through the penalty:
# it gains a term $+\frac{\beta}{B}\sum_b \log\pi_\theta(y_b)\,\nabla \log\frac{\pi_\theta}{\pi_{\text{ema}}}(y_b)$
# (centred by the baseline), which is not the gradient of $\mathbb{E}[r] - \beta\,\mathrm{KL}$: it
# pushes on each sample's log-probability in proportion to its own log-probability, with a scale
# set by $\beta$. Nothing crashes and the loss curve looks the same; the optimiser follows another
# objective and the run lands elsewhere on the KL-reward plane. Only a gradient check sees it: the
# grader compares gradients, not just values.
# </details>

# %%
assert exercises.spot_the_bug("reinforce_loss", "KL penalty not detached") == "wrong"

# %% [markdown]
# **What it does to the front**, on the toy bandit of notebook 03 where everything is exact: train
# with the expected REINFORCE loss (samples replaced by their probabilities, the anchor frozen at
# SFT) once with $r_\beta$ detached and once without. Detached, training approaches the
# closed-form optimum $\pi^*_\beta$ of notebook 03; not detached, it settles somewhere else, with a
# lower value of the objective $\mathbb{E}[r] - \beta\,\mathrm{KL}$ it claims to maximise (here:
# less reward *and* less KL, a point further below the exact front).

# %%
from warp_utils.course import toy

toy_sft, toy_reward = toy.make_bandit()
toy_beta = 0.1


def toy_train(detach, steps=1000, lr=50.0):
    theta = {k: v.clone().requires_grad_(True) for k, v in toy_sft.items()}
    optimizer = torch.optim.SGD(theta.values(), lr=lr)
    log_sft = torch.log_softmax(toy.logits(toy_sft), -1)
    for _ in range(steps):
        log_pi = torch.log_softmax(toy.logits(theta), -1)
        r_beta = toy_reward - toy_beta * (log_pi - log_sft)
        r_beta = r_beta.detach() if detach else r_beta
        weight = log_pi.exp().detach()  # y ~ pi, in expectation
        advantage = r_beta - (weight * r_beta).sum(-1, keepdim=True)
        loss = -(weight * advantage * log_pi).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in theta.items()}


outcome = {}
for name, detach in (("detached (correct)", True), ("not detached (bug)", False)):
    theta = toy_train(detach)
    kl, value = toy.kl(theta, toy_sft), toy.expected_reward(theta, toy_reward)
    outcome[name] = value - toy_beta * kl
    print(f"{name:20} reward {value:.4f}  KL {kl:.4f}  objective {outcome[name]:.5f}  "
          f"below the exact front by {toy.optimal_reward_at_kl(toy_sft, toy_reward, kl) - value:.4f}")
print(f"{'optimum pi*_beta':20} objective {toy.optimal_value(toy_sft, toy_reward, toy_beta):.5f}")
gaps = {name: toy.optimal_value(toy_sft, toy_reward, toy_beta) - value for name, value in outcome.items()}
assert gaps["detached (correct)"] < 1e-3  # converging to pi*_beta (slowly: the objective is flat there)
assert gaps["not detached (bug)"] > 10 * gaps["detached (correct)"]  # a different fixed point

# %% [markdown]
# ## 3. Algorithm 1 in a dozen lines
# `ema_` updates the anchor in place after every optimiser step; `slerp` merges the **trained**
# runs' task vectors $\delta^m = \theta^m - \theta_{\text{init}}$ (never the EMAs); `liti` returns
# a new state dict. Notebook 03a derives and tests all three. Here is the whole algorithm with the
# package's own RL step (`rl.rl_step`: rollout, $r$, $r_\beta$, REINFORCE, Adam, then the EMA), on a
# budget small enough to run in seconds ($I = 1$, $M = 2$, $T = 2$, 4 prompts a step). The
# package's trainer (`warp_runs.train_warp`, next section) is this loop plus seeds per run, a prompt order
# per run, checkpoints and metrics; the loop itself is `core.warp.algorithm1`, the one `toy.warp` runs too.

# %%
import dataclasses

from warp_utils.core import rl
from warp_utils.core import liti, slerp

small = dataclasses.replace(config, I=1, M=2, T=2, batch_size=4)
train_ids = prompts["train"]["input_ids"]
theta_init = {k: v.detach().clone() for k, v in policy.state_dict().items()}  # theta_sft
for i in range(small.I):
    theta_runs = []
    for m in range(small.M):
        run_policy = copy.deepcopy(policy)
        run_policy.load_state_dict(theta_init)                    # theta^m <- theta_init
        anchor = copy.deepcopy(run_policy)                        # theta_ema^m <- theta_init
        optimizer = torch.optim.Adam(run_policy.parameters(), lr=small.lr)
        for t in range(small.T):
            batch_ids = train_ids[(m * small.T + t) * small.batch_size:][:small.batch_size]
            step = rl.rl_step(run_policy, anchor, optimizer, batch_ids, parts, small)  # + EMA
            print(f"i={i + 1} m={m + 1} t={t + 1}: reward {step['reward_mean']:+.2f}, "
                  f"KL to anchor {step['kl_to_anchor']:.4f}")
        theta_runs.append({k: v.detach().clone() for k, v in run_policy.state_dict().items()})
    theta_slerp = slerp(theta_init, theta_runs)                   # the trained runs, not the EMAs
    theta_init = liti(theta_init, theta_slerp, small.eta)         # the next iteration's start
print("moved from SFT:", sum(float((theta_init[k] - v).abs().sum()) for k, v in policy.state_dict().items()) > 0)

# %% [markdown]
# ## 4. The run
# `ensure_warp_run` trains the profile's configuration once, checkpointing every few steps,
# and writes `data/artifacts/<profile>/warp/`: `iter_<i>/run_<m>/`, `iter_<i>/slerp/`,
# `iter_<i>/init/`, `final/` and `metrics.csv`. Re-running this cell resumes or reloads.
# Interrupt it (Colab disconnects) and run it again: it continues from the last checkpoint.
#
# The $M$ runs of an iteration are independent (each starts from $\theta_{\text{init}}$ and sees its
# own prompts), so they can train side by side, one per CPU core: that is what
# `notebook_components` asks for, and the result is the same as training them one
# after the other. `progress` prints one line every 25 steps.

# %%
progress = step_printer(config.T)  # one line every 25 steps
result = ensure_warp_run(profile, components=parts, step_callback=progress)
metrics = result.metrics
print("run directory:", shown_path(warp_run_dir(profile, config)))  # relative to the data folder
metrics.groupby(["iteration", "run"])[["reward_mean", "kl_to_anchor", "kl_to_sft", "response_len"]].agg(["first", "last"]).round(3)

# %% [markdown]
# ## 5. Curves: reward and KL to SFT during training
# The x axis is the global step: iteration 2 starts from the LITI point $\theta_{\text{init}}$,
# which is why its KL to SFT does not start at 0. `kl_to_sft` is the exact per-token KL summed
# over the response; `kl_to_sft_sampled` is the single-sample estimate the paper plots.

# %%
from warp_utils.evaluate import plot_training_curves

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
for axis, column in zip(axes, ["reward_mean", "kl_to_sft", "kl_to_anchor"]):
    plot_training_curves(metrics, column, ax=axis)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Before and after: the same held-out prompts
# SFT policy against $\theta^I_{\text{slerp}}$, the same test prompts and the same seed.

# %%
from warp_utils.evaluate import EvalContext, evaluate_policy

warp_policy = copy.deepcopy(policy)
warp_policy.load_state_dict(result.final)
test_prompts = prompts["test"].shuffle(seed=0).select(range(128))["input_ids"]
evaluation = {}
for name, model in (("sft", policy), ("warp", warp_policy)):
    context = EvalContext(policy, tokenizer, reward_scorer, test_prompts, sampling, seed=0)
    evaluation[name] = evaluate_policy(model, context, return_samples=True)
from warp_utils.evaluate import before_after_table

prompt_texts = [tokenizer.decode(ids) for ids in test_prompts[:6]]
before_after_table(prompt_texts, evaluation["sft"]["completions"][:6], evaluation["sft"]["rewards"][:6],
                   evaluation["warp"]["completions"][:6], evaluation["warp"]["rewards"][:6]).round(2)

# %%
{name: {k: round(v, 3) for k, v in stats.items() if isinstance(v, float)} for name, stats in evaluation.items()}

# %% [markdown]
# ## Checks
# - WARP raised the mean reward on held-out test prompts above the SFT policy's;
# - after LITI, $\theta_{\text{init}}$ differs from both $\theta_{\text{slerp}}$ and the previous
#   $\theta_{\text{init}}$ (with $0 < \eta < 1$ it lies strictly between them);
# - each run's EMA stayed closer to $\theta_{\text{init}}$ than its trained $\theta^m$:
#   $\|\theta^m_{\text{ema}} - \theta_{\text{init}}\| < \|\theta^m - \theta_{\text{init}}\|$.

# %%
from warp_utils.core import task_norm as distance  # |state - origin| over every float tensor


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

# %% [markdown]
# ## Summary
#
# - One RL step: sample $y \sim \pi_\theta(\cdot \mid x)$, mask it at the first EOS, score it with
#   $r$, subtract $\beta$ times its log-ratio to the EMA anchor, and ascend the policy gradient
#   $(r_\beta - b)\nabla\log\pi_\theta(y \mid x)$; then move the anchor by $\mu$.
# - Algorithm 1 wraps that step in $M$ independent runs from $\theta_{\text{init}}$, merges them with
#   SLERP and moves $\theta_{\text{init}}$ by LITI, $I$ times.
# - Two silent bugs live in this step: tokens after EOS counted, and a KL penalty that is not
#   detached (right loss value, wrong gradient).
#
# ## Questions
#
# 1. Why is $r_\beta$ detached, when $\log\pi_\theta$ in the loss is not?
# 2. Why does subtracting the batch-mean baseline not bias the gradient (much)?
# 3. At the first step of a run, what is the KL penalty, and why?
# 4. Why must the sampling temperature also be used to compute $\log\pi_\theta(y \mid x)$?
#
# <details><summary>Answers</summary>
#
# 1. REINFORCE's gradient is $\mathbb{E}[r_\beta\,\nabla\log\pi]$: $r_\beta$ is a weight. Its own
#    gradient would add a term that is not part of $\nabla(\mathbb{E}[r] - \beta\,\mathrm{KL})$.
# 2. $\mathbb{E}_\pi[\nabla\log\pi] = 0$, so a baseline independent of $y_b$ adds nothing in
#    expectation; the batch mean includes $y_b$ itself, a bias that only rescales the advantage by
#    $(B-1)/B$.
# 3. Zero: the anchor starts at $\theta_{\text{init}}$, so $\pi_\theta = \pi_{\text{ema}}$.
# 4. $y$ was drawn from the tempered distribution; scoring it under another one makes REINFORCE
#    off-policy and the sampled KL biased.
# </details>
#
# ## Try it
#
# - In the dozen-line loop, set `small = dataclasses.replace(config, I=1, M=2, T=2, batch_size=4, beta=0.0)`:
#   what happens to `kl_to_anchor`, and why is it not zero after the first step?
# - Set `eta=0.0` in `small`: which line makes the loop return $\theta_{\text{sft}}$ exactly?
# - Replace `loss_of` by `bugs.reinforce_loss_kl_not_detached` and compare the gradients of one
#   batch with `torch.autograd.grad`.

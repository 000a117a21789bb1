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
# # 05 · Evaluation: test-set reward, KL, and the reward-KL Pareto front
#
# Every policy is scored on the same held-out prompts, with the same seed, by
#
# $$
# \hat r(\pi) = \frac{1}{N}\sum_{n=1}^N r(x_n, y_n), \qquad
# \widehat{\mathrm{KL}}(\pi \,\|\, \pi_{\text{sft}}) = \frac{1}{N}\sum_{n=1}^N \sum_{t \in y_n}
# \mathrm{KL}\big(\pi(\cdot \mid x_n, y_{n,<t}) \,\|\, \pi_{\text{sft}}(\cdot \mid x_n, y_{n,<t})\big),
# \qquad y_n \sim \pi(\cdot \mid x_n),
# $$
#
# and the **Pareto front** of a policy $\theta$ is the curve traced by LITI back towards SFT,
#
# $$\theta_\eta = (1 - \eta)\,\theta_{\text{sft}} + \eta\,\theta, \qquad \eta \in \{0, 0.1, 0.3, 0.5, 0.8, 1\}.$$
#
# We compare WARP (each iteration), two REINFORCE baselines trained on the same kind of budget,
# and SLERP against LERP for the same trained runs (paper Fig. 1b, 3c, 8). Evaluation uses a
# small batch of 64 seeded test prompts so the notebook runs in minutes on a CPU: the 95%
# intervals are wide, and the numbers below are those of *this* run, whatever they are.
#
# **You will learn to** evaluate a policy on held-out prompts (reward, exact KL, diversity, an
# independent judge), trace and compare KL-reward Pareto fronts, and read **what RL changed in the
# text**: before/after samples with their rewards, the words RL made more and less frequent, and
# each token coloured by how much more likely the RL policy made it than $\pi_{\text{sft}}$.
#
# **Prerequisites**: notebooks 03 (the front), 03a (LITI) and 04 (the WARP run, which this notebook
# loads or trains).
#
# **Time**: <!-- run -->about 1 min<!-- /run --> to run on 2 CPU cores the first time (it trains two REINFORCE baselines); 30-45 min to
# read and do the 2 exercises.
#
# **Symbols**: $N$ the number of test prompts; **distinct-$n$** the share of unique $n$-grams
# (runs of $n$ words) among all $n$-grams of the completions, a diversity measure that falls when
# a policy repeats itself; **VADER** a lexicon-based sentiment score in $[-1, 1]$ (a word list:
# praise words fool it); the **held-out panel** of notebook 01, judges the policy never optimises
# (section 9 asks with them whether the policy games $r$).

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import copy
import dataclasses
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from warp_utils.config import shown_path
from warp_utils.execution import get_profile
from warp_utils.core import lerp, liti, slerp, task_norm
from warp_utils.evaluate import (
    FRONT_CLAIMS,
    EvalContext,
    committed_claims,
    committed_results,
    envelope_gap,
    evaluate_policy,
    judge_disagreements,
    one_seed_verdict,
    pareto_front,
    plot_bars,
    plot_front,
    shared_range,
)
from warp_utils.execution import step_printer
from warp_utils.pipeline import ensure_warp_run, ensure_warp_runs, notebook_components, warp_run_dir

notebook_start = time.perf_counter()
profile = get_profile()
print("profile:", profile.name)
config, sampling = profile.warp, profile.sampling
print(config)
parts = notebook_components(profile)
policy, tokenizer, reward_scorer, prompts = parts.policy, parts.tokenizer, parts.reward_scorer, parts.prompts
theta_sft = {k: v.detach().clone() for k, v in policy.state_dict().items()}

EVAL_SEED = 0  # the generation seed of every evaluation below
ETAS = [0.0, 0.1, 0.3, 0.5, 0.8, 1.0]
test_prompts = prompts["test"].shuffle(seed=EVAL_SEED).select(range(64))["input_ids"]
print(f"{len(test_prompts)} test prompts, etas {ETAS}")

# %% [markdown]
# ## 1. The WARP run and its test-set statistics
# `ensure_warp_run` loads the profile's default run (notebook 04 trains it; if it is missing it is
# trained here). We evaluate $\pi_{\text{sft}}$, and for each iteration $i$ both
# $\theta^i_{\text{slerp}}$ (the merge of the $M$ runs) and $\theta^i_{\text{init}} =
# (1-\eta)\,\theta^{i-1}_{\text{init}} + \eta\,\theta^i_{\text{slerp}}$ (the LITI point the next
# iteration starts from).

# %%
# Trains only if the run is missing (notebook 04 normally trained it); a line every 25 steps.
result = ensure_warp_run(profile, components=parts, step_callback=step_printer(config.T, names="WARP"))
print("run directory:", shown_path(warp_run_dir(profile, config)))  # relative to the data folder
work = copy.deepcopy(policy)  # one working copy: every state is loaded into it in turn
evaluated = {}  # evaluate_policy's cache: a front's eta = 0 (SFT) and eta = 1 are rows of the table


def evaluate_state(state, prompts=test_prompts, **kwargs):
    """evaluate_policy of the weights `state`, against pi_sft, with the notebook's seed."""
    work.load_state_dict(state)
    context = EvalContext(policy, tokenizer, reward_scorer, prompts, sampling, seed=EVAL_SEED, cache=evaluated)
    return evaluate_policy(work, context, **kwargs)


states = {"SFT": theta_sft}
for i in range(config.I):
    states[f"slerp {i + 1}"] = result.theta_slerp[i]
    states[f"init {i + 1}"] = result.theta_init[i]
evaluations = {name: evaluate_state(state, return_samples=True) for name, state in states.items()}
table = pd.DataFrame([{"policy": name, **{k: v for k, v in stats.items() if not isinstance(v, list)}}
                      for name, stats in evaluations.items()])
columns = ["reward_mean", "reward_ci95", "kl_to_sft", "kl_to_sft_ci95", "kl_to_sft_sampled",
           "response_len", "distinct_2", "vader_compound"]
table.set_index("policy")[columns].round(3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
plot_bars(table, "reward_mean", ax=axes[0])
plot_bars(table, "kl_to_sft", ax=axes[1])
axes[0].set_title("test reward (95% CI)")
axes[1].set_title("KL to SFT on the test prompts (95% CI)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Exercise 1 · the exact KL of a batch of completions
# `kl_to_sft` above is, for each completion, $\sum_{t \in y} \mathrm{KL}(\pi(\cdot \mid x, y_{<t})
# \,\|\, \pi_{\text{sft}}(\cdot \mid x, y_{<t}))$, each KL exact over the vocabulary. Write
# `kl_of(log_p, log_q, response_mask)`: `log_p`, `log_q` are $(B, L-1, V)$ next-token log-probabilities
# (row $t$ is the distribution of token $t+1$), `response_mask` is $(B, L)$ (1 on completion tokens up
# to the first EOS); return the $(B,)$ sums. Graded against `rl.per_token_kl` + `rl.sum_over_response`,
# then applied to a real batch below.

# %%
from warp_utils.core import exact_kl, generate, left_pad, next_token_log_probs
from warp_utils.course import exercises


def kl_of(log_p, log_q, response_mask):
    raise NotImplementedError  # your code here


kl_of = exercises.check("sequence_kl", kl_of)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("sequence_kl"))

# %%
work.load_state_dict(result.theta_slerp[-1])
torch.manual_seed(EVAL_SEED)
ids, mask = left_pad(test_prompts[:8], tokenizer.pad_token_id)
rollout = generate(work, ids, mask, sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
with torch.no_grad():
    log_p, log_q = (next_token_log_probs(m, rollout.input_ids, rollout.attention_mask, sampling.temperature)
                    for m in (work, policy))
batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
mine = kl_of(log_p, log_q, rollout.response_mask)
print("KL of 8 completions:", np.round(mine.tolist(), 3))
assert torch.allclose(mine, exact_kl(work, policy, *batch, temperature=sampling.temperature), atol=1e-4)

# %% [markdown]
# ### Exercise 2 · distinct-$n$
# Write `distinct(texts, n)`: unique $n$-grams / all $n$-grams, words split on whitespace, never an
# $n$-gram across two texts ($0.0$ if there is none). It must reproduce the `distinct_2` column.

# %%
def distinct(texts, n):
    raise NotImplementedError  # your code here


distinct = exercises.check("distinct_n", distinct)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("distinct_n"))

# %%
for name, stats in evaluations.items():
    assert abs(distinct(stats["completions"], 2) - stats["distinct_2"]) < 1e-12, name
print("distinct-2 per policy:", {name: round(distinct(s["completions"], 2), 3) for name, s in evaluations.items()})

# %% [markdown]
# ## 2. The Pareto front of each iteration
# For iteration $i$: $\theta_\eta = (1-\eta)\,\theta_{\text{sft}} + \eta\,\theta^i_{\text{slerp}}$,
# every $\eta$ evaluated with the same prompts and seed, so $\eta = 0$ is exactly the SFT row of
# the table above and $\eta = 1$ exactly the `slerp i` row. In the paper each iteration's front
# lies above and to the right of the previous one: more reward for the same KL, and reaching
# further in KL.

# %%
front_context = EvalContext(policy, tokenizer, reward_scorer, test_prompts, sampling, seed=EVAL_SEED, cache=evaluated)
warp_fronts = [pareto_front(theta_sft, result.theta_slerp[i], ETAS, policy, front_context, label=f"iteration {i + 1}")
               for i in range(config.I)]
fronts = pd.concat(warp_fronts, ignore_index=True)
ax = plot_front(fronts)
ax.set_title("WARP: LITI from θ_sft towards θ_slerp of each iteration")
plt.show()
fronts[["label", "eta", "reward_mean", "kl_to_sft", "kl_to_sft_sampled", "vader_compound"]].round(3)

# %% [markdown]
# ### Slide along the last front
# The slider sets $\eta$; the weights $\theta_\eta = \text{liti}(\theta_{\text{sft}},
# \theta^I_{\text{slerp}}, \eta)$ are built in memory, the marker is placed on the front
# (interpolated between the evaluated $\eta$), and a few generations on 8 test prompts are
# shown with their rewards. The figure below is the default $\eta$; move the slider in Jupyter.

# %%
last_front = warp_fronts[-1].sort_values("eta")
sample_prompts = test_prompts[:8]


def draw_eta(eta=0.5, samples=4):
    state = liti(theta_sft, result.theta_slerp[-1], eta)
    evaluation = evaluate_state(state, prompts=sample_prompts, return_samples=True)
    kl = np.interp(eta, last_front["eta"], last_front["kl_to_sft"])
    reward = np.interp(eta, last_front["eta"], last_front["reward_mean"])
    ax = plot_front(last_front, errorbars=False)
    ax.plot([kl], [reward], marker="*", markersize=18, color="crimson", zorder=5, label=f"η = {eta:.2f}")
    ax.legend(fontsize=8)
    ax.set_title(f"iteration {config.I}: θ_η on the front (η = {eta:.2f})")
    plt.show()
    print(f"eta = {eta:.2f}: on 8 prompts, reward {evaluation['reward_mean']:+.3f}, KL {evaluation['kl_to_sft']:.3f}")
    for text, r in list(zip(evaluation["samples"], evaluation["rewards"]))[:samples]:
        print(f"  r = {r:+.2f} | {text}")
    return evaluation


_ = draw_eta(0.5)  # the static figure, default eta

# %%
controls = widgets.interactive(
    draw_eta,
    eta=widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="eta",
                            continuous_update=False, readout_format=".2f"),
    samples=widgets.fixed(4),
)
display(controls)  # non-blocking: headless runs (nbval) just render the default state

# %% [markdown]
# ## 3. Baselines: REINFORCE with a KL anchor, no merging
# Both are one run ($I = M = 1$) of the same trainer, with the same $\beta$, learning rate, batch
# size and prompts:
#
# - **SFT anchor**, $\mu = 0$: the EMA never moves, $\theta_{\text{ema}} = \theta_{\text{sft}}$,
#   so $r_\beta = r - \beta \log \frac{\pi_\theta}{\pi_{\text{sft}}}$: the classic KL-regularised
#   REINFORCE;
# - **EMA anchor**, $\mu$ of the profile: the anchor WARP uses, but one run and no SLERP/LITI.
#
# **Budget.** WARP spends $I \cdot M \cdot T$ RL steps of `batch_size` prompts. A baseline with
# $T' = I M T$ steps each would double this notebook's run time, so by default the baselines get
# $T' = M T$ steps: **exactly the budget of WARP's first
# iteration** (same number of steps and samples), and half the budget of WARP after $I = 2$
# iterations. Compare the baselines with the `iteration 1` front for an equal budget; set
# `FULL_BUDGET = True` to train them with $T' = I M T$ (cached in `warp_runs/<name>_full/`).
# Their fronts are LITI from $\theta_{\text{sft}}$ towards their final weights.

# %%
FULL_BUDGET = False
baseline_T = config.I * config.M * config.T if FULL_BUDGET else config.M * config.T
suffix = "_full" if FULL_BUDGET else ""
baseline_configs = {
    "REINFORCE, SFT anchor": ("baseline_sft_anchor" + suffix,
                              dataclasses.replace(config, mu=0.0, M=1, I=1, T=baseline_T)),
    "REINFORCE, EMA anchor": ("baseline_ema_anchor" + suffix,
                              dataclasses.replace(config, M=1, I=1, T=baseline_T)),
}
print(f"WARP: {config.I * config.M * config.T} steps; baselines: {baseline_T} steps each "
      f"of {config.batch_size} prompts")
# trained once (side by side, one process each, when parts.execution.workers = 2), then loaded from disk
baseline_names, configs = zip(*baseline_configs.values())
runs = ensure_warp_runs(profile, configs, names=baseline_names, components=parts,
                        step_callback=step_printer(baseline_T, names=baseline_names))
baselines = dict(zip(baseline_configs, runs))
baseline_fronts = [pareto_front(theta_sft, run.final, ETAS, policy, front_context, label=label)
                   for label, run in baselines.items()]

# %% [markdown]
# ## 4. SLERP versus LERP of the same runs
# Iteration 1's $M$ runs $\theta^m$ all start from $\theta_{\text{sft}}$. Merge their task vectors
# $\delta^m = \theta^m - \theta_{\text{sft}}$ two ways, then trace each front with LITI:
#
# $$\text{LERP} = \theta_{\text{sft}} + \tfrac{1}{M}\textstyle\sum_m \delta^m, \qquad
# \text{SLERP} = \theta_{\text{sft}} + \frac{\sin((1-\lambda)\Omega)}{\sin\Omega}\,\delta^1 + \frac{\sin(\lambda\Omega)}{\sin\Omega}\,\delta^2 .$$
#
# SLERP keeps the norm of the task vectors (Lemma 1), LERP shrinks it (Lemma 2): in the paper
# LERP stays closer to SFT (less KL, less reward) and SLERP reaches higher rewards (Fig. 3c, 8).
# The SLERP merge is exactly $\theta^1_{\text{slerp}}$, so its front is the `iteration 1` front.

# %%
theta_slerp_1 = slerp(theta_sft, result.theta_runs[0])
theta_lerp_1 = lerp(theta_sft, result.theta_runs[0])
assert all(torch.allclose(theta_slerp_1[k], result.theta_slerp[0][k], atol=1e-6) for k in theta_sft)


for name, state in [*((f"run {m + 1}", s) for m, s in enumerate(result.theta_runs[0])),
                    ("SLERP", theta_slerp_1), ("LERP", theta_lerp_1)]:
    print(f"|theta - theta_sft| {name:6s} = {task_norm(state, theta_sft):.4f}")
run_norms = [task_norm(s, theta_sft) for s in result.theta_runs[0]]
kept = task_norm(theta_lerp_1, theta_sft) / (sum(run_norms) / len(run_norms))
print(f"LERP keeps {kept:.0%} of the runs' mean task-vector norm; orthogonal task vectors would keep "
      f"{1 / 2 ** 0.5:.0%} (notebook 03a) and identical ones all of it: the shrink measures how far apart the runs went.")
slerp_front = warp_fronts[0].assign(label="SLERP (iteration 1)")
lerp_front = pareto_front(theta_sft, theta_lerp_1, ETAS, policy, front_context, label="LERP (iteration 1)")
fig, ax = plt.subplots(figsize=(6.4, 4.4))
plot_front(pd.concat([slerp_front, lerp_front], ignore_index=True), ax=ax)
ax.set_title("SLERP vs LERP of the same M runs, LITI towards SFT")
plt.show()

# %% [markdown]
# ### Linear mode connectivity on GPT-2
# Averaging weights only makes sense if the models in between are good models too. Notebook 03a
# showed it on the toy; here, the reward along the straight line $(1-t)\,\theta^1 + t\,\theta^2$
# between the two runs of iteration 1, on 256 test prompts with the same seed (64 leave the bound too
# loose to say anything). The **barrier**
# is the worst dip of the reward below the chord between the two ends,
# $\min_t \big[r(t) - ((1-t)\,r(0) + t\,r(1))\big]$: negative means the runs sit in different basins
# and their average is worse than the line between them. We declare a tolerance $\delta$ (a
# quarter of the SFT reward's standard deviation) and check that the barrier's lower 95% bound,
# simultaneous over the interior points, is above $-\delta$.

# %%
from warp_utils.evaluate import lmc_barrier

ts = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
lmc_prompts = prompts["test"].shuffle(seed=EVAL_SEED).select(range(256))["input_ids"]
path = [evaluate_state(liti(result.theta_runs[0][0], result.theta_runs[0][1], t), prompts=lmc_prompts,
                       return_samples=True) for t in ts]
lmc = lmc_barrier(ts, [point["rewards"] for point in path])
delta = 0.25 * evaluations["SFT"]["reward_std"]  # a quarter of the SFT reward's sd (64 prompts)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(ts, [p["reward_mean"] for p in path], marker="o", label="reward")
axes[0].plot([0, 1], [path[0]["reward_mean"], path[-1]["reward_mean"]], "k--", lw=0.8, label="chord")
axes[1].plot(ts, [p["kl_to_sft"] for p in path], marker="o")
axes[0].set(xlabel="t (0: run 1, 1: run 2)", ylabel="test reward", title="reward between the runs")
axes[1].set(xlabel="t (0: run 1, 1: run 2)", ylabel="KL to SFT", title="KL between the runs")
axes[0].legend()
plt.tight_layout()
plt.show()
print(f"barrier {lmc['barrier']:+.3f} at t = {lmc['t']}, lower 95% bound {lmc['lower']:+.3f}; "
      f"tolerance -{delta:.3f}")
assert lmc["lower"] > -delta, "a reward barrier between the two runs"

# %% [markdown]
# ## 5. All fronts together
# Up and to the left is better: more reward for less KL to SFT. Section 6 compares two fronts $A$
# and $B$ on the KL range both reach, $[k_{\text{low}}, k_{\text{high}}]$: from the larger of their
# first measured KLs above 0 to the smaller of their largest KLs. There it averages the gap between
# their upper envelopes $E(k)$ (the best reward among points with KL $\le k$) over $\log k$:
#
# $$\Delta(A, B) = \frac{1}{\log k_{\text{high}} - \log k_{\text{low}}}
# \int_{\log k_{\text{low}}}^{\log k_{\text{high}}} \big(E_A(k) - E_B(k)\big)\, d\log k .$$
#
# Why a range and not one KL? The largest KL every front reaches is always some front's last point,
# so reading all fronts there lets one noisy point decide the claim. Averaging the envelopes over
# the shared range uses every measured point in it, and averaging over $\log k$ gives each decade of
# KL ($0.1$ to $1$, $1$ to $10$) the same weight, as the $\eta$ grid spreads its points over decades.

# %%
all_fronts = pd.concat([*warp_fronts, *baseline_fronts, lerp_front], ignore_index=True)
fig, ax = plt.subplots(figsize=(9, 6))
plot_front(all_fronts, ax=ax, errorbars=False)
ax.set_title("Reward vs KL to SFT: WARP iterations, REINFORCE baselines, LERP")
plt.show()


curves = {name: group for name, group in all_fronts.groupby("label", sort=False)}
summary = pd.DataFrame([
    {"front": name, "reward at eta=1": g.loc[g.eta == 1.0, "reward_mean"].item(),
     "KL at eta=1": g.loc[g.eta == 1.0, "kl_to_sft"].item(), "best reward": g["reward_mean"].max(),
     "first KL > 0": g.loc[g.kl_to_sft > 0, "kl_to_sft"].min(), "largest KL": g["kl_to_sft"].max()}
    for name, g in curves.items()
]).set_index("front")
summary.round(3)

# %% [markdown]
# ## 6. What came out
# The sentences below are computed from the table above, so they stay true whatever this run
# gave. What to expect, and what not to over-read:
#
# - the paper's claims are (i) each WARP iteration's front dominates the previous one, (ii) WARP's
#   front dominates REINFORCE with an SFT or EMA anchor at equal budget, (iii) SLERP reaches
#   higher reward than LERP, LERP staying closer to SFT;
# - the `tiny` profile (2-layer GPT-2, 1-layer reward model, $T = 50$, 64 evaluation prompts) is far
#   smaller than the paper's Gemma runs: the reward differences between fronts are often within the
#   95% intervals (about $\pm$ the `reward_ci95` column above), and a claim that fails here is not
#   evidence against the paper, nor does a claim that holds confirm it;
# - the baselines run at the budget stated in section 3 (by default that of WARP's first
#   iteration), so the fair comparison is with `iteration 1`; the last WARP iteration is listed
#   too, but it has spent $I$ times the baselines' budget;
# - a single REINFORCE run of $M T$ consecutive steps travels much further from SFT than a WARP
#   run of $T$ steps, so a pair's shared range ends where the shorter front ends: the longer front
#   is compared on its low-KL part only;
# - each claim prints, for each pair of fronts it compares, the shared KL range and the envelope gap
#   $\Delta$ there; its margin is the smallest of these gaps (a claim about both baselines must hold
#   against each). The margin is graded against the typical 95% half-width of one mean reward (a
#   rough, conservative yardstick: all policies share prompts and seed, so their differences are
#   somewhat less noisy): a margin "within the noise" is weak evidence either way.

# %%
def envelope_reading(a, b):
    """A vs B over the KL range both fronts reach: the mean envelope gap there, and the range."""
    front_a, front_b = ((curves[n]["kl_to_sft"].to_numpy(), curves[n]["reward_mean"].to_numpy()) for n in (a, b))
    k_low, k_high = shared_range([[front_a[0], front_b[0]]])
    gap = envelope_gap(front_a, front_b, k_low, k_high)
    if np.isnan(gap):
        return gap, (f"no KL range shared by {a} (KL {summary.loc[a, 'first KL > 0']:.2f} to "
                     f"{summary.loc[a, 'largest KL']:.2f}) and {b} (KL {summary.loc[b, 'first KL > 0']:.2f} "
                     f"to {summary.loc[b, 'largest KL']:.2f})")
    return gap, f"{a} vs {b}: gap {gap:+.3f} over KL [{k_low:.2f}, {k_high:.2f}]"


sft_row = table.set_index("policy").loc["SFT"]
final_row = table.set_index("policy").loc[f"slerp {config.I}"]
fair = config.I if FULL_BUDGET else 1  # the WARP iteration with the baselines' budget
noise = table["reward_ci95"].mean()  # typical 95% half-width of one mean test reward here
slerp_lerp = [summary.loc[n, ["KL at eta=1", "reward at eta=1"]] for n in ("iteration 1", "LERP (iteration 1)")]
print(f"Test reward: SFT {sft_row.reward_mean:+.3f} ± {sft_row.reward_ci95:.3f} -> WARP (slerp {config.I}) "
      f"{final_row.reward_mean:+.3f} ± {final_row.reward_ci95:.3f}, at KL {final_row.kl_to_sft:.3f} to SFT.")
print(f"At eta = 1, SLERP has KL {slerp_lerp[0].iloc[0]:.3f} and reward {slerp_lerp[0].iloc[1]:+.3f}; "
      f"LERP KL {slerp_lerp[1].iloc[0]:.3f} and reward {slerp_lerp[1].iloc[1]:+.3f}.")
print(f"The baselines ran {baseline_T} steps (WARP {config.I * config.M * config.T}): the equal-budget "
      f"comparison is with iteration {fair}. Their KL at eta = 1 is "
      + ", ".join(f"{summary.loc[label, 'KL at eta=1']:.2f} ({label})" for label in baselines) + ".")
print(f"\nTypical 95% half-width of a mean test reward here: ±{noise:.2f} (64 prompts).")

front_claims = {  # the paper's claim: the pairs (A, B) of fronts it says "A above B" of
    "each WARP iteration above the previous one at equal KL":
        [(f"iteration {i + 1}", f"iteration {i}") for i in range(1, config.I)],
    f"WARP (iteration {fair}, equal budget) above both baselines at equal KL":
        [(f"iteration {fair}", label) for label in baselines],
    f"WARP (iteration {config.I}) above both baselines at equal KL":
        [(f"iteration {config.I}", label) for label in baselines],
    "SLERP front above LERP front at equal KL": [("iteration 1", "LERP (iteration 1)")],
}
claims = {}  # claim: margin of this run, positive = the claim holds
for claim, pairs in front_claims.items():  # the margin: the smallest gap (NaN if a pair has no range)
    gaps, readings = zip(*(envelope_reading(a, b) for a, b in pairs))
    claims[claim] = float(np.min(gaps))
    print(f"- {claim}: {one_seed_verdict(claims[claim], noise)} on this one seed "
          f"(margin {claims[claim]:+.3f} ± {noise:.3f}; {'; '.join(readings)})")
claim = "SLERP reaches more reward than LERP (eta = 1)"  # an endpoint claim: the two eta = 1 points
claims[claim] = slerp_lerp[0].iloc[1] - slerp_lerp[1].iloc[1]
print(f"- {claim}: {one_seed_verdict(claims[claim], noise)} on this one seed (margin {claims[claim]:+.3f} ± {noise:.3f})")

# %% [markdown]
# ## 7. What RL changed in the text
# Numbers hide what the policy now writes. Three views of the same 64 test prompts and samples as
# the table of section 1 (same seed), SFT against the last WARP merge $\theta^I_{\text{slerp}}$.
#
# **Before and after**, with each completion's reward (the prompt is the same on both sides):

# %%
from IPython.display import HTML

from warp_utils.evaluate import (
    before_after_table,
    colour_tokens_html,
    judges,
    plot_token_shift,
    token_log_ratios,
    token_shift,
    words,
)

sft_eval, warp_eval = evaluations["SFT"], evaluations[f"slerp {config.I}"]
prompt_texts = [tokenizer.decode(ids) for ids in test_prompts]
pairs = before_after_table(prompt_texts, sft_eval["completions"], sft_eval["rewards"],
                           warp_eval["completions"], warp_eval["rewards"])
with pd.option_context("display.max_colwidth", 90):
    display(pairs.head(8).round(2))
print(f"reward rose on {(pairs['reward change'] > 0).mean():.0%} of the {len(pairs)} prompts; "
      f"mean change {pairs['reward change'].mean():+.2f}")

# %% [markdown]
# **The most-shifted words.** For each word seen at least 4 times in the two sets of completions,
# $\log(\text{freq}_{\text{WARP}} / \text{freq}_{\text{SFT}})$ (add-one smoothed): right, what RL made
# more frequent; left, what it suppressed. What to look for: praise words climbing would be the
# policy learning sentiment; filler words climbing, or words repeated far more often than before,
# is the policy finding what the reward model over-rewards (notebook 01's probe). The sentence
# under the chart says which of the two this run shows.

# %%
shift = token_shift(sft_eval["completions"], warp_eval["completions"], tokenize=words, min_count=4)
fig, ax = plt.subplots(figsize=(7, 6))
plot_token_shift(shift, ax, names=("WARP", "SFT"))
plt.tight_layout()
plt.show()
risers = shift.head(10)["token"].tolist()
praise = [word for word in risers if word in judges.PRAISE_WORDS]
print(f"The 10 words RL made most frequent: {', '.join(risers)}. "
      + (f"Praise words among them: {', '.join(praise)}." if praise else
         "None of them is a praise word: the reward rose through other words."))

# %% [markdown]
# **Token by token.** Completions of the WARP policy, each token coloured by
# $\log \pi_\theta(y_t \mid x, y_{<t}) - \log \pi_{\text{sft}}(y_t \mid x, y_{<t})$: green, a token
# RL made more likely; red, less likely (hover for the value). A row's values sum to its sampled KL
# estimate $\log \pi_\theta(y \mid x) - \log \pi_{\text{sft}}(y \mid x)$. These are the 8 completions of
# Exercise 1.

# %%
rows = token_log_ratios(work, policy, rollout, tokenizer, temperature=sampling.temperature)
scale = max(abs(v) for _, values in rows for v in values)
prompt_of = [tokenizer.decode(ids) for ids in test_prompts[:8]]
display(HTML("<br>".join(f"<b>{p}</b>" + colour_tokens_html(tokens, values, scale) + f" <i>(sum {sum(values):+.2f})</i>"
                         for p, (tokens, values) in zip(prompt_of, rows))))
print("largest |log ratio| of a token:", round(scale, 2))

# %% [markdown]
# ## 8. Across training seeds: the committed results
# Everything above is ONE training seed on 64 prompts: its intervals cover evaluation noise only,
# not how differently a second training run would have turned out. The committed results trained
# every run for several training seeds, evaluated 256 prompts and graded each claim across seeds:
# per seed the envelope gap over the KL range every seed's fronts share, in SFT standard
# deviations; across seeds a one-sided test in the claim's direction, Holm within each judge's
# claims. Below, each verdict is graded again from the stored per-seed numbers, for the proxy
# reward and for the held-out sentiment judge, beside this notebook's one-seed reading of the same
# claim (section 6, same verdict function). A claim the proxy supports and the held-out judge does
# not is itself a finding: the policy may have learned the proxy rather than positive reviews.

# %%
committed = committed_claims(family=None)
one_seed = {  # this notebook's claim -> the committed claim it corresponds to
    FRONT_CLAIMS[0][0]: "each WARP iteration above the previous one at equal KL",
    FRONT_CLAIMS[1][0]: "SLERP front above LERP front at equal KL",
    FRONT_CLAIMS[2][0]: f"WARP (iteration {config.I}) above both baselines at equal KL",
}
columns = ["family", "mean", "ci_low", "ci_high", "k_low", "k_high", "seeds", "seeds_for_power", "verdict", "fragile"]
side_by_side = committed.loc[[name for name in one_seed if name in committed.index], columns].copy()
side_by_side["one-seed margin (raw reward)"] = [claims.get(one_seed[name], np.nan) for name in side_by_side.index]
side_by_side["one-seed verdict"] = [one_seed_verdict(m, noise) for m in side_by_side["one-seed margin (raw reward)"]]
print(f"committed: training seeds {committed.attrs['seeds']}, {committed.attrs['num_prompts']} test prompts")
display(side_by_side.round(3))
for name, row in committed[committed["family"] != "KL"].iterrows():
    where = "" if row.k_low is None or pd.isna(row.k_low) else f" over KL {row.k_low:.2f} to {row.k_high:.2f}"
    print(f"- {name} [{row.family}]: {row.verdict} across {row.seeds} seeds (mean {row['mean']:+.3f}{where}, "
          f"interval [{row.ci_low:+.3f}, {row.ci_high:+.3f}]; {row.seeds_for_power} seeds would give 80% power "
          f"at its smallest effect of interest)")
for line in judge_disagreements(committed_results()["claims"]):
    print(line.replace("**", ""))

# %% [markdown]
# ## 9. Does the policy game the proxy?
# The reward model $r$ is the judge the policy optimises: the *proxy*. Notebook 01 built judges it
# never sees: a held-out sentiment classifier, degeneracy measures calibrated on real openings, and
# the *hacked* flag (high $r$ on degenerate text). If $r$ rises while the held-out sentiment does
# not, or while the hacked share grows, the policy has learned to please $r$ rather than to write
# positive reviews: **reward hacking**, or overoptimization (Gao et al. 2022). First this run: SFT
# against the final policy on the same 64 prompts, each difference paired prompt by prompt.

# %%
from warp_utils.evaluate import paired_difference

panel = judges.panel_for(parts, profile)
final_name = f"slerp {config.I}"
judged = {name: panel.judge(evaluations[name]["samples"], evaluations[name]["completions"],
                            evaluations[name]["rewards"]) for name in ("SFT", final_name)}


def paired(column):
    """(mean, low, high) of final - SFT on the same prompts: a 95% interval over prompts."""
    mean, half = paired_difference(judged[final_name][column].astype(float).tolist(),
                                   judged["SFT"][column].astype(float).tolist())
    return mean, mean - half, mean + half


display(pd.DataFrame({name: panel.summary(frame) for name, frame in judged.items()}).T.round(3))
print(judges.hacking_verdict(paired("proxy_reward"), paired("heldout_sentiment"), paired("hacked"),
                             subject=f"This run's final policy ({final_name})", degenerate_diff=paired("degenerate")))

# %% [markdown]
# One run on 64 prompts is a small sample. The committed results follow all three judges across
# training seeds and 256 prompts, as the policy moves away from SFT: along training (the batches of
# the steps where the KL is measured) and along the LITI front of the last iteration. As Gao et al.
# do, the horizontal axis is $\sqrt{\mathrm{KL}}$. Where the proxy keeps rising while the held-out
# sentiment turns down, or the hacked share climbs above SFT's, optimisation has turned into
# hacking; the sentences under the figure are computed from the same numbers.

# %%
from warp_utils.evaluate import committed_results, hacking_paragraph
from warp_utils.report import draw_overoptimization

committed_payload = committed_results()
draw_overoptimization(committed_payload["overoptimization"])
plt.show()
print("\n".join(hacking_paragraph(committed_payload)))

# %% [markdown]
# ## Checks
# Only what holds by construction:
# - $\eta = 0$ is $\theta_{\text{sft}}$ exactly: on every front its KL to SFT is 0 and its reward is
#   the SFT evaluation's (same prompts, same seed, same samples);
# - along the last iteration's front the KL to SFT grows with $\eta$ (up to a small tolerance,
#   5% of the largest KL, between neighbouring points: the samples change with the weights).

# %%
sft_eval = table.set_index("policy").loc["SFT"]
for name, group in curves.items():
    start = group[group.eta == 0.0].iloc[0]
    assert start.kl_to_sft < 1e-6, (name, start.kl_to_sft)
    assert abs(start.reward_mean - sft_eval.reward_mean) < 1e-6, (name, start.reward_mean, sft_eval.reward_mean)
kls = last_front["kl_to_sft"].to_numpy()
print("KL along the last front:", np.round(kls, 3))
assert all(kls[j] >= kls[j - 1] - 0.05 * kls.max() for j in range(1, len(kls)))
print(f"notebook ran in {time.perf_counter() - notebook_start:.1f} s")

# %% [markdown]
# ## Summary
#
# - Every policy is evaluated on the same seeded test prompts: reward with its 95% interval, the
#   exact KL to $\pi_{\text{sft}}$ (per-token KLs summed over the completion), distinct-2 and VADER.
# - A Pareto front is LITI from $\pi_{\text{sft}}$ towards a policy; two fronts are compared at equal KL,
#   by the mean gap between their upper envelopes over log-KL on the KL range both reach.
# - The tiny profile's differences between fronts are often within the noise; the claims are printed
#   with their margins rather than asserted.
# - What RL changed in the text: the before/after table, the most-shifted words and the coloured
#   tokens show where the reward came from, which is where reward hacking would show first.
# - Judges the policy never optimised (held-out sentiment, degeneracy, the hacked share) tell
#   whether a higher $r$ means more positive reviews or a policy that games $r$; the committed
#   results draw all three against $\sqrt{\mathrm{KL}}$ and say where hacking starts.
#
# ## Questions
#
# 1. Why is the $\eta = 0$ point of every front exactly the SFT row of the table?
# 2. Why compare fronts at equal KL rather than at $\eta = 1$?
# 3. Why is the exact per-token KL preferred to the sampled estimate $\log\pi_\theta(y) - \log\pi_{\text{sft}}(y)$?
# 4. If the reward rises and the held-out sentiment does not, what would you look at next?
#
# <details><summary>Answers</summary>
#
# 1. $\theta_0 = \theta_{\text{sft}}$, evaluated with the same prompts and seed: the same samples.
# 2. A policy further from SFT can buy reward with KL; at equal KL the comparison is about
#    efficiency, which is the paper's claim.
# 3. Both are unbiased for the KL, but the exact one sums a full KL at each position instead of one
#    sampled log-ratio, so its variance is much lower (it can never be negative either).
# 4. The hacked share and the samples themselves: a few words repeated, or text the reward model
#    over-rewards (notebook 01's probe), is reward hacking; section 9 makes that reading a number.
# </details>
#
# ## Try it
#
# - `FULL_BUDGET = True` gives the baselines WARP's whole budget: does the comparison change?
# - Change `min_count` of `token_shift` to 2 and to 10: which words are robust?
# - Colour the completions of the first iteration's merge (`result.theta_slerp[0]`) instead.

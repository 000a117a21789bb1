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
# # 06 · Hyperparameters: the EMA rate $\mu$, the learning rate and the number of runs $M$
#
# One factor at a time around the profile's default run, each study run with $I = 1$ (one
# iteration: $M$ runs of $T$ steps, SLERP, then the LITI front towards SFT):
#
# - **$\mu$**, the EMA anchor's update rate, $\theta_{\text{ema}} \leftarrow (1-\mu)\,\theta_{\text{ema}} + \mu\,\theta$,
#   in $\{0.01, 0.05, 0.1\}$ (the seed report's study). After $t$ steps the anchor still holds a
#   share $(1-\mu)^t$ of $\theta_{\text{init}}$: its horizon is about $1/\mu$ steps, so with
#   $\mu = 0.01$ and $T = 50$ the anchor stays close to $\theta_{\text{init}}$ for the whole run,
#   and the penalty $\beta \log \pi_\theta / \pi_{\text{ema}}$ behaves almost like a KL to the
#   start; a larger $\mu$ lets the anchor follow the policy, so the penalty binds less.
# - **the learning rate** of Adam: the profile's and ten times it (the seed report ran
#   $10^{-5}$ and $10^{-4}$ on the `full` profile, whose default is $10^{-5}$).
# - **$M$**, the number of runs merged by SLERP, in $\{1, 2, 3\}$; $M = 1$ is a single REINFORCE
#   run with the EMA anchor (SLERP of one model is that model).
#
# **Shared runs.** Run $m$ of iteration 1 depends on $\theta_{\text{sft}}$, the prompts, the
# reward model, the seed, $T$, $\mu$, $\beta$, the learning rate and the batch size, but not on
# $I$, $M$ or $\eta$. So the $I = 1$ run of the default config *is* iteration 1 of notebook 04's
# run, $M = 1$ is its run 1, and $M = 3$ adds one run to its two: `ensure_warp_run` copies such
# runs from the profile's other run directories instead of training them again (`runstore.run_config`).
# Everything is trained once and cached under `data/artifacts/<profile>/warp_runs/`.
#
# **You will learn to** run one-factor-at-a-time studies, compare runs with **paired** differences
# on the same prompts, check conclusions against a previous report (the seed report this course
# grew from, quoted in section 5), and recognise a run that **reward-hacks** (section 3b).
#
# **Prerequisites**: notebooks 04 (the WARP run) and 05 (fronts, distinct-2, VADER).
#
# **Time**: <!-- run -->about 1 min<!-- /run --> to run on 2 CPU cores the first time (it trains the study runs that notebook 04 did
# not), seconds once cached; 20-30 min to read.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import copy
import dataclasses
import itertools
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from transformers.utils import logging as transformers_logging

from warp_utils.execution import get_profile
from warp_utils.evaluate import envelope_gap, envelope_mean, shared_range
from warp_utils.evaluate import EvalContext, evaluate_policy, paired_difference, pareto_front
from warp_utils.evaluate import judges
from warp_utils.pipeline import ensure_warp_run, ensure_warp_runs, notebook_components, run_name
from warp_utils.evaluate import plot_front, plot_study_curves
from warp_utils.evaluate import FRONT_CLAIMS, POINT_CLAIMS, committed_claims, one_seed_verdict
from warp_utils.execution import step_printer

notebook_start = time.perf_counter()
transformers_logging.disable_progress_bar()  # dozens of cached runs load: no bar per checkpoint
profile = get_profile()
config, sampling = profile.warp, profile.sampling
print("profile:", profile.name, "| default run:", config)
parts = notebook_components(profile)
policy, tokenizer, reward_scorer, prompts = parts.policy, parts.tokenizer, parts.reward_scorer, parts.prompts
theta_sft = {k: v.detach().clone() for k, v in policy.state_dict().items()}

base = dataclasses.replace(config, I=1)  # every study run: one iteration
MUS, LRS, MS = (0.01, 0.05, 0.1), (config.lr, 10 * config.lr), (1, 2, 3)
studies = {  # study -> {value: config}
    "mu": {mu: dataclasses.replace(base, mu=mu) for mu in MUS},
    "lr": {lr: dataclasses.replace(base, lr=lr) for lr in LRS},
    "M": {M: dataclasses.replace(base, M=M) for M in MS},
}
for study, grid in studies.items():
    print(f"{study}: " + ", ".join(f"{v:g} -> warp_runs/{run_name(config, c)}" for v, c in grid.items()))

# %% [markdown]
# ## 1. Train (or load) the grid
# Configurations shared between studies (the default $\mu$, learning rate and $M$) are one run.
# The configurations are independent, so `ensure_warp_runs` trains them side by side: with
# `Execution(workers=2)` two processes each take the next configuration as soon as they are free
# (one process trains a whole configuration, with the same threads as this kernel, so its weights
# are bitwise those of a loop here; tested in `tests/test_distributed.py`). A line is printed
# every 25 steps of a run that is actually trained; copied or cached runs print nothing.

# %%
configs = list(dict.fromkeys(cfg for grid in studies.values() for cfg in grid.values()))  # each once
configs.sort(key=lambda cfg: -cfg.M * cfg.T)  # longest first: both workers stay busy to the end


progress = step_printer(base.T, names=[run_name(config, cfg) for cfg in configs])  # a line every 25 steps
started = time.perf_counter()
results = dict(zip(configs, ensure_warp_runs(profile, configs, components=parts, step_callback=progress)))
print(f"{len(configs)} configurations ready in {time.perf_counter() - started:.0f} s (any missing run "
      f"trained on up to {parts.execution.workers} processes, finished ones loaded here)")

# %% [markdown]
# ## 2. Training curves
# Reward and exact KL to SFT of the sampled batch at every step, averaged over the $M$ runs
# (rolling mean over 5 steps). These are training-batch numbers; the test set comes next.

# %%
def study_metrics(study):
    return {f"{study}={value:g}": results[cfg].metrics for value, cfg in studies[study].items()}


fig, axes = plt.subplots(2, 3, figsize=(16, 8))
for column, row in zip(["reward_mean", "kl_to_sft"], axes):
    for study, ax in zip(studies, row):
        plot_study_curves(study_metrics(study), column, ax=ax, window=5)
        ax.set_title(f"{study}: {column} during training")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Fronts and test-set statistics
# For each run, LITI from $\theta_{\text{sft}}$ towards its $\theta_{\text{slerp}}$,
# $\theta_\eta = (1-\eta)\,\theta_{\text{sft}} + \eta\,\theta_{\text{slerp}}$, evaluated on the same 64
# seeded test prompts as notebook 05 (same seed: the $\eta = 0$ point is $\pi_{\text{sft}}$ for
# every run, so it is evaluated once). The table lists each run at $\eta = 1$, with its reward
# difference to the default run on the same prompts ($\Delta$, paired: a prompt that starts a
# review badly scores low under both policies, so the paired interval is the fair yardstick).
# The small $\eta$ points matter: the larger learning rate's run moves far from SFT, and only its
# first steps of $\eta$ land at the KLs the other runs reach, where section 5 compares fronts.

# %%
EVAL_SEED, ETAS = 0, [0.1, 0.2, 0.3, 0.5, 0.8, 1.0]
test_prompts = prompts["test"].shuffle(seed=EVAL_SEED).select(range(64))["input_ids"]
evaluated = {}  # evaluate_policy's cache: each front's eta = 1 is evaluated again below, with its samples
context = EvalContext(policy, tokenizer, reward_scorer, test_prompts, sampling, seed=EVAL_SEED, cache=evaluated)
sft_row = {"eta": 0.0, **evaluate_policy(policy, dataclasses.replace(context, cache=None))}
fronts = {}  # config -> front (eta = 0 to 1)
for cfg, result in results.items():
    front = pareto_front(theta_sft, result.final, ETAS, policy, context, label=run_name(config, cfg))
    fronts[cfg] = pd.concat([pd.DataFrame([{**sft_row, "label": front.label[0]}]), front], ignore_index=True)

work = copy.deepcopy(policy)
samples, per_prompt = {}, {}  # config -> samples at eta = 1 (the same as the front's), their rewards
for cfg, result in results.items():
    work.load_state_dict(result.final)
    samples[cfg] = evaluate_policy(work, context, return_samples=True)
    per_prompt[cfg] = samples[cfg]["rewards"]
center = studies["M"][config.M]  # the default config with I = 1

# the held-out panel of notebook 01 judges every run's samples (and SFT's, on the same prompts)
panel = judges.panel_for(parts, profile)
sft_samples = evaluate_policy(policy, context, return_samples=True)
judged = {cfg: panel.judge(run["samples"], run["completions"], run["rewards"]) for cfg, run in samples.items()}
judged_sft = panel.judge(sft_samples["samples"], sft_samples["completions"], sft_samples["rewards"])


def delta(cfg_a, cfg_b):
    """Paired mean reward difference a - b on the test prompts at eta = 1, and its 95% half-width."""
    return paired_difference(per_prompt[cfg_a], per_prompt[cfg_b])


rows = []
for study, grid in studies.items():
    for value, cfg in grid.items():
        end = fronts[cfg].set_index("eta").loc[1.0]
        metrics = results[cfg].metrics
        last = metrics[metrics.step > cfg.T - 10]  # the last 10 training steps
        rows.append({"study": study, "value": value, "test reward": end.reward_mean, "±95%": end.reward_ci95,
                     "Δ vs default": delta(cfg, center)[0], "Δ ±95%": delta(cfg, center)[1],
                     "test KL": end.kl_to_sft, "KL sampled": end.kl_to_sft_sampled,
                     "distinct-2": end.distinct_2, "VADER": end.vader_compound,
                     "held-out": judged[cfg]["heldout_sentiment"].mean(), "hacked": judged[cfg]["hacked"].mean(),
                     "train reward (last 10)": last.reward_mean.mean(), "train KL (last 10)": last.kl_to_sft.mean()})
table = pd.DataFrame(rows)
print(f"SFT on the same prompts: reward {sft_row['reward_mean']:+.3f} ± {sft_row['reward_ci95']:.3f}, "
      f"distinct-2 {sft_row['distinct_2']:.3f}, VADER {sft_row['vader_compound']:+.3f}, "
      f"held-out {judged_sft['heldout_sentiment'].mean():.3f}, hacked {judged_sft['hacked'].mean():.3f}")
table.assign(value=table.value.map("{:g}".format)).round(3)  # lr values need more than 3 decimals

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
for (study, grid), ax in zip(studies.items(), axes):
    study_fronts = pd.concat([fronts[cfg].assign(label=f"{study}={value:g}") for value, cfg in grid.items()])
    plot_front(study_fronts, ax=ax, errorbars=False)
    ax.set_title(f"{study}: LITI fronts towards SFT")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3b. A reward-hacking exhibit: the larger learning rate
# Numbers alone do not say *how* a run got its reward. Below, the same test prompts completed by the
# default run and by the run with ten times its learning rate, each with its reward $r$ and the
# judges nobody optimised: VADER (a word list), the held-out sentiment and the *hacked* flag of
# notebook 01 (high $r$ on degenerate text). Praise spam can raise VADER and even the held-out
# sentiment, since both count praise words; repeated words and shrunken completions are what the
# degeneracy measures catch. The verdict under the table compares each run with SFT on the same
# prompts, judge by judge.

# %%
from warp_utils.evaluate import vader_scores

low, high = LRS
exhibit = pd.DataFrame({
    "prompt": [tokenizer.decode(ids) for ids in test_prompts[:8]],
    **{f"{label} completion": samples[studies["lr"][lr]]["completions"][:8] for label, lr in (("lr", low), ("10x lr", high))},
    **{f"r ({label})": per_prompt[studies["lr"][lr]][:8] for label, lr in (("lr", low), ("10x lr", high))},
    **{f"VADER ({label})": vader_scores(samples[studies["lr"][lr]]["samples"][:8]) for label, lr in (("lr", low), ("10x lr", high))},
    **{f"held-out ({label})": judged[studies["lr"][lr]]["heldout_sentiment"][:8].to_numpy() for label, lr in (("lr", low), ("10x lr", high))},
    **{f"hacked ({label})": judged[studies["lr"][lr]]["hacked"][:8].to_numpy() for label, lr in (("lr", low), ("10x lr", high))},
})
with pd.option_context("display.max_colwidth", 70):
    display(exhibit.round(2))
for label, lr in (("lr", low), ("10x lr", high)):
    stats = samples[studies["lr"][lr]]
    print(f"{label} ({lr:g}): mean r {stats['reward_mean']:+.2f} (SFT {sft_row['reward_mean']:+.2f}), "
          f"VADER {stats['vader_compound']:+.2f} (SFT {sft_row['vader_compound']:+.2f}), "
          f"distinct-2 {stats['distinct_2']:.2f} (SFT {sft_row['distinct_2']:.2f}), "
          f"tokens per completion {stats['response_len']:.1f} (SFT {sft_row['response_len']:.1f})")


def versus_sft(frame, column):
    """(mean, low, high) of run - SFT on the same prompts (a 95% interval over prompts)."""
    mean, half = paired_difference(frame[column].astype(float).tolist(), judged_sft[column].astype(float).tolist())
    return mean, mean - half, mean + half


for label, lr in (("lr", low), ("10x lr", high)):
    frame = judged[studies["lr"][lr]]
    print(judges.hacking_verdict(versus_sft(frame, "proxy_reward"), versus_sft(frame, "heldout_sentiment"),
                                 versus_sft(frame, "hacked"), subject=f"The {label} run ({lr:g})",
                                 degenerate_diff=versus_sft(frame, "degenerate")))

# %% [markdown]
# ## 4. Explore: sliders for $\mu$ and $\eta$
# The $\mu$ slider selects the run, the $\eta$ slider a point on its front (a marker, interpolated
# between the evaluated $\eta$); the panels redraw that run's front among the others and its
# curves. Runs are cached: nothing is trained or evaluated when a slider moves. The second panel
# does the same for any run of the grid.

# %%
labels = {f"{study}={value:g}": cfg for study, grid in studies.items() for value, cfg in grid.items()}


def draw(label="mu=0.01", eta=0.5):
    study = label.split("=")[0]
    _, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    group = {name: cfg for name, cfg in labels.items() if name.startswith(study + "=")}
    for name, cfg in group.items():
        front = fronts[cfg]
        alpha, width = (1.0, 2.2) if name == label else (0.3, 1.0)
        axes[0].plot(front.kl_to_sft, front.reward_mean, marker="o", alpha=alpha, linewidth=width, label=name)
    selected = fronts[labels[label]]
    kl, reward = np.interp(eta, selected.eta, selected.kl_to_sft), np.interp(eta, selected.eta, selected.reward_mean)
    axes[0].plot([kl], [reward], marker="*", markersize=18, color="crimson", zorder=5, label=f"η = {eta:.2f}")
    axes[0].set(xlabel="KL(π ‖ π_sft) on the test prompts", ylabel="test reward", title=f"{label}: front, η = {eta:.2f}")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    metrics = {name: results[cfg].metrics for name, cfg in group.items()}
    plot_study_curves(metrics, "reward_mean", ax=axes[1], window=5, highlight=label).set_title("training reward")
    plot_study_curves(metrics, "kl_to_sft", ax=axes[2], window=5, highlight=label).set_title("training KL to SFT")
    plt.tight_layout()
    plt.show()
    print(f"{label} at eta = {eta:.2f}: test reward ~ {reward:+.3f}, KL to SFT ~ {kl:.3f} (interpolated)")


eta_slider = {"value": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "continuous_update": False, "readout_format": ".2f"}
mu_panel = widgets.interactive(
    lambda mu, eta: draw(f"mu={mu:g}", eta),
    mu=widgets.SelectionSlider(options=list(MUS), value=config.mu, description="mu", continuous_update=False),
    eta=widgets.FloatSlider(description="eta", **eta_slider),
)
display(mu_panel)  # non-blocking: headless runs render the default state

# %%
run_panel = widgets.interactive(
    draw, label=widgets.Dropdown(options=list(labels), value=f"M={config.M:g}", description="run"),
    eta=widgets.FloatSlider(description="eta", **eta_slider),
)
display(run_panel)

# %% [markdown]
# ## 5. What came out, point by point
# The sentences below are computed from the table and the fronts above, so they stay true
# whatever this run gave. Each study is compared at the $\eta = 1$ end of its fronts, and over the
# KL range that all its fronts reach: from the largest of their first KLs above 0 to the smallest
# of their last KLs (the range is printed with each study). On that range, each front's *envelope*
# $E(k)$, the best reward among its points with KL $\le k$, is averaged over $\log k$; the value
# whose front has the largest average is named best. Reward differences come with their paired
# 95% interval: a difference inside it is within the noise of 64 prompts.
#
# Why a range and not one KL? The largest KL that every front reaches is always the last point of
# one of the fronts, so a reading at that one KL lets a single noisy point decide which front is
# above. The average uses every point measured in the range, and averaging over $\log k$ gives each
# tenfold step of KL the same weight, as the $\eta$ grid spreads its points from small KLs to
# large ones.
#
# The seed report's findings (`full` profile: GPT-2 124M, $T = 100$, $I = 2$, batch 64) and the
# paper's, for comparison:
# 1. lr $10^{-5}$: a larger $\eta$ always raised the KL but not always the reward;
# 2. lr $10^{-4}$: KL and reward both rose with $\eta$, with a higher test reward than at
#    $10^{-5}$ and a much higher KL;
# 3. a larger $\mu$ gave more KL and more reward, the gap opening at the second iteration (our
#    study runs have one iteration only, so at most the first part can show);
# 4. $\mu = 0.05$ was its best trade-off: nearly the reward of $\mu = 0.1$ at clearly lower KL;
# 5. the paper: merging more policies (larger $M$) gives a better front (higher reward at the
#    same KL), and $M = 1$ (no merge) is REINFORCE with an EMA anchor, below WARP.

# %%
by = table.set_index(["study", "value"])


def compare(study, a, b):
    mean, ci95 = delta(studies[study][a], studies[study][b])
    verdict = "beyond" if abs(mean) > ci95 else "within"
    return f"reward {study}={a:g} minus {study}={b:g}: {mean:+.3f} ± {ci95:.3f} ({verdict} the paired 95% interval)"


def rises(values):
    return all(b > a for a, b in itertools.pairwise(values))


def front_of(cfg):
    """A front as (KLs, rewards), eta = 0 (SFT) included."""
    return fronts[cfg]["kl_to_sft"].to_numpy(), fronts[cfg]["reward_mean"].to_numpy()


def range_reading(study):
    """The KL range every front of the study reaches (NaN, NaN if none), and each value's
    envelope averaged over log-KL there."""
    grid = studies[study]
    k_low, k_high = shared_range([[front_of(cfg)[0] for cfg in grid.values()]])
    return (k_low, k_high), {value: envelope_mean(front_of(cfg), k_low, k_high) for value, cfg in grid.items()}


lines = []
for lr, cfg in studies["lr"].items():  # findings 1-2: reward and KL along eta, per learning rate
    f = fronts[cfg].sort_values("eta")
    lines.append(f"lr {lr:g}: along eta {list(f.eta)}, KL {'rises' if rises(list(f.kl_to_sft)) else 'does NOT rise'} "
                 f"at every step ({', '.join(f'{v:.2f}' for v in f.kl_to_sft)}) and reward "
                 f"{'rises' if rises(list(f.reward_mean)) else 'does NOT rise'} at every step "
                 f"({', '.join(f'{v:+.2f}' for v in f.reward_mean)}).")
low, high = LRS
lines.append(f"lr {high:g} vs {low:g} at eta = 1: test reward {by.loc[('lr', high), 'test reward']:+.3f} vs "
             f"{by.loc[('lr', low), 'test reward']:+.3f}, test KL {by.loc[('lr', high), 'test KL']:.2f} vs "
             f"{by.loc[('lr', low), 'test KL']:.2f} ({by.loc[('lr', high), 'test KL'] / max(by.loc[('lr', low), 'test KL'], 1e-9):.1f}x); "
             f"{compare('lr', high, low)}; distinct-2 {by.loc[('lr', high), 'distinct-2']:.2f} vs "
             f"{by.loc[('lr', low), 'distinct-2']:.2f}.")
mu_reward, mu_kl = [by.loc[("mu", m), "test reward"] for m in MUS], [by.loc[("mu", m), "test KL"] for m in MUS]
lines.append(f"mu {MUS}: test reward {', '.join(f'{v:+.3f}' for v in mu_reward)} "
             f"({'rises' if rises(mu_reward) else 'does NOT rise'} with mu); test KL "
             f"{', '.join(f'{v:.2f}' for v in mu_kl)} ({'rises' if rises(mu_kl) else 'does NOT rise'} with mu).")
lines.append(f"mu: {compare('mu', MUS[1], MUS[0])}; {compare('mu', MUS[2], MUS[0])}; {compare('mu', MUS[2], MUS[1])}.")
lines.append(f"mu = {MUS[1]:g} vs {MUS[2]:g}: KL {mu_kl[1]:.2f} vs {mu_kl[2]:.2f}; EMA share of theta_init left after T = {base.T} steps: "
             + ", ".join(f"{(1 - m) ** base.T:.3f} (mu {m:g})" for m in MUS) + ".")
for study in ("mu", "lr", "M"):
    (k_low, k_high), means = range_reading(study)
    if np.isnan(k_low):  # one front's first point above SFT lies beyond another front's last point
        spans = ", ".join(f"{study}={value:g} from KL {fronts[cfg].kl_to_sft[fronts[cfg].kl_to_sft > 0].min():.2f} "
                          f"to {fronts[cfg].kl_to_sft.max():.2f}" for value, cfg in studies[study].items())
        lines.append(f"{study}: the fronts share no KL range ({spans}), so no value is named best over a range.")
        continue
    lines.append(f"{study}: mean reward over KL {k_low:.2f} to {k_high:.2f}: "
                 + ", ".join(f"{v:+.3f} ({study}={key:g})" for key, v in means.items())
                 + f"; best {study} = {max(means, key=means.get):g}.")
M_reward = [by.loc[("M", m), "test reward"] for m in MS]
lines.append(f"M {MS}: test reward at eta = 1 {', '.join(f'{v:+.3f}' for v in M_reward)}, test KL "
             + ", ".join(f"{by.loc[('M', m), 'test KL']:.2f}" for m in MS)
             + f"; {compare('M', MS[0], config.M)}; {compare('M', MS[2], config.M)}.")
print("\n".join(lines))

# %% [markdown]
# How to read these lines against the seed report: findings 1-2 are about the *shape* of the
# front (does reward keep rising with $\eta$ at each learning rate?) and about the larger learning
# rate buying reward with KL; findings 3-4 about $\mu$ trading KL for reward; finding 5 about
# merging. With one iteration, $T = 50$ and 64 evaluation prompts, a difference inside its paired
# interval is no evidence either way, and the "best" of a study is the largest average on one seed,
# with no interval: section 6 asks whether it holds across training seeds.

# %% [markdown]
# ## 6. Across training seeds: the committed results
# The lines above are ONE training seed on 64 prompts: their intervals cover evaluation noise
# only, not how differently a second training run would have turned out. `python -m warp_utils run
# --seeds 3 --update-docs` trained the seed report's studies for several training seeds (the $\mu$
# study with $I = 2$, so that the gap at the second iteration can show), evaluated 256 prompts and
# graded each claim across seeds; its `docs/results/results.json` is committed, and below its
# verdicts are graded again from the per-seed numbers it stores (`warp_utils.evaluate.stats`).
#
# How a claim is graded:
# - **One direction.** Each claim says which way it goes ("$M = 3$ above $M = 2$", "larger $\mu$,
#   more reward"), and its test is one-sided in that direction: *supported* when the seeds clearly
#   show the expected sign, *contradicted* when they clearly show the opposite sign, *inconclusive*
#   otherwise. The 95% interval beside it shows the size of the effect; the verdict comes from the
#   test, so an interval that just excludes 0 can still be inconclusive.
# - **One family per judge.** The proxy reward (the reward model the policy was trained on) and the
#   held-out sentiment judge (which the policy never saw) each grade the same claims. The claims of
#   one judge are graded together as one family with the Holm correction: the more claims a family
#   tests, the clearer each one must be, so that the family as a whole is wrong at most 5% of the time.
# - **Over a KL range.** A front claim is the gap between two fronts' envelopes averaged over the
#   KL range both fronts reach in every seed (the range column, as in section 5); a claim about
#   the $\eta = 1$ policies has no range.
# - **Seeds for power**: how many training seeds would detect the claim's smallest effect of
#   interest 80% of the time, given how much the seeds differed. **Fragile**: whether the verdict
#   changes on another build (the same texts scored by a second reward model, or everything
#   rebuilt); empty when no other build has the claim.
#
# A claim **supported on the proxy but not on the held-out judge** is a finding in itself: the
# policy pleased the reward it was trained on without convincing a judge it never saw, the first
# sign of reward hacking (section 3b). The line under the table lists such claims.
#
# Beside each claim, this notebook's one-seed margin where it has the same comparison: for $\mu$ and
# the learning rate, the paired difference at $\eta = 1$ (raw reward or raw held-out sentiment,
# iteration 1) with its paired 95% interval, graded by the same verdict function; for $M$, the
# envelope gap over the KL range the two fronts share here (section 5), which one seed gives no
# interval for (n/a). This notebook has no held-out front, so the held-out $M$ claims have no margin.

# %%
committed = committed_claims(family=None)
committed = committed[committed["family"].isin(["proxy", "held-out sentiment"])]


def heldout_delta(cfg_a, cfg_b):
    """Paired mean held-out sentiment difference a - b on the test prompts at eta = 1, and its 95% half-width."""
    return paired_difference(judged[cfg_a]["heldout_sentiment"].astype(float).tolist(),
                             judged[cfg_b]["heldout_sentiment"].astype(float).tolist())


def M_gap(a, b):
    """This notebook's envelope gap M = a minus M = b over the KL range the two fronts share, and that range."""
    front_a, front_b = front_of(studies["M"][a]), front_of(studies["M"][b])
    k_low, k_high = shared_range([[front_a[0], front_b[0]]])
    return envelope_gap(front_a, front_b, k_low, k_high), (k_low, k_high)


mu_pair, lr_pair = (studies["mu"][0.05], studies["mu"][0.01]), (studies["lr"][LRS[1]], studies["lr"][LRS[0]])
(gap_21, range_21), (gap_32, range_32) = M_gap(2, 1), M_gap(3, 2)
one_seed = {  # (committed claim, family) -> (this notebook's margin, its half-width or NaN)
    (POINT_CLAIMS[1][0], "proxy"): delta(*mu_pair), (POINT_CLAIMS[4][0], "proxy"): delta(*lr_pair),
    (POINT_CLAIMS[1][0], "held-out sentiment"): heldout_delta(*mu_pair),
    (POINT_CLAIMS[4][0], "held-out sentiment"): heldout_delta(*lr_pair),
    (FRONT_CLAIMS[4][0], "proxy"): (gap_21, np.nan), (FRONT_CLAIMS[5][0], "proxy"): (gap_32, np.nan),
}


def kl_range(row):
    return "" if np.isnan(row.k_low) else f"{row.k_low:.2f} to {row.k_high:.2f}"


def seeds_needed(row):
    return "n/a" if row.seeds_for_power is None or np.isnan(row.seeds_for_power) else f"{row.seeds_for_power:.0f}"


rows = []
for name, row in committed.iterrows():
    margin, half_width = one_seed.get((name, row.family), (np.nan, np.nan))
    rows.append({"family": row.family, "claim": name, "mean": row["mean"], "ci_low": row.ci_low, "ci_high": row.ci_high,
                 "KL range": kl_range(row), "seeds": row.seeds, "seeds for power": seeds_needed(row),
                 "verdict": row.verdict, "fragile": {True: "yes", False: "no"}.get(row.fragile, ""),
                 "one-seed margin": margin,
                 "one-seed verdict": "n/a" if np.isnan(half_width) else one_seed_verdict(margin, half_width)})
side_by_side = pd.DataFrame(rows).set_index(["family", "claim"])  # one block of rows per family
print(f"committed: training seeds {committed.attrs['seeds']}, {committed.attrs['num_prompts']} test prompts; "
      f"this notebook's M margins over KL {range_21[0]:.2f} to {range_21[1]:.2f} (M = 2 vs 1) and "
      f"{range_32[0]:.2f} to {range_32[1]:.2f} (M = 3 vs 2)")
display(side_by_side.round(3))
verdicts = side_by_side["verdict"]
proxy_only = [name for (family, name), v in verdicts.items()
              if family == "proxy" and v == "supported" and verdicts.get(("held-out sentiment", name)) != "supported"]
print("Supported on the proxy but not on the held-out judge: " + ("; ".join(proxy_only) if proxy_only else "none") + ".")
for name, row in committed.iterrows():
    interval = "no interval" if np.isnan(row.ci_low) else f"95% interval [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
    where = "" if np.isnan(row.k_low) else f", over KL {row.k_low:.2f} to {row.k_high:.2f}"
    print(f"- {name} ({row.family}): {row.verdict} across {row.seeds} seeds (mean {row['mean']:+.3f}, {interval}{where}; "
          f"seeds for 80% power: {seeds_needed(row)})")

# %% [markdown]
# ## Checks
# What holds by construction, whatever the numbers:
# - the $I = 1$ run of the default config is iteration 1 of the default run (same runs, same
#   SLERP): shared runs are copied bit for bit, never approximated;
# - $M = 1$: SLERP of one run is that run;
# - the first step of every run samples from $\theta_{\text{init}} = \theta_{\text{sft}}$: its KL to SFT is 0;
# - every run logged $M \cdot T$ steps;
# - the paired evaluation at $\eta = 1$ drew the same samples as the front's $\eta = 1$ point (same
#   weights, prompts and seed).

# %%
default_run = ensure_warp_run(profile, config, components=parts, progress_bars=False)  # notebook 04's run
assert all(torch.equal(center_v, default_run.theta_slerp[0][k]) for k, center_v in results[center].final.items())
single = results[studies["M"][1]]
assert all(torch.equal(single.final[k], single.theta_runs[0][0][k]) for k in theta_sft)
for cfg, result in results.items():
    assert len(result.metrics) == cfg.M * cfg.T, (run_name(config, cfg), len(result.metrics))
    assert result.metrics.query("step == 1").kl_to_sft.abs().max() < 1e-6, run_name(config, cfg)
    front_end = fronts[cfg].set_index("eta").loc[1.0, "reward_mean"]
    assert abs(np.mean(per_prompt[cfg]) - front_end) < 1e-6, (run_name(config, cfg), front_end)
print(f"{len(results)} distinct runs; notebook ran in {time.perf_counter() - notebook_start:.1f} s")

# %% [markdown]
# ## Summary
#
# - One factor at a time around the default run, with $I = 1$: $\mu$, the learning rate and $M$.
# - Runs are compared by paired reward differences on the same prompts, and on their fronts by
#   the best reward within each KL budget, averaged over the KL range every front of the study
#   reaches; a difference inside its paired 95% interval is no evidence either way.
# - Across training seeds, each judge's claims are graded as one family (one-sided tests, Holm);
#   a claim supported on the proxy but not on the held-out judge is a finding, not a success.
# - A larger learning rate buys reward with KL, and section 3b shows what that reward is made of;
#   a larger $\mu$ lets the anchor follow the policy, so the KL penalty binds less.
#
# ## Questions
#
# 1. Why does the $I = 1$ run of the default configuration not need training?
# 2. Why is a paired difference less noisy than the difference of two means?
# 3. With $\mu = 0.01$ and $T = 50$, what share of $\theta_{\text{init}}$ does the anchor still hold at
#    the end of a run?
# 4. How would you tell, without VADER, that a run is reward hacking?
#
# <details><summary>Answers</summary>
#
# 1. It is iteration 1 of notebook 04's run: same inputs, same runs (`runstore.run_config`), so they are
#    linked instead of trained.
# 2. The prompt's own difficulty is common to both policies and cancels in the per-prompt
#    difference.
# 3. $(1 - 0.01)^{50} \approx 0.61$.
# 4. Read the samples; watch distinct-2 fall and a few words dominate the token shift (notebook 05);
#    score the texts with other judges.
# </details>
#
# ## Try it
#
# - Add $\mu = 0.2$ to `MUS`: is the trend of section 5 still there?
# - Add a $\beta$ study (`"beta": {b: dataclasses.replace(base, beta=b) for b in (0.03, 0.1, 0.3)}`)
#   and compare its fronts with the exact front of the toy in notebook 03.

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
# # 07 · WARP on text you can read
#
# The tiny policy of notebooks 00-06 does not write English, before RL or after it, so its
# completions cannot show what RL does to text. Here the policy is **SmolLM2-135M-Instruct**, a
# small language model that does write English, shipped as one file inside a Python package (no
# download at run time). It is trained with WARP exactly as before (the same `rl_step`, the same
# Algorithm 1), against the same proxy reward model $r$, and then read two ways:
#
# - by $r$, which it was trained on, and by the held-out judges of notebook 01, which it never saw;
# - by the text itself: the same prompts before and after, the words and tokens RL moved.
#
# The question of the notebook: **did the policy become more positive, or did it find a hack?**
#
# **You will learn to** compare a policy with SFT on the same prompts with a paired interval, read
# the completions along a LITI front, and tell an improvement from reward hacking by a judge the
# policy never optimised.
#
# **Prerequisites**: notebooks 01 (reward model, held-out judges), 04 (WARP) and 05 (fronts, what
# RL changed in the text).
#
# **Time**: <!-- run -->about 21 min<!-- /run --> to run the first time on 2 CPU cores (it
# trains the smol run: `WARP_PROFILE=smol python -m warp_utils run --seeds 1 --workers 2` does the
# same), seconds once that run exists; 30 min to read. The outputs below come from that run. Under
# the tests (`WARP_SMOL_FIXTURE=1`) the notebook runs instead on a tiny random Llama written to the
# same kind of file, in about a minute: its "text" is random bytes, and only shows that the code
# runs.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import copy
import json

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import HTML, display

from warp_utils.core import generate, left_pad
from warp_utils.course import smol_profile, uses_fixture
from warp_utils.evaluate import (
    before_after_table,
    colour_tokens_html,
    plot_token_shift,
    token_log_ratios,
    token_shift,
    words,
)
from warp_utils.execution import step_printer
from warp_utils.pipeline import ensure_warp_run, notebook_components, warp_run_dir
from warp_utils.text_report import REPORT_FILE, finding, verdict, write_text_report

profile = smol_profile()
print("policy:", "a tiny random Llama (the tests' fixture)" if uses_fixture() else "SmolLM2-135M-Instruct")
print(profile.warp)

# %% [markdown]
# ## 1. The run and its report
# `ensure_warp_run` loads the profile's WARP run, or trains it when it is missing (the README says
# how long that takes on a laptop CPU). `write_text_report` then evaluates SFT ($\eta = 0$) and the LITI front from SFT to
# the last SLERP, $\theta_\eta = (1-\eta)\,\theta_{\text{sft}} + \eta\,\theta^I_{\text{slerp}}$, on the same 64
# held-out prompts with the same sampling seed.

# %%
parts = notebook_components(profile)
policy, tokenizer = parts.policy, parts.tokenizer
result = ensure_warp_run(profile, components=parts, step_callback=step_printer(profile.warp.T, names="WARP"))
report = write_text_report(profile, parts, result, warp_run_dir(profile, profile.warp))
payload = json.loads((report / REPORT_FILE).read_text())
front = pd.DataFrame(payload["front"])
print(f"{payload['meta']['num_prompts']} prompts, etas {front['eta'].tolist()}")

# %% [markdown]
# ## 2. Final policy against SFT, prompt by prompt
# For each prompt $x_n$, the final policy's completion and SFT's are scored by each judge, and the
# difference $d_n = s(x_n, y_n^{\text{final}}) - s(x_n, y_n^{\text{sft}})$ is averaged with a 95%
# Student-t interval over the $N$ prompts (a **paired** interval: each prompt is its own control).
# One training run, so the interval says whether *this run* moved the text, not whether another
# seed would. The verdict below is computed from these intervals.

# %%
print(verdict(report))

# %% [markdown]
# ## 3. Before and after
# The same prompts, SFT's completion and the final policy's, with each one's proxy reward $r$ and
# held-out sentiment (positive: the judge reads the text as a positive review).

# %%
values = pd.DataFrame(payload["per_prompt"])
first, last = front["eval_id"].iloc[0], front["eval_id"].iloc[-1]
before, after = (values[values["eval_id"] == e].reset_index(drop=True) for e in (first, last))
table = before_after_table(payload["prompts"], payload["completions"]["0.0"], before["proxy_reward"],
                           payload["completions"]["1.0"], after["proxy_reward"], names=("SFT", "final"))
table["held-out SFT"], table["held-out final"] = before["heldout_sentiment"], after["heldout_sentiment"]
with pd.option_context("display.max_colwidth", 80):
    display(table.head(8).round(2))

# %% [markdown]
# ## 4. The words RL moved
# $\log(\text{freq}_{\text{final}} / \text{freq}_{\text{SFT}})$ of every word seen at least 4 times
# (add-one smoothed, as in notebook 05): right, what RL made more frequent; left, what it suppressed.

# %%
shift = token_shift(payload["completions"]["0.0"], payload["completions"]["1.0"], tokenize=words, min_count=4)
fig, ax = plt.subplots(figsize=(7, 6))
plot_token_shift(shift, ax, names=("final", "SFT"))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Token by token
# New completions of the final policy, each token coloured by $\log \pi_\theta(y_t \mid x, y_{<t}) -
# \log \pi_{\text{sft}}(y_t \mid x, y_{<t})$: green, a token RL made more likely; red, less likely
# (hover for the value). A row's values sum to its sampled KL estimate.

# %%
trained = copy.deepcopy(policy)  # pi_sft's architecture, the final weights (eta = 1)
trained.load_state_dict(result.final)
prompt_ids = [tokenizer(text).input_ids for text in payload["prompts"][:6]]
ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
torch.manual_seed(0)
rollout = generate(trained, ids, mask, profile.sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
rows = token_log_ratios(trained, policy, rollout, tokenizer, temperature=profile.sampling.temperature)
scale = max(abs(v) for _, values_ in rows for v in values_)
display(HTML("<br>".join(f"<b>{p}</b>" + colour_tokens_html(tokens, vals, scale) + f" <i>(sum {sum(vals):+.2f})</i>"
                         for p, (tokens, vals) in zip(payload["prompts"], rows))))

# %% [markdown]
# ## 6. The LITI front, by both judges
# Along the front, each judge in SFT standard deviations against the KL to SFT: $r$ (trained on)
# and the held-out sentiment (never seen). Where the two part, reward is being bought with text the
# held-out judge does not find more positive.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(front["kl_to_sft"], front["reward_sd"], "o-", label="proxy reward r (trained on)")
ax.plot(front["kl_to_sft"], front["heldout_sd"], "s--", label="held-out sentiment (never seen)")
for _, row in front.iterrows():
    ax.annotate(f"η={row['eta']:g}", (row["kl_to_sft"], row["reward_sd"]), fontsize=8)
ax.set(xlabel="KL to SFT (nats)", ylabel="change in SFT sd", title="LITI front from SFT to the final policy")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. Overoptimization on readable text
# The panel's two flags along the front: the **hacked share** (completions the proxy rewards highly
# that the held-out judges do not find positive) and the **degenerate share** (repetitive, very
# short or strange text). A policy that games $r$ shows them rising with KL.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(front["kl_to_sft"], front["hacked_share"], "o-", color="tab:red", label="hacked share")
ax.plot(front["kl_to_sft"], front["degenerate_share"], "s--", color="tab:gray", label="degenerate share")
ax.set(xlabel="KL to SFT (nats)", ylabel="share of completions", ylim=(0, 1), title="The panel's flags along the front")
ax.legend()
plt.show()
print(finding(payload))

# %% [markdown]
# ## 8. One prompt along the front
# Move the slider: the completion of one prompt at each $\eta$ of the front (the same sampling seed
# everywhere, so the differences come from the weights).

# %%
etas = [f"{eta:g}" for eta in front["eta"]]
keys = [str(float(eta)) for eta in front["eta"]]
prompt_slider = widgets.IntSlider(value=0, min=0, max=len(payload["prompts"]) - 1, description="prompt")
eta_slider = widgets.SelectionSlider(options=list(zip(etas, keys)), description="η")


def show(prompt, eta):
    print(payload["prompts"][prompt] + " ▸ " + payload["completions"][eta][prompt])


widgets.interact(show, prompt=prompt_slider, eta=eta_slider);

# %% [markdown]
# ## Checks
# What holds by construction: $\eta = 0$ is SFT itself (KL 0), the paired means are the means of the
# per-prompt differences stored with the report, and the verdict's direction follows its interval.

# %%
assert front["kl_to_sft"].iloc[0] < 1e-6
for name, graded in payload["final_vs_sft"].items():
    d = after[name].to_numpy(float) - before[name].to_numpy(float)
    assert abs(graded["mean"] - d.mean()) < 1e-9, name
    assert graded["direction"] == ("up" if graded["low"] > 0 else "down" if graded["high"] < 0 else "inconclusive")

# %% [markdown]
# ## Summary
#
# - The same WARP code trains a 135M-parameter model that writes English, on a CPU.
# - A paired interval over prompts compares the final policy with SFT on the same prompts; the
#   held-out sentiment is the check on $r$.
# - The text shows what the numbers compress: which words RL made more frequent, which tokens it
#   made more likely, how one completion changes along the front.
#
# ## Questions
#
# 1. Why is a paired interval over prompts narrower than comparing the two means separately?
# 2. The proxy rises but the held-out sentiment does not: what does the text of section 3 look like?
# 3. Why does a single training run not say whether WARP beats REINFORCE here?
#
# <details><summary>Answers</summary>
#
# 1. Each prompt is its own control: the variation between prompts (some openings are negative
#    whatever follows) cancels in $d_n$.
# 2. Typically praise words or phrases the reward model over-rewards, repeated or out of place:
#    text that scores high on $r$ without reading as a more positive review.
# 3. The interval covers the prompts, not the training seeds; a comparison of methods needs
#    several seeds per method (notebooks 05 and 06).
# </details>
#
# ## Try it
#
# - Read the completions at $\eta = 0.5$ with the slider: is the text between SFT's and the final's?
# - Change `min_count` of `token_shift` to 2: which words were too rare to show?

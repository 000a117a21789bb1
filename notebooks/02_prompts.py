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
# # 02 · Prompts
#
# WARP samples completions $y \sim \pi_\theta(\cdot \mid x)$ for prompts $x$. As in the seed
# report, a prompt is **the first 10 policy tokens of an IMDB review**: an opening that the
# policy must continue as a positive review, whatever the original review's sentiment.
# Train prompts feed RL; test prompts are held out for evaluation. Reviews shorter than 10
# tokens are excluded (and counted), never padded.
#
# **You will learn to** build prompts from reviews, read them as tokens, and see **why RL is
# needed**: the SFT policy continues a negative opening negatively.
#
# **Prerequisites**: notebooks 00 (the SFT policy) and 01 (the reward model $r$).
#
# **Time**: <!-- run -->seconds<!-- /run --> to run on 2 CPU cores; 10 min to read.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import collections

import matplotlib.pyplot as plt

from warp_utils.execution import get_profile
from warp_utils.inputs import ensure_prompts, ensure_sft_policy, load_policy, load_prompts
from warp_utils.store import read_stamp

profile = get_profile()
print("profile:", profile.name)
_, tokenizer = load_policy(ensure_sft_policy(profile))  # builds the SFT policy if 00 was not run

# %%
prompts_dir = ensure_prompts(profile, tokenizer=tokenizer)
prompts = load_prompts(profile)
stamp = read_stamp(prompts_dir)
print(prompts)
print("excluded (shorter than", profile.data.prompt_tokens, "tokens):", stamp["excluded_too_short"])

# %% [markdown]
# A few prompts, as token pieces and as text:

# %%
for row in prompts["train"].select(range(5)):
    pieces = tokenizer.convert_ids_to_tokens(row["input_ids"])
    print(f"{'pos' if row['label'] else 'neg'} | {row['text']!r}\n      {pieces}")

# %% [markdown]
# ## Length statistics
# Every prompt is exactly 10 tokens, but not 10 words: BPE splits rare words into pieces.
# The character length shows how much of a review the policy gets to see.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for split in ("train", "test"):
    axes[0].hist([len(text) for text in prompts[split]["text"]], bins=40, alpha=0.6, label=split)
    axes[1].hist([len(text.split()) for text in prompts[split]["text"]], bins=range(0, 14), alpha=0.6, label=split)
axes[0].set_xlabel("characters per prompt")
axes[1].set_xlabel("words per prompt")
for axis in axes:
    axis.set_ylabel("prompts")
    axis.legend()
plt.show()

# %% [markdown]
# ## Checks
# Each prompt is exactly `prompt_tokens` policy tokens, re-encoding its text gives the same
# ids back (so the reward model and the policy see the same opening), no `<|endoftext|>`
# slipped in, and the seeded shuffle mixed the labels (the files are sorted by label).

# %%
length = profile.data.prompt_tokens
for split in ("train", "test"):
    assert all(len(ids) == length for ids in prompts[split]["input_ids"]), split
    assert tokenizer.eos_token_id not in {t for ids in prompts[split]["input_ids"][:2000] for t in ids}
    labels = collections.Counter(prompts[split]["label"][:1000])
    print(split, "labels among the first 1000:", dict(labels))
    assert 400 < labels[1] < 600, "prompts must come after a seeded shuffle, not in file order"
sample = prompts["test"].select(range(200))
round_trip = sum(tokenizer(t, add_special_tokens=False)["input_ids"] == ids for t, ids in zip(sample["text"], sample["input_ids"]))
print(f"round trip exact for {round_trip}/200 test prompts")
assert round_trip >= 190

# %% [markdown]
# ## The point: the SFT policy follows the opening's mood
# The policy is asked to continue every prompt as a *positive* review, but $\pi_{\text{sft}}$ has
# only learned to continue IMDB text: after a negative opening it writes on negatively. We sample
# one completion (the training settings) for 32 test prompts from negative reviews and 32 from
# positive ones, and score the full texts with the reward model of notebook 01.

# %%
import torch

from warp_utils.core import decode_texts, generate, left_pad
from warp_utils.evaluate import describe_comparison
from warp_utils.inputs import ensure_reward_model, load_reward_scorer

policy, _ = load_policy(ensure_sft_policy(profile))
reward_scorer = load_reward_scorer(ensure_reward_model(profile))
by_label = {}
for label, name in ((0, "negative"), (1, "positive")):
    rows = prompts["test"].filter(lambda row, label=label: row["label"] == label).select(range(32))
    ids, mask = left_pad(rows["input_ids"], tokenizer.pad_token_id)
    torch.manual_seed(profile.warp.seed)
    rollout = generate(policy, ids, mask, profile.sampling, tokenizer.eos_token_id, tokenizer.pad_token_id)
    texts = decode_texts(tokenizer, rollout)
    by_label[name] = (texts, reward_scorer(texts))
for name, (texts, rewards) in by_label.items():
    print(f"{name} openings: mean reward {rewards.mean():+.2f} ± {1.96 * rewards.std() / len(rewards) ** 0.5:.2f}")
    for text, r in list(zip(texts, rewards.tolist()))[:3]:
        print(f"   r = {r:+.2f} | {text}")
gap = (by_label["positive"][1].mean() - by_label["negative"][1].mean()).item()
noise = 1.96 * (sum(r.var() / len(r) for _, r in by_label.values()) ** 0.5).item()
print(describe_comparison("The positive openings", "mean reward", (gap, gap - noise, gap + noise),
                          reference="the negative openings"))
print("so the SFT policy " + ("follows the opening's mood: RL has to learn to turn a negative opening around."
                              if gap - noise > 0 else "does not measurably follow the opening's mood on 32 samples "
                              "per group: more samples would tell."))

# %% [markdown]
# ## Summary
#
# - A prompt is the first 10 policy tokens of a review, exactly; train prompts feed RL, test
#   prompts are held out.
# - Half of the prompts open negative reviews. Whether $\pi_{\text{sft}}$ continues them in kind is
#   measured above, as the reward gap between positive and negative openings with its 95% interval,
#   and the sentence under it says what this run shows. Either way RL against $r$ has to make the
#   completions positive whatever the opening.
#
# ## Questions
#
# 1. Why are prompts cut at 10 *tokens* of the policy, not 10 words?
# 2. Why must the prompts come after a seeded shuffle?
# 3. Why is it fine that half of the prompts open negative reviews?
#
# <details><summary>Answers</summary>
#
# 1. The policy sees tokens: a fixed token count gives every prompt the same length without padding
#    inside the prompt, and re-encoding the text gives the same ids back.
# 2. The IMDB files are sorted by label: the first prompts would all be negative.
# 3. It is the task: write positively whatever the opening. Negative openings are where the SFT
#    policy is furthest from that, so they carry most of the learning signal.
# </details>
#
# ## Try it
#
# - Compare the mean reward of the completion alone (drop the prompt from the text) for the two
#   groups: how much of the gap does the prompt itself explain?

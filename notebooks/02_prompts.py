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

# %%
import collections

import matplotlib.pyplot as plt

from warp_utils.artifacts import read_stamp
from warp_utils.config import get_profile
from warp_utils.models import ensure_sft_policy, load_policy
from warp_utils.prompts import ensure_prompts, load_prompts

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

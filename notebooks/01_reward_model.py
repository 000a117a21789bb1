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
# # 01 · The reward model $r(x, y)$
#
# WARP optimises a policy against a reward $r(x, y)$: a score of how positive the review
# "prompt $x$ + completion $y$" reads. As in the seed report, $r$ is a DistilBERT with a single
# output, trained on IMDB **preference pairs**: a positive review is *chosen*, a negative one
# is *rejected*. On `tiny` the tokenizer (cased WordPiece) and a small DistilBERT are built
# here from the config; on `full` we fine-tune `distilbert-base-cased`.
#
# **You will learn to** write the Bradley-Terry loss of a reward model and its pair accuracy, read
# a reward model's training curve, and probe a reward model for **reward hacking**: inputs it
# over-rewards, which RL will find if nothing stops it.
#
# **Prerequisites**: notebook 00 (IMDB); the logistic function $\sigma(d) = 1/(1+e^{-d})$.
#
# **Time**: about 45 s to run on a CPU, trained from scratch (measured under nbval); 20-30 min to read and
# do the 2 exercises.
#
# **Symbols**: $x$ a prompt, $y$ a completion (here a whole review, $x$ empty); $r(x, y)$ the reward
# model's score; $y_c \succ y_r$: $y_c$ (chosen) is preferred to $y_r$ (rejected); $\sigma$ the
# logistic function.

# %%
from warp_utils.environment import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
from warp_utils.config import get_profile

profile = get_profile()
print("profile:", profile.name)
print(profile.reward)

# %% [markdown]
# ## The Bradley-Terry objective
# A reward model is a preference model: the probability that $y_c$ is preferred to $y_r$ is
#
# $$p(y_c \succ y_r) = \sigma\big(r(y_c) - r(y_r)\big),$$
#
# and $r$ is fit by maximum likelihood on pairs $(y_c, y_r)$:
#
# $$\mathcal{L}(r) = -\,\mathbb{E}_{(y_c, y_r)}\Big[\log \sigma\big(r(y_c) - r(y_r)\big)\Big].$$
#
# Only differences of rewards matter: $r + c$ is the same model for any constant $c$. A model
# that cannot tell the pair apart has loss $\log 2 \approx 0.693$; that is where training starts.
# trl's `RewardTrainer` computes exactly this loss.
#
# ### Exercise 1 · the Bradley-Terry loss
# Write `bt_loss(r_chosen, r_rejected)`: both are 1-D tensors of rewards of the same pairs; return
# the mean of $-\log\sigma(r_c - r_r)$ as a 0-d tensor. The grader compares it with a float64
# closed form, including pairs whose reward gap is $\pm 1600$ (where a naive $\log\sigma$ fails).
# Until you solve it, the notebook uses the reference.

# %%
from warp_utils import exercises


def bt_loss(r_chosen, r_rejected):
    raise NotImplementedError  # your code here


bt_loss = exercises.check("bradley_terry_loss", bt_loss)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("bradley_terry_loss"))  # the solution, one click away

# %% [markdown]
# ## The pairs
# Train pairs come from the train split, held-out pairs from the test split (another seed).

# %%
import math

import matplotlib.pyplot as plt
import torch

from warp_utils.data import load_imdb, preference_pairs
from warp_utils.reward import (
    EVAL_SEED_OFFSET,
    ensure_reward_model,
    fit_texts,
    load_reward_scorer,
    read_metrics,
)

seed = profile.data.seed
imdb_train, imdb_test = load_imdb("train", profile.data), load_imdb("test", profile.data)
train_pairs = preference_pairs(imdb_train, profile.reward.num_pairs, seed)
eval_pairs = preference_pairs(imdb_test, profile.reward.num_eval_pairs, seed + EVAL_SEED_OFFSET)
print(train_pairs, eval_pairs, sep="\n")

# %%
for pair in train_pairs.select(range(2)):
    print("chosen  :", pair["chosen"][:200], "...")
    print("rejected:", pair["rejected"][:200], "...\n")

# %% [markdown]
# ## Training (built once)
# `ensure_reward_model` trains the tokenizer and the model, measures the held-out pair accuracy
# and saves everything to `data/artifacts/<profile>/reward_model/`. A second call (or a second
# run of this notebook) reuses the folder; it is rebuilt only when the config changes.

# %%
reward_dir = ensure_reward_model(profile)
metrics = read_metrics(reward_dir)
reward_scorer = load_reward_scorer(reward_dir)
tokenizer = reward_scorer.tokenizer
print(reward_dir)
print(f"{metrics['parameters']:,} parameters, vocab {len(tokenizer)}, "
      f"{metrics['num_pairs']} pairs, trained in {metrics['train_seconds']:.0f} s")

# %% [markdown]
# ## The text format and truncation
# trl's `RewardTrainer` appends an eos to each text and **drops** (does not cut) pairs longer
# than `max_length`; DistilBERT has no eos. So we name `[SEP]` as the eos, and cut each text
# ourselves at a token boundary so that `[CLS] text [SEP] [SEP]` fits `max_length`. The scorer
# uses the same format, so $r$ sees at scoring time what it saw in training.

# %%
max_length = reward_scorer.max_length
reviews = list(train_pairs["chosen"][:500])
raw_lengths = [len(ids) for ids in tokenizer(reviews, verbose=False)["input_ids"]]
too_long = sum(n > max_length for n in raw_lengths) / len(raw_lengths)
print(f"{too_long:.0%} of reviews exceed {max_length} tokens")
long_review = reviews[raw_lengths.index(max(raw_lengths))]
(fitted,) = fit_texts([long_review], tokenizer, max_length)
ids = tokenizer(fitted)["input_ids"]
print(f"{max(raw_lengths)} tokens -> {len(ids)}; the cut text ends with: ...{fitted[-80:]!r}")
print(tokenizer.convert_ids_to_tokens(ids)[:6], "...", tokenizer.convert_ids_to_tokens(ids)[-3:])
assert len(ids) <= max_length and long_review.startswith(fitted.removesuffix("[SEP]"))

# %% [markdown]
# ## The training-loss curve
# It starts at $\log 2$ (no preference) and falls as $r$ learns to separate the pairs.

# %%
history = metrics["loss_history"]
plt.figure(figsize=(6, 3))
plt.plot([p["step"] for p in history], [p["loss"] for p in history], marker=".")
plt.axhline(math.log(2), color="gray", linestyle="--", label=r"$\log 2$ (chance)")
plt.xlabel("step")
plt.ylabel(r"$-\log \sigma(r(y_c) - r(y_r))$")
plt.title("Bradley-Terry loss (train pairs)")
plt.legend()
plt.show()

# %% [markdown]
# ## Held-out pair accuracy
# The fraction of held-out pairs with $r(y_c) > r(y_r)$; 0.5 is chance. We score them again
# with the saved model, which must agree with the accuracy measured at build time.
#
# ### Exercise 2 · pair accuracy
# Write `accuracy_of(r_chosen, r_rejected)` returning that fraction as a float. Think about ties:
# what accuracy should a reward model that gives every text the same score get?

# %%
def accuracy_of(r_chosen, r_rejected):
    raise NotImplementedError  # your code here


accuracy_of = exercises.check("pair_accuracy", accuracy_of)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("pair_accuracy"))

# %%
chosen_rewards = reward_scorer(eval_pairs["chosen"])
rejected_rewards = reward_scorer(eval_pairs["rejected"])
accuracy = accuracy_of(chosen_rewards, rejected_rewards)
held_out_loss = float(bt_loss(chosen_rewards.double(), rejected_rewards.double()))
print(f"held-out pair accuracy: {accuracy:.3f} (at build time: {metrics['eval_accuracy']:.3f})")
print(f"held-out Bradley-Terry loss: {held_out_loss:.3f} (chance: log 2 = {math.log(2):.3f})")
assert held_out_loss < math.log(2)

# %%
target = {"tiny": 0.80, "full": 0.90}[profile.name]
assert abs(accuracy - metrics["eval_accuracy"]) <= 0.01, "the saved model must score as trained"
assert accuracy >= target, f"held-out pair accuracy {accuracy:.3f} < {target}"

# %% [markdown]
# ## Rewards of positive vs negative reviews
# Held-out positive reviews (the chosen side) should score higher than negative ones.

# %%
plt.figure(figsize=(6, 3))
plt.hist(chosen_rewards.numpy(), bins=40, alpha=0.6, label="positive (test)")
plt.hist(rejected_rewards.numpy(), bins=40, alpha=0.6, label="negative (test)")
plt.xlabel("reward $r(y)$")
plt.ylabel("reviews")
plt.legend()
plt.show()

# %% [markdown]
# ## Sanity checks
# The scorer takes plain strings (policy samples decoded with `skip_special_tokens=True`),
# works in batches without gradients and returns float32 rewards.

# %%
good, bad = reward_scorer(["a wonderful, moving film", "a dull, awful mess"])
print(f"r(wonderful) = {good:.2f}   r(awful) = {bad:.2f}")
assert good > bad

# %%
texts = ["I loved every minute of it.", "Terrible acting, boring plot.", eval_pairs["chosen"][0]]
batched = reward_scorer(texts)
one_by_one = torch.cat([reward_scorer([text]) for text in texts])
assert batched.dtype == torch.float32 and not batched.requires_grad
assert torch.allclose(batched, one_by_one, atol=1e-5)
assert chosen_rewards.mean() > rejected_rewards.mean()
print("reward model ready:", reward_dir)

# %% [markdown]
# ## Reward hacking: what does this judge over-reward?
# RL will maximise $r$, not "positivity". Any input the reward model scores higher than a
# genuinely positive review is a target: if the policy can produce it, it will drift there. We probe
# the model with a few hand-made inputs: repeated praise words, praise glued onto a negative review,
# praise in broken grammar, and compare them with the held-out positive reviews. (The KL term of
# notebook 03 is the defence: far-fetched texts are improbable under $\pi_{\text{sft}}$.)

# %%
negative = eval_pairs["rejected"][0][:300]
probes = {
    "praise word x 30": " ".join(["great"] * 30),
    "praise list": "great wonderful excellent superb brilliant amazing perfect best loved beautiful",
    "negative review + praise": negative + " great great great great great",
    "broken grammar praise": "film the great was great it of best the and",
    "one word": "excellent",
}
probe_rewards = reward_scorer(list(probes.values()))
median_positive = chosen_rewards.median().item()
rows = [("a held-out positive review (median reward)", median_positive)]
rows += list(zip(probes, probe_rewards.tolist()))
for name, value in rows:
    beats = (chosen_rewards < value).float().mean().item()
    print(f"r = {value:+6.2f}  above {beats:5.0%} of positive reviews | {name}")
hacks = [name for name, value in rows[1:] if value > median_positive]
print(f"\n{len(hacks)} of {len(rows) - 1} degenerate inputs out-score the median positive review"
      + (f": {', '.join(hacks)}." if hacks else "."))

# %% [markdown]
# ## Summary
#
# - A reward model is a Bradley-Terry preference model: $p(y_c \succ y_r) = \sigma(r(y_c) - r(y_r))$,
#   fit by the loss $-\log\sigma(r_c - r_r)$; only reward differences matter.
# - Held-out pair accuracy measures it; ties must count as errors (a constant model is at 0%).
# - The judge is imperfect: the probe above lists the degenerate inputs it over-rewards. RL against
#   it is **reward hacking** waiting to happen, which is why RLHF adds a KL penalty to
#   $\pi_{\text{sft}}$ (notebook 03) and why notebook 05 also scores texts with VADER, a judge we
#   never optimise.
#
# ## Questions
#
# 1. Why does adding a constant to every reward change nothing?
# 2. What is the Bradley-Terry loss of a model that outputs 0 for every text?
# 3. Why compute $-\log\sigma(d)$ with `logsigmoid` rather than `log(sigmoid(d))`?
# 4. Which probe above would you expect a policy to find first, and why might the KL term stop it?
#
# <details><summary>Answers</summary>
#
# 1. The loss and the preference probability depend on $r(y_c) - r(y_r)$ only.
# 2. $\log 2 \approx 0.693$: $\sigma(0) = 1/2$ for every pair.
# 3. For $d \ll 0$, $\sigma(d)$ underflows to 0 and its log is $-\infty$; logsigmoid computes
#    $-\log(1 + e^{-d})$ without forming $\sigma(d)$.
# 4. The ones closest to what $\pi_{\text{sft}}$ already writes (a review with a few praise words
#    appended): they cost little KL. Repeated words are improbable under $\pi_{\text{sft}}$, so
#    their KL cost is high.
# </details>
#
# ## Try it
#
# - Add your own probes: sarcasm ("great, another two hours I will never get back"), negation
#   ("not bad at all"), a positive review in the past tense vs the present.
# - Score `probes` with `vader_scores` from `warp_utils.evaluation`: does VADER fall for the same ones?

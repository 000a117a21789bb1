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
# **Time**: <!-- run -->about 1 min<!-- /run --> to run on 2 CPU cores the first time (it trains the reward model and the held-out judges);
# 20-30 min to read and do the 2 exercises.
#
# **Symbols**: $x$ a prompt, $y$ a completion (here a whole review, $x$ empty); $r(x, y)$ the reward
# model's score; $y_c \succ y_r$: $y_c$ (chosen) is preferred to $y_r$ (rejected); $\sigma$ the
# logistic function.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
from warp_utils.config import shown_path
from warp_utils.execution import get_profile

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
from warp_utils.course import exercises


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

from warp_utils.inputs import (
    EVAL_SEED_OFFSET,
    ensure_reward_model,
    fit_texts,
    load_imdb,
    load_reward_scorer,
    preference_pairs,
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
print(shown_path(reward_dir))  # relative to the data folder
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
# The fraction of held-out pairs with $r(y_c) > r(y_r)$; $0.5$ is chance. We score them again
# with the saved model, which must agree with the accuracy measured at build time.
#
# ### Exercise 2 · pair accuracy
# Write `accuracy_of(r_chosen, r_rejected)` returning that fraction as a float. Think about ties:
# a reward model that gives every text the same score has no preference at all. What accuracy
# should it get? Count a tie accordingly.

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
print("reward model ready:", shown_path(reward_dir))

# %% [markdown]
# ## Reward hacking: what does this judge over-reward?
# RL will maximise $r$, not "positivity". Any input the reward model scores higher than a
# genuinely positive review is a target: if the policy can produce it, it will drift there. We probe
# $r$ with five hand-made degenerate inputs (praise spam, one word repeated, a lone praise word, a
# negative review with praise glued on, gibberish) and set them against real review openings as
# long as what the policy will write (a 10-token prompt plus its completion).
#
# Beside $r$ stand **judges the policy never optimises** (notebook 05 grades every policy with
# them). Each catches something the others miss:
#
# - **held-out sentiment**: a different kind of classifier (word and word-pair counts, TF-IDF
#   weighted, then logistic regression) trained on IMDB's labels rather than on $r$'s pairs; it
#   gives $P(	ext{positive})$. On short texts it is weaker than $r$, so we call it held-out, not
#   gold;
# - **VADER**: a list of sentiment words with weights. It counts praise words, so praise spam fools it;
# - **degeneracy**: repeated word pairs, the share of distinct words, how well the text compresses,
#   its length in words and its share of words IMDB never uses. Each is compared with the same
#   measure on real openings: a completion is *degenerate* when it is more repetitive, less
#   diverse, shorter or stranger than nearly all real ones (the band is set so that about 5% of
#   real openings are flagged);
# - **hacked**: $r$ scores the text above the 90th percentile of real positive openings *while* it
#   is degenerate: the reward is high for the wrong reason.

# %%
from warp_utils.evaluate import judges
from warp_utils.inputs import ensure_sft_policy, load_policy

_, policy_tokenizer = load_policy(ensure_sft_policy(profile))  # the openings are cut in the policy's tokens
panel = judges.load_panel(judges.ensure_panel(profile, policy_tokenizer, reward_scorer))
probe_table = judges.profile_probe_table(profile, panel, policy_tokenizer, reward_scorer)
probe_table.round(2)

# %%
probe_rows = probe_table.iloc[:5]
positives = probe_table.loc["real positive openings"]
fooled = probe_rows.index[probe_rows["proxy_percentile"] > 90].tolist()
caught = probe_rows.index[(probe_rows["degenerate"] > 0) | (probe_rows["hacked"] > 0)].tolist()
print(f"r scores {len(fooled)} of 5 probes above 90% of real positive openings: {', '.join(fooled) or 'none'}.")
print(f"VADER rates {', '.join(probe_rows.index[probe_rows['vader'] > positives['vader']])} above the median "
      f"real positive opening ({positives['vader']:+.2f}): a word list is fooled by praise words.")
print(f"The panel flags {len(caught)} of 5 probes as degenerate or hacked ({', '.join(caught)}), "
      f"and {positives['degenerate']:.1%} of {int(positives['n'])} real positive openings.")
assert len(caught) >= 4 and positives["degenerate"] <= 0.05

# %% [markdown]
# ## Summary
#
# - A reward model is a Bradley-Terry preference model: $p(y_c \succ y_r) = \sigma(r(y_c) - r(y_r))$,
#   fit by the loss $-\log\sigma(r_c - r_r)$; only reward differences matter.
# - Held-out pair accuracy measures it; a tie counts half, as a coin flip would (a model that
#   scores every text alike is at chance, $1/2$).
# - The judge is imperfect: the probe above lists the degenerate inputs it over-rewards. RL against
#   it is **reward hacking** waiting to happen, which is why RLHF adds a KL penalty to
#   $\pi_{\text{sft}}$ (notebook 03) and why notebook 05 grades every policy with the held-out
#   panel: a sentiment classifier of another kind, VADER, and degeneracy measures calibrated on
#   real openings. No single judge suffices: VADER and the held-out classifier are fooled by praise
#   words too; the degeneracy measures are what catch the spam.
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
# 4. Look at the table: the probes $r$ scores highest are the targets, and among them the ones
#    closest to what $\pi_{\text{sft}}$ already writes cost the least KL. A word repeated thirty
#    times is improbable under $\pi_{\text{sft}}$, so its KL cost is high; a real opening with a
#    few praise words appended costs little, if $r$ rewards it (the table says whether it does).
# </details>
#
# ## Try it
#
# - Add your own probes: sarcasm ("great, another two hours I will never get back"), negation
#   ("not bad at all"), a positive review in the past tense vs the present.
# - Add a probe of your own to `judges.probe_texts(...)`'s dictionary and pass it to
#   `judges.probe_table`: can you write a text that $r$ over-rewards and the panel does not flag?

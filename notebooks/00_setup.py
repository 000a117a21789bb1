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
# # 00 · Setup: environment, profile, notation, data and the SFT policy
#
# This course reproduces **WARP** (*Weight Averaged Rewarded Policies*, Ramé et al. 2024,
# arXiv:2406.16768) on IMDB: align a GPT-2 policy to write positive movie reviews, with a
# reward model as the judge, and trace the KL-reward Pareto front.
#
# Every notebook runs on the **`tiny`** profile by default: the same architectures as the
# paper-style setup (GPT-2 policy, DistilBERT reward model), built from config and trained
# here on IMDB in minutes on a CPU. The **`full`** profile (lvwerra/gpt2-imdb,
# distilbert-base-cased, a GPU) is opt-in: `WARP_PROFILE=full`.
#
# **You will learn to** check the environment, choose a profile, load IMDB, and build and sample
# the **SFT policy** $\pi_{\text{sft}}$ (the model that supervised fine-tuning, here plain language
# modelling on IMDB reviews, produced), the starting point of RLHF.
#
# **Prerequisites**: Python, PyTorch tensors, what a language model's next-token probabilities are.
#
# **Time**: <!-- run -->about 1 min<!-- /run --> to run on 2 CPU cores the first time (it trains the SFT policy), seconds once cached; 10 min to read.
#
# ### The course map
#
# | notebook | teaches | needs |
# |---|---|---|
# | 00 setup | environment, IMDB, the SFT policy $\pi_{\text{sft}}$, the seed report | - |
# | 01 reward model | Bradley-Terry reward model $r$; probing it for reward hacking with judges the policy never sees; 2 exercises | 00 |
# | 02 prompts | prompts $x$; how $\pi_{\text{sft}}$ continues them | 00 |
# | 03 objective and front | why RLHF has a KL term, the exact optimal front on a toy, the policy gradient; 3 exercises | - |
# | 03a weight space | the EMA anchor, SLERP, LITI, when a straight line has a barrier, Algorithm 1 on the toy; 5 exercises, 3 bugs | 03 |
# | 03b appendix (optional) | SLERP's coefficients, Lemmas 1-2, Eq. 26, convexity along LITI | 03a |
# | 04 WARP training | Algorithm 1 on GPT-2: rollouts, $r_\beta$, REINFORCE, the loop; 2 exercises, 2 bugs | 00-02 |
# | 05 evaluation | test reward, KL, Pareto fronts, baselines, what RL changed in the text, does the policy game the reward model; 2 exercises | 04 |
# | 06 hyperparameters | $\mu$, learning rate, $M$: one factor at a time | 04 |
#
# Each notebook states its own run time at its top.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import platform

import matplotlib.pyplot as plt
import torch
import transformers
import trl

from warp_utils.config import artifacts_dir, shown_path
from warp_utils.execution import get_profile
from warp_utils.inputs import load_imdb, local_imdb_dir

profile = get_profile()
print("profile:", profile.name)
print(f"python {platform.python_version()} | torch {torch.__version__} | transformers "
      f"{transformers.__version__} | trl {trl.__version__}")
print("device:", "cuda" if torch.cuda.is_available() else "cpu", "| threads:", torch.get_num_threads())
print("IMDB from:", "a local folder (WARP_IMDB_DIR)" if local_imdb_dir() else f"the hub ({profile.data.hub_name})")
print("artifacts:", shown_path(artifacts_dir(profile)), "in the data folder")

# %% [markdown]
# ## Notation
# Each symbol is defined in the notebook that first uses it; the glossary at the end of this
# notebook collects them all, with where each is taught. Only three matter here: a **prompt** $x$
# (the opening of a review), a **completion** $y$ (what the model writes after it), and the
# **policy** $\pi_\theta(y \mid x)$, the language model with weights $\theta$ seen as a
# distribution over completions.

# %% [markdown]
# ## Where this course comes from: the seed report
# The course grew out of a report (written in Russian) on reproducing WARP on IMDB with GPT-2. In
# our words, its setup was:
#
# - reward model: `distilbert-base-cased`, trained with trl's `RewardTrainer` on pairs of a positive
#   review (chosen) and a negative one (rejected);
# - prompts: the first 10 tokens of each review;
# - WARP with $I = 2$, $M = 2$, $T = 100$, $\mu = 0.01$, $\eta = 0.5$, $\beta = 0.1$, batch 64, at two
#   learning rates, $10^{-5}$ and $10^{-4}$; then a study of $\mu \in \{0.01, 0.05, 0.1\}$.
#
# The `full` profile uses these settings. What the report found, in our words:
#
# | study | the report's finding |
# |---|---|
# | lr $10^{-5}$ | a larger $\eta$ always raised the KL to SFT, but not always the reward |
# | lr $10^{-4}$ | KL and reward both rose with $\eta$, a front shaped like the paper's; a higher test reward than at $10^{-5}$, at a much higher KL |
# | $\mu$ | a larger $\mu$ gave more KL and more reward, clearly so from the second iteration on |
# | $\mu = 0.05$ | the best trade-off: a reward close to $\mu = 0.1$'s at clearly lower KL |
#
# Its figures were not shared with us, so the course does not reproduce them. Notebook 06 tests
# these findings on the `tiny` profile, and the committed results grade them across training seeds.

# %% [markdown]
# ## The data: IMDB
# 25k train and 25k test reviews, half positive, half negative. The local copy is sorted
# (negatives first), so everything the course draws from it comes after a seeded shuffle.
# IMDB's `<br />` markup is stripped before anything is tokenised.

# %%
imdb_train = load_imdb("train", profile.data)
imdb_test = load_imdb("test", profile.data)
print(imdb_train, imdb_test, sep="\n")
print("positive share (train):", sum(imdb_train["label"]) / len(imdb_train))
print(imdb_train.shuffle(seed=profile.data.seed)[0]["text"][:400])

# %%
words = [len(text.split()) for text in imdb_train["text"]]
plt.figure(figsize=(6, 3))
plt.hist(words, bins=80, range=(0, 1200))
plt.xlabel("words per review")
plt.ylabel("reviews")
plt.title("IMDB train: review length")
plt.show()

# %%
assert all("<br" not in text for text in imdb_train["text"][:2000]), "markup must be stripped"
assert set(imdb_train["label"]) == {0, 1}

# %% [markdown]
# ## The SFT policy $\pi_{\text{sft}}$
# On `full`, this is `lvwerra/gpt2-imdb` (GPT-2 fine-tuned on IMDB). On `tiny` we build its
# stand-in: a byte-level BPE tokenizer and a small GPT-2 pre-trained as a causal LM on IMDB
# train reviews, `<|endoftext|>` between reviews so that the policy learns to stop:
#
# $$\mathcal{L}_{\text{LM}}(\theta) = -\sum_t \log \pi_\theta(w_t \mid w_{<t}).$$
#
# It is built once and cached under `data/artifacts/<profile>/sft_policy/` (rebuilt only
# if its config changes).

# %%
from warp_utils.inputs import ensure_sft_policy, load_policy
from warp_utils.store import read_stamp

sft_dir = ensure_sft_policy(profile)
policy, tokenizer = load_policy(sft_dir)
stamp = read_stamp(sft_dir)
print(f"{sum(p.numel() for p in policy.parameters()):,} parameters, vocab {len(tokenizer)}")
print("bos = eos = pad:", tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)

# %%
losses = stamp.get("sft_losses")
if losses:  # tiny: we trained it here, so we have its curve
    plt.figure(figsize=(6, 3))
    plt.plot(losses, alpha=0.4, label="step")
    window = 20
    smooth = [sum(losses[max(0, i - window):i + 1]) / len(losses[max(0, i - window):i + 1]) for i in range(len(losses))]
    plt.plot(smooth, label=f"mean of {window}")
    plt.xlabel("step")
    plt.ylabel("cross-entropy (nats/token)")
    plt.title(f"SFT pre-training, {stamp['sft_tokens']:,} tokens")
    plt.legend()
    plt.show()

# %% [markdown]
# Samples at the temperature WARP will use ($T=0.7$, no top-k, no top-p):

# %%
torch.manual_seed(profile.warp.seed)
openings = ["This movie was", "I have never seen", "The acting in this film"]
batch = tokenizer(openings, return_tensors="pt", padding=True)
with torch.no_grad():
    samples = policy.generate(**batch, do_sample=True, max_new_tokens=profile.sampling.max_new_tokens,
                              temperature=profile.sampling.temperature, top_k=0, top_p=1.0,
                              pad_token_id=tokenizer.pad_token_id)
for text in tokenizer.batch_decode(samples, skip_special_tokens=True):
    print("-", text)

# %% [markdown]
# ## Checks
# - the policy is in eval mode: dropout would make $\mathrm{KL}(\pi \| \pi) \ne 0$;
# - `<|endoftext|>` is bos = eos = pad, so masks must come from attention masks, never from
#   `ids != pad_id`;
# - pre-training lowered the loss well below the uniform baseline $\log |V|$.

# %%
import math

assert not policy.training
assert tokenizer.eos_token_id == tokenizer.pad_token_id == tokenizer.bos_token_id
if losses:
    final = sum(losses[-20:]) / 20
    print(f"final loss {final:.2f} nats vs uniform {math.log(len(tokenizer)):.2f}")
    assert final < math.log(len(tokenizer)) - 2.0

# %% [markdown]
# ## Summary
#
# - The `tiny` profile builds everything here on a CPU; `full` is the paper-sized setup.
# - IMDB gives 25k train / 25k test reviews; the SFT policy is a small GPT-2 trained on them, and it
#   writes IMDB-flavoured, loosely grammatical text.
# - `<|endoftext|>` is bos = eos = pad: masks come from attention masks, never from `ids != pad_id`.
#
# ## Questions
#
# 1. Why must the policy be in eval mode when we compare it with itself?
# 2. What loss would a model that knows nothing about text have, and why is it $\log |V|$?
# 3. Why can a mask not be built from `ids != pad_id` here?
#
# <details><summary>Answers</summary>
#
# 1. Dropout samples a different sub-network at each call: two calls of the same model would give
#    different distributions, and $\mathrm{KL}(\pi \| \pi) \neq 0$.
# 2. The uniform distribution over the vocabulary $V$ gives every token probability $1/|V|$: the
#    cross-entropy is $-\log(1/|V|) = \log |V|$.
# 3. The end-of-text token is also the pad token: such a mask would drop the real EOS of every
#    completion (and keep nothing else wrong only by luck).
# </details>
#
# ## Try it
#
# - Sample with `temperature=1.0` and `temperature=0.3`: which is more grammatical, which more varied?
# - Change the openings to negative ones ("This was the worst"): how does $\pi_{\text{sft}}$ continue?
#
# ## Glossary
#
# | symbol | code | meaning | taught in |
# |---|---|---|---|
# | $x$, $y$ | `prompts`, `completions` | a prompt (10-token review opening); a sampled continuation | 00, 02 |
# | $\pi_\theta$, $\theta$ | `policy` | the policy (a language model) and its weights | 00 |
# | $\pi_{\text{sft}}$, $\theta_{\text{sft}}$ | `theta_sft` | the supervised (SFT) policy RL starts from | 00 |
# | $r(x, y)$ | `reward_scorer` | reward model: score of prompt $x$ + completion $y$ | 01 |
# | $\sigma$ | | the logistic function $1/(1+e^{-d})$ | 01 |
# | $\mathrm{KL}(p \,\|\, q)$ | `kl_to_sft` | $\sum_y p(y)\log(p(y)/q(y))$; the Pareto front's $x$ axis | 03 |
# | $\beta$ | `beta` | weight of the KL penalty | 03 |
# | $\pi^*_\beta$ | `toy.optimal_policy` | the optimum $\propto \pi_{\text{sft}}\, e^{r/\beta}$ | 03 |
# | $\theta_{\text{ema}}$, $\mu$ | `theta_ema`, `mu` | EMA anchor of the KL penalty and its update rate | 03 |
# | $\theta_{\text{init}}$ | `theta_init` | where the $M$ runs of an iteration start | 03 |
# | $\theta^m$ | `theta_runs[i][m]` | weights of RL run $m$ | 03, 04 |
# | $\delta^m = \theta^m - \theta_{\text{init}}$ | `task_vector` | task vector of run $m$ | 03 |
# | $\lambda$, $\Omega$ | `lam`, `omega` | SLERP weight; angle between task vectors | 03 |
# | $\theta_{\text{slerp}}$ | `theta_slerp` | SLERP merge of the $M$ runs | 03 |
# | EMA, SLERP, LITI | `weights.ema`, `slerp`, `liti` | exponential moving average; spherical linear interpolation; linear interpolation towards initialisation | 03 |
# | $\eta$ | `eta` | LITI step: $\theta_{\text{init}} \leftarrow (1-\eta)\,\theta_{\text{init}} + \eta\,\theta_{\text{slerp}}$ | 03 |
# | $I$, $M$, $T$ | `I`, `M`, `T` | WARP iterations, RL runs per iteration, steps per run | 04 |
# | $r_\beta$ | `r_beta` | $r(x, y) - \beta \log \frac{\pi_{\theta^m}(y \mid x)}{\pi_{\theta^m_{\text{ema}}}(y \mid x)}$ | 03, 04 |
# | $b$ | `baseline` | REINFORCE baseline subtracted from $r_\beta$ | 04 |
# | distinct-$n$ | `distinct_2` | unique $n$-grams / all $n$-grams of the completions (diversity) | 05 |
# | VADER | `vader_compound` | a lexicon sentiment score in $[-1, 1]$, a judge never optimised; a word list, so praise words fool it | 01, 05 |
# | proxy reward | `reward_scorer` | the reward model the policy optimises: a stand-in for what we want, so it can be gamed | 01, 05 |
# | held-out sentiment | `judges.HeldOutSentiment` | $P(\text{positive})$ from a classifier of another kind (word counts and logistic regression) trained on IMDB's labels; the policy never sees it | 01, 05 |
# | degenerate | `judges.DegeneracyBand` | a completion more repetitive, less diverse, shorter or stranger than nearly all real review openings of its length | 01, 05 |
# | hacked share | `hacked_share` | the share of completions the proxy scores above the 90th percentile of real positive openings while they are degenerate | 01, 05 |
# | reward hacking | | the policy raises the proxy reward without getting better by judges it never saw | 01, 05 |
# | on-policy, off-policy | | samples drawn from the policy being trained, or from another distribution; REINFORCE needs the former | 04 |
# | one-sided test | | a test of a claim with a direction ("A above B"): only a difference on the claimed side counts as evidence | 05 |
# | Holm | `stats.holm_reject` | a correction for testing several claims at once: the smallest $p$ must pass $\alpha/k$, the next $\alpha/(k-1)$, ...; it keeps the chance of any false claim below $\alpha$; the course corrects each judge's claims together (one family per judge) | 05, 06 |
# | seeds for power | `seeds_for_power` | how many training seeds a claim's test would need to detect a given true difference with 80% probability | 05, 06 |
# | bootstrap | | resampling the data (seeds, prompts) with replacement to see how much a statistic would move on another draw | 05 |

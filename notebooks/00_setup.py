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

# %%
import platform

import matplotlib.pyplot as plt
import torch
import transformers
import trl

from warp_utils.config import artifacts_dir, get_profile
from warp_utils.data import load_imdb, local_imdb_dir

profile = get_profile()
print("profile:", profile.name)
print(f"python {platform.python_version()} | torch {torch.__version__} | transformers "
      f"{transformers.__version__} | trl {trl.__version__}")
print("device:", "cuda" if torch.cuda.is_available() else "cpu", "| threads:", torch.get_num_threads())
print("IMDB from:", local_imdb_dir() or f"the hub ({profile.data.hub_name})")
print("artifacts:", artifacts_dir(profile))

# %% [markdown]
# ## Notation
# Every later notebook uses these names; the left column is the paper's symbol.
#
# | paper | code | meaning |
# |---|---|---|
# | $\pi_{\text{sft}}$, $\theta_{\text{sft}}$ | `theta_sft` | the supervised policy we start from |
# | $r(x, y)$ | `reward_scorer` | reward model: score of prompt $x$ + completion $y$ |
# | $x$, $y$ | `prompts`, `completions` | 10-token review openings; sampled continuations |
# | $I$, $M$, $T$ | `I`, `M`, `T` | WARP iterations, RL runs per iteration, steps per run |
# | $\theta^m$ | `theta_runs[i][m]` | weights of RL run $m$ |
# | $\theta^m_{\text{ema}}$, $\mu$ | `theta_ema`, `mu` | EMA anchor and its update rate |
# | $\beta$ | `beta` | weight of the KL-to-anchor penalty |
# | $r_\beta$ | `r_beta` | $r(x, y) - \beta \log \frac{\pi_{\theta^m}(y \mid x)}{\pi_{\theta^m_{\text{ema}}}(y \mid x)}$ |
# | $\delta^m = \theta^m - \theta_{\text{init}}$ | `task_vectors` | task vector of run $m$ |
# | $\lambda$, $\Omega$ | `lam`, `omega` | SLERP weight and angle between task vectors |
# | $\theta_{\text{slerp}}$ | `theta_slerp` | SLERP merge of the $M$ runs |
# | $\eta$ | `eta` | LITI step: $\theta_{\text{init}} \leftarrow (1-\eta)\,\theta_{\text{init}} + \eta\,\theta_{\text{slerp}}$ |
# | $\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}})$ | `kl_to_sft` | what the Pareto front plots on $x$ |

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
from warp_utils.artifacts import read_stamp
from warp_utils.models import ensure_sft_policy, load_policy

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
    plt.title(f"SFT pre-training, {stamp['sft_tokens']:,} tokens in {stamp['seconds']:.0f} s")
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

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
# # 03 · The KL-regularised objective, its optimal front, and the policy gradient
#
# **You will learn to**
# - state the RLHF objective $\mathbb{E}[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}})$, say why
#   the KL term is there (reward hacking), and derive its closed-form optimum;
# - compute the **exact** optimal KL-reward front of a toy problem, and check that no policy beats it;
# - derive the policy gradient $\nabla\mathbb{E}[r] = \mathbb{E}[r\,\nabla\log\pi]$, estimate it from
#   samples (REINFORCE), and measure what a baseline does to its variance.
#
# **Prerequisites**: softmax and log-probabilities, the KL divergence, gradients; notebooks 00-02
# (what $\pi_{\text{sft}}$, $r$ and the prompts are). No model is loaded here.
#
# **Time**: <!-- run -->seconds<!-- /run --> to run on 2 CPU cores; 30-45 min to read and do the 3 exercises.
# Notebook 03a builds WARP's weight-space operations on the same toy problem.
#
# **Symbols introduced here** (all collected in the glossary of notebook 00):
#
# | symbol | meaning |
# |---|---|
# | $x$, $y$ | a prompt; a completion (here: one token of $K$) |
# | $\pi_\theta(y \mid x)$ | the policy: a distribution over completions, with weights $\theta$ |
# | $\pi_{\text{sft}}$ | the policy after supervised fine-tuning (SFT): where RL starts |
# | $r(x, y)$ | the reward model's score |
# | $\beta$ | the weight of the KL penalty |
# | $\pi^*_\beta$ | the best policy for a given $\beta$ |
# | $z$, $e_y$ | a prompt's logits, $\pi = \operatorname{softmax}(z)$; the one-hot vector of token $y$ |
# | $b$ | a baseline subtracted from the reward in the policy gradient |
#
# Acronyms: **SFT** supervised fine-tuning, **RLHF** reinforcement learning from human feedback,
# **REINFORCE** the score-function policy gradient (Williams, 1992).

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch

from warp_utils.execution import get_profile
from warp_utils.core import lerp
from warp_utils.course import exercises, toy

print("profile:", get_profile().name)
torch.manual_seed(0)
torch.set_num_threads(1)  # tensors here are tiny: extra threads only add synchronisation
notebook_start = time.perf_counter()

# %% [markdown]
# ## 0. Why: RLHF, the KL term, and the best policy there is
#
# **RLHF** aligns a language model in three stages:
#
# 1. **SFT**: supervised fine-tuning on demonstrations gives a policy $\pi_{\text{sft}}$ that writes
#    plausible text (notebook 00: our GPT-2 trained on IMDB reviews);
# 2. **reward model**: a network $r(x, y)$ trained on human preference pairs scores how good a
#    completion $y$ of a prompt $x$ is (notebook 01: "how positive is this review");
# 3. **RL**: the policy is fine-tuned to raise $r$ by **policy gradient** (section 2 below derives
#    it; notebook 04 runs it on GPT-2).

# %%
fig, ax = plt.subplots(figsize=(11, 2.6))
boxes = {  # name: (x, y, text)
    "data": (0.0, 0.55, "IMDB text\n(demonstrations)"),
    "sft": (2.3, 0.55, "SFT policy\n$\\pi_{sft}$"),
    "pairs": (0.0, -0.55, "preference pairs\n$y_c \\succ y_r$"),
    "rm": (2.3, -0.55, "reward model\n$r(x, y)$"),
    "rl": (4.9, 0.0, "RL: maximise\n$E[r] - \\beta\\,KL(\\pi\\,\\|\\,\\pi_{sft})$"),
    "warp": (7.9, 0.0, "WARP: EMA anchor,\nSLERP of M runs, LITI"),
}
for x, y, text in boxes.values():
    ax.add_patch(FancyBboxPatch((x, y - 0.3), 1.9, 0.6, boxstyle="round,pad=0.05", fc="#e8f0fb", ec="k"))
    ax.text(x + 0.95, y, text, ha="center", va="center", fontsize=9)
for (a, b) in (("data", "sft"), ("pairs", "rm"), ("sft", "rl"), ("rm", "rl"), ("rl", "warp")):
    (xa, ya, _), (xb, yb, _) = boxes[a], boxes[b]
    ax.annotate("", (xb - 0.05, yb), (xa + 1.95, ya), arrowprops={"arrowstyle": "->", "lw": 1.4})
for x, y, where in ((3.0, 1.05, "notebook 00"), (3.0, -1.05, "notebook 01"), (5.3, 0.45, "notebooks 03, 04"),
                    (8.4, 0.45, "notebooks 03a-05")):
    ax.text(x, y, where, fontsize=8, color="gray")
ax.set(xlim=(-0.2, 10.0), ylim=(-1.2, 1.2), title="The RLHF pipeline, and where WARP sits")
ax.axis("off")
plt.show()

# %% [markdown]
# ### The objective, and why it has a KL term
#
# Maximising $\mathbb{E}_{x, y \sim \pi}[r(x, y)]$ alone is a trap: $r$ is a learned, imperfect
# judge, and a policy pushed hard against it finds the inputs it over-rewards (repeated praise
# words, degenerate text) instead of writing better reviews. This is **reward hacking**
# (notebook 01 probes our own reward model for it; notebook 06 shows a run that collapses). RLHF
# therefore keeps the policy close to $\pi_{\text{sft}}$, which still writes natural text:
#
# $$J_\beta(\pi) = \mathbb{E}_{x}\Big[\mathbb{E}_{y \sim \pi(\cdot \mid x)}\, r(x, y)
#   - \beta\, \mathrm{KL}\big(\pi(\cdot \mid x) \,\|\, \pi_{\text{sft}}(\cdot \mid x)\big)\Big],
# \qquad \mathrm{KL}(p \,\|\, q) = \sum_y p(y) \log \frac{p(y)}{q(y)} \ge 0 .$$
#
# Small $\beta$: more reward, further from SFT; large $\beta$: the reverse. Every $\beta$ gives one
# trade-off; together they form the **KL-reward Pareto front**, the curve every later notebook plots.
#
# **The closed-form optimum.** For each $x$, $J_\beta$ is maximised over all distributions by
#
# $$\pi^*_\beta(y \mid x) = \frac{\pi_{\text{sft}}(y \mid x)\, e^{r(x, y)/\beta}}{Z_\beta(x)}, \qquad
# Z_\beta(x) = \sum_y \pi_{\text{sft}}(y \mid x)\, e^{r(x, y)/\beta}.$$
#
# Proof in one line: substituting $r = \beta \log(\pi^*_\beta Z_\beta / \pi_{\text{sft}})$ gives
# $J_\beta(\pi) = \beta\,\mathbb{E}_x \log Z_\beta(x) - \beta\,\mathbb{E}_x \mathrm{KL}(\pi \,\|\, \pi^*_\beta)$,
# largest when the last KL is 0. So RLHF re-weights the SFT policy by $e^{r/\beta}$: it can only
# move mass to completions $\pi_{\text{sft}}$ already gives some probability. A language model
# cannot compute $Z_\beta$ (a sum over all texts), hence RL; a toy can.
#
# ### The toy bandit
#
# `warp_utils.course.toy` is a language model you can solve exactly: $P = 16$ prompts, each answered by
# **one token** $y$ of $K = 8$; the reward is a fixed table $r(x, y) \sim U[0, 1]$; the policy is
# $\pi_\theta(y \mid x) = \operatorname{softmax}(\texttt{table}[x] + \texttt{bias})_y$, a state dict
# with two tensors like a tiny network. Expected rewards and KLs are exact sums over the table.

# %%
theta_sft, reward = toy.make_bandit()  # 16 prompts x 8 tokens, float64
pi_sft = toy.probs(theta_sft)
print("pi_sft(. | x=0):", np.round(pi_sft[0].numpy(), 3))
print("r(x=0, .):      ", np.round(reward[0].numpy(), 3))
print(f"E[r] under pi_sft: {toy.expected_reward(theta_sft, reward):.4f}; "
      f"best possible (argmax per prompt): {reward.max(-1).values.mean():.4f}")

# %% [markdown]
# ### Exercise 1 · the objective $J_\beta$, exactly
# Write `objective(pi, pi_sft, reward, beta)`: `pi` and `pi_sft` are $(P, K)$ tables of
# probabilities (rows sum to 1), `reward` a $(P, K)$ table; return $J_\beta(\pi)$ above as a float,
# the mean over prompts. Two cases need care, and the grader tries both:
# - a token with $\pi(y \mid x) = 0$ adds nothing ($0 \log 0 = 0$), but in floating point
#   `0 * log(0)` is `0 * -inf = nan`;
# - a token with $\pi(y \mid x) > 0$ where $\pi_{\text{sft}}(y \mid x) = 0$ makes the KL infinite:
#   $J_\beta = -\infty$.
#
# Until you solve it, the notebook uses the reference.

# %%
def objective(pi, pi_sft, reward, beta):
    raise NotImplementedError  # your code here


objective = exercises.check("objective", objective)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("objective"))  # the solution, one click away

# %% [markdown]
# ### Exercise 2 · the optimal policy $\pi^*_\beta$
# Write `optimal_policy(pi_sft, reward, beta)` returning the $(P, K)$ table of $\pi^*_\beta$. Careful:
# the grader tries $\beta = 10^{-3}$, where $e^{r/\beta}$ overflows float64.

# %%
def optimal_policy(pi_sft, reward, beta):
    raise NotImplementedError  # your code here


optimal_policy = exercises.check("optimal_policy", optimal_policy)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("optimal_policy"))

# %% [markdown]
# Check the claim numerically: $J_\beta(\pi^*_\beta) = \beta\,\mathbb{E}_x \log Z_\beta(x)$
# (`toy.optimal_value`), and any other policy loses exactly $\beta\,\mathrm{KL}(\pi \,\|\, \pi^*_\beta)$.
# The KL itself is the objective with no reward and $\beta = 1$, up to its sign.

# %%
beta = 0.1
pi_star = optimal_policy(pi_sft, reward, beta)


def kl(p, q):  # the KL is the objective with no reward and beta = 1, up to its sign
    return -objective(p, q, torch.zeros_like(reward), 1.0)


print(f"J(pi*) = {objective(pi_star, pi_sft, reward, beta):.6f}   "
      f"beta E log Z = {toy.optimal_value(theta_sft, reward, beta):.6f}")
assert abs(objective(pi_star, pi_sft, reward, beta) - toy.optimal_value(theta_sft, reward, beta)) < 1e-10
other = torch.softmax(torch.randn(16, 8, dtype=torch.float64), -1)
loss = objective(pi_star, pi_sft, reward, beta) - objective(other, pi_sft, reward, beta)
assert abs(loss - beta * kl(other, pi_star)) < 1e-10
greedy = torch.nn.functional.one_hot(reward.argmax(-1), 8).double()  # all mass on the best token
holed = pi_sft.clone()
holed[0, reward[0].argmax()] = 0.0  # an SFT policy that never writes prompt 0's best token
holed /= holed.sum(-1, keepdim=True)
print(f"greedy policy: KL to pi_sft {kl(greedy, pi_sft):.4f}; to an SFT policy without that token "
      f"{kl(greedy, holed)}, so J = {objective(greedy, holed, reward, beta)}")
assert objective(greedy, holed, reward, beta) == -float("inf")

# %% [markdown]
# Then the **exact front**: sweep $\beta$, plot $(\mathrm{KL}(\pi^*_\beta \| \pi_{\text{sft}}),
# \mathbb{E}_{\pi^*_\beta}[r])$. No policy can lie above it.

# %%
betas = np.logspace(-2.5, 1.5, 60)
front_kls, front_rewards = toy.optimal_front(theta_sft, reward, betas)
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(front_kls, front_rewards, "k", lw=2, label="exact optimal front ($\\pi^*_\\beta$)")
for b in (0.03, 0.1, 0.3, 1.0):
    k, r = toy.optimal_front(theta_sft, reward, [b])
    ax.plot(k, r, "ko", ms=4)
    ax.annotate(f"$\\beta$={b}", (k[0], r[0]), textcoords="offset points", xytext=(6, -10), fontsize=8)
ax.axhline(float(reward.max(-1).values.mean()), color="gray", ls=":", lw=1, label="max reward (greedy)")
ax.set(xlabel="KL($\\pi$ || $\\pi_{sft}$)", ylabel="E[r]", title="The best reward for each KL budget")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 1. Under the front: what training reaches
#
# The front is a ceiling for every method. Below, for each trained policy $\theta$, the segment
# from SFT, $(1-\eta)\,\theta_{\text{sft}} + \eta\,\theta$: REINFORCE with the SFT anchor trained for
# 300 steps, and WARP's three iterations (notebook 03a builds it piece by piece), with SLERP and with
# LERP merges. The assert checks that **no policy of any method lies above the front** (up to
# $10^{-9}$), against the exact constrained optimum `toy.optimal_reward_at_kl` at each policy's KL.

# %%
warp_history = toy.warp(theta_sft, reward)  # I=3, M=2, T=50: 300 steps in all
reinforce = toy.rl_run(theta_sft, reward, toy.ToyConfig(T=300, mu=0.0, beta=0.1, lr=4.0, batch_size=8), torch.Generator().manual_seed(0))[0]
curves = {f"WARP iteration {i + 1}": record["theta_merged"] for i, record in enumerate(warp_history)}
curves["WARP with LERP, iteration 3"] = toy.warp(theta_sft, reward, merge=lerp)[-1]["theta_merged"]
curves["REINFORCE, SFT anchor"] = reinforce
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(front_kls, front_rewards, "k", lw=2.5, label="exact optimal front")
for name, theta in curves.items():
    kls, rewards = toy.liti_path(theta_sft, theta, np.linspace(0, 1, 11), reward, theta_sft)
    ax.plot(kls, rewards, ".-", label=name)
    assert all(r <= toy.optimal_reward_at_kl(theta_sft, reward, k) + 1e-9 for k, r in zip(kls, rewards))
ax.set(xlabel="KL($\\pi$ || $\\pi_{sft}$)", ylabel="E[r]", title="Toy fronts under the exact optimum",
       xlim=(0, 1.05 * max(toy.kl(t, theta_sft) for t in curves.values())))
ax.legend(fontsize=8)
plt.show()
print(f"{11 * len(curves)} policies checked, none above the exact front. Reward missing at equal KL:")
for name, theta in curves.items():
    gap = toy.optimal_reward_at_kl(theta_sft, reward, toy.kl(theta, theta_sft)) - toy.expected_reward(theta, reward)
    print(f"  {name:28} {gap:.4f}")

# %% [markdown]
# ## 2. The policy gradient
#
# RL cannot compute $\pi^*_\beta$ for a language model, so it climbs $J_\beta$ by gradient ascent
# on the weights, with samples only. Take one prompt and the reward alone (the KL term is handled
# the same way, notebook 04). With $\nabla \pi = \pi\,\nabla \log \pi$ (the **log-derivative trick**):
#
# $$\nabla_\theta\, \mathbb{E}_{y \sim \pi_\theta}[r(y)] = \sum_y r(y)\, \nabla_\theta \pi_\theta(y)
#  = \sum_y \pi_\theta(y)\, r(y)\, \nabla_\theta \log \pi_\theta(y)
#  = \mathbb{E}_{y \sim \pi_\theta}\big[r(y)\, \nabla_\theta \log \pi_\theta(y)\big].$$
#
# The right side is an expectation under the policy, so samples $y_1, \dots, y_N \sim \pi_\theta$
# estimate it: $\hat g = \frac1N \sum_i r(y_i)\, \nabla_\theta \log \pi_\theta(y_i)$. This is
# **REINFORCE**. It never differentiates $r$: the reward model can be a black box.
#
# **A baseline.** $\mathbb{E}_y[\nabla \log \pi_\theta(y)] = \sum_y \nabla \pi_\theta(y) = \nabla 1 = 0$,
# so subtracting from $r(y_i)$ any $b_i$ that does not depend on $y_i$ leaves $\hat g$ unbiased:
# $\hat g = \frac1N \sum_i (r(y_i) - b_i)\, \nabla \log \pi_\theta(y_i)$. The mean reward of the
# **other** samples, $b_i = \frac{1}{N-1}\sum_{j \ne i} r(y_j)$, is such a baseline; the batch mean
# with $r(y_i)$ in it is not (it shrinks the gradient by $1 - 1/N$ on average). A baseline near the
# average reward makes better-than-usual samples go up and worse ones go down, instead of pushing
# every sample up by a noisy amount: less variance.
#
# **For softmax logits** $z$ (on the toy $z = \texttt{table}[x] + \texttt{bias}$):
# $\nabla_z \log \operatorname{softmax}(z)_y = e_y - \pi$, and the exact gradient is
# $\nabla_z \mathbb{E}_\pi[r] = \pi \odot (r - \mathbb{E}_\pi[r])$.
#
# ### Exercise 3 · a REINFORCE estimate
# Write `reinforce_gradient(logits, reward, actions, baseline)` for one prompt: `logits` and
# `reward` are $(K,)$ tensors, `actions` a $(N,)$ tensor of tokens sampled from
# $\operatorname{softmax}(z)$; return the $(K,)$ estimate $\hat g$ with the leave-one-out baseline
# when `baseline` is True, with $b_i = 0$ otherwise. The grader averages 4,000 of your estimates on
# fresh batches and compares the mean with the exact gradient: a wrong sign, a wrong
# $\nabla \log \pi$ or a biased baseline lands outside its tolerance.

# %%
def reinforce_gradient(logits, reward, actions, baseline):
    raise NotImplementedError  # your code here


reinforce_gradient = exercises.check("policy_gradient", reinforce_gradient)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("policy_gradient"))

# %% [markdown]
# Now measure what the baseline buys, on prompt 0 of the toy: 3,000 batches of $N = 8$ samples,
# each turned into an estimate with and without the baseline. Both means approach the exact
# gradient; the spread around it is what differs (total variance: the sum over the $K$ logits).

# %%
z, r = toy.logits(theta_sft)[0], reward[0]
exact = torch.softmax(z, -1) * (r - (torch.softmax(z, -1) * r).sum())
gen = torch.Generator().manual_seed(0)
batches = torch.multinomial(torch.softmax(z, -1), 3000 * 8, replacement=True, generator=gen).view(3000, 8)
variance = {}
for baseline in (False, True):
    estimates = torch.stack([torch.as_tensor(reinforce_gradient(z, r, a, baseline)) for a in batches])
    variance[baseline] = float(estimates.var(0).sum())
    error = float((estimates.mean(0) - exact).abs().max())
    print(f"baseline {baseline!s:5}: largest error of the mean {error:.4f}, total variance {variance[baseline]:.5f}")
print(f"the baseline divides the variance by {variance[False] / variance[True]:.1f}; "
      f"the mean reward it removes is {float((torch.softmax(z, -1) * r).sum()):.2f}")
assert variance[True] < variance[False]

# %% [markdown]
# ## Summary
#
# - RLHF maximises $\mathbb{E}[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}})$; the KL term
#   keeps the policy where the reward model can be trusted (against reward hacking). The optimum is
#   $\pi^*_\beta \propto \pi_{\text{sft}}\, e^{r/\beta}$, and it gives nothing to completions
#   $\pi_{\text{sft}}$ excludes (their KL is infinite).
# - Sweeping $\beta$ traces the best possible KL-reward front, computed exactly on the toy; no
#   REINFORCE or WARP policy crosses it.
# - The policy gradient is $\mathbb{E}[r\,\nabla\log\pi]$: samples estimate it without
#   differentiating $r$ (REINFORCE). A baseline that does not depend on the sample keeps it
#   unbiased and, near the mean reward, cuts its variance (measured above).
#
# ## Questions
#
# 1. Why can RLHF with a KL penalty never give probability to a completion that $\pi_{\text{sft}}$
#    gives probability 0?
# 2. What does $\pi^*_\beta$ become as $\beta \to \infty$, and as $\beta \to 0$?
# 3. Why does REINFORCE need no gradient of the reward model?
# 4. With $N = 2$ samples, what does the batch-mean baseline (with $r(y_i)$ in it) do to the
#    expected gradient?
# 5. Adding 10 to every reward changes nothing in $J_\beta$'s optimum. What does it do to the
#    variance of $\hat g$ without a baseline, and with the leave-one-out baseline?
#
# <details><summary>Answers</summary>
#
# 1. $\pi^*_\beta = \pi_{\text{sft}}\, e^{r/\beta} / Z$ is 0 wherever $\pi_{\text{sft}}$ is; equivalently
#    $\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}}) = \infty$ for any $\pi$ that puts mass there ($J = -\infty$,
#    as the grader's last case checks).
# 2. $\beta \to \infty$: $\pi_{\text{sft}}$ (the KL dominates). $\beta \to 0$: all mass on
#    $\arg\max_y r(x, y)$, the greedy policy at the right end of the front.
# 3. The log-derivative trick moves the gradient onto $\log \pi_\theta$: $r$ only weights the
#    samples, so a score from any black box will do.
# 4. It halves it: $r(y_1) - \frac{r(y_1) + r(y_2)}{2} = \frac{r(y_1) - r(y_2)}{2}$, half the
#    leave-one-out advantage, so the estimate is biased towards 0 by a factor $1 - 1/N = 1/2$.
# 5. Without a baseline every score $e_y - \pi$ is weighted by about 10 instead of well under 1, and
#    the variance grows with the square of the weights: by orders of magnitude. The leave-one-out
#    baseline subtracts the shift exactly: its variance is unchanged.
# </details>
#
# ## Try it
#
# - Set `beta = 0.01` or `beta = 10` in the check above: where do $\pi^*_\beta$'s KL and reward move?
# - In the variance cell, shift the rewards (`r + 10`) and re-run: compare the two variances.
# - Another unbiased baseline is the exact $\mathbb{E}_\pi[r]$: write it, and compare its variance
#   with the leave-one-out one.
# - Do gradient ascent with your estimate on prompt 0 (`z = z + 4 * reinforce_gradient(...)`, fresh
#   samples each step): how many steps until $\mathbb{E}_\pi[r]$ is within $0.01$ of $\max_y r$?

# %%
print(f"notebook ran in {time.perf_counter() - notebook_start:.1f} s")

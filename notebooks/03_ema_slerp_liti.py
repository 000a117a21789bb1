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
# # 03 · Why RLHF has a KL term, and the weight-space math of WARP: EMA, SLERP, LITI
#
# **You will learn to**
# - state the RLHF objective $\mathbb{E}[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}})$, say why
#   the KL term is there (reward hacking), and derive its closed-form optimum;
# - compute the **exact** optimal KL-reward front of a toy problem, and check that no policy beats it;
# - implement WARP's three weight-space operations (EMA anchor, SLERP of task vectors, LITI) and
#   explain what each one changes on the front;
# - recognise five bugs that public WARP reproductions shipped.
#
# **Prerequisites**: softmax and log-probabilities, the KL divergence, gradient ascent; notebooks 00-02
# (what $\pi_{\text{sft}}$, $r$ and the prompts are). No model is loaded here.
#
# **Time**: about 10 s to run on a CPU (measured here: 12 s under load); 45-60 min to read and do
# the 6 exercises.
# The derivations of Lemmas 1-2, Eq. 26 and the convexity of LITI's segment are in the optional
# appendix `03b_appendix_lemmas`.
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
# | $\theta_{\text{ema}}$, $\mu$ | the EMA anchor of the KL penalty and its update rate |
# | $\theta_{\text{init}}$, $\theta^m$, $\delta^m$ | where the $M$ runs start; run $m$'s end point; its task vector $\theta^m - \theta_{\text{init}}$ |
# | $\lambda$, $\Omega$ | SLERP's interpolation weight; the angle between two task vectors |
# | $\eta$ | the LITI step towards the merge |
#
# Acronyms: **EMA** exponential moving average, **SLERP** spherical linear interpolation, **LERP**
# linear interpolation, **LITI** linear interpolation towards initialisation, **SFT** supervised
# fine-tuning, **RLHF** reinforcement learning from human feedback.

# %%
from warp_utils.environment import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import inspect
import math
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from matplotlib.patches import FancyBboxPatch

from warp_utils import bugs, exercises, toy
from warp_utils.config import get_profile
from warp_utils.weights import ema, lerp, liti, slerp  # noqa: F401 (liti: for exercise 6)

print("profile:", get_profile().name)
torch.manual_seed(0)
torch.set_num_threads(1)  # tensors here are tiny: extra threads only add synchronisation
notebook_start = time.perf_counter()

# %% [markdown]
# ## 0. Why: RLHF, the KL term, and the best policy there is
#
# **RLHF** (reinforcement learning from human feedback) aligns a language model in three stages:
#
# 1. **SFT**: supervised fine-tuning on demonstrations gives a policy $\pi_{\text{sft}}$ that writes
#    plausible text (notebook 00: our GPT-2 trained on IMDB reviews);
# 2. **reward model**: a network $r(x, y)$ trained on human preference pairs scores how good a
#    completion $y$ of a prompt $x$ is (notebook 01: "how positive is this review");
# 3. **RL**: the policy is fine-tuned to raise $r$ by **policy gradient** (REINFORCE: raise the
#    log-probability of sampled completions in proportion to their reward; notebook 04).

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
ax.text(3.0, 1.05, "notebook 00", fontsize=8, color="gray")
ax.text(3.0, -1.05, "notebook 01", fontsize=8, color="gray")
ax.text(5.55, 0.45, "notebook 04", fontsize=8, color="gray")
ax.text(8.45, 0.45, "notebooks 03-05", fontsize=8, color="gray")
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
# `warp_utils.toy` is a language model you can solve exactly: $P = 16$ prompts, each answered by
# **one token** $y$ of $K = 8$; the reward is a fixed table $r(x, y) \sim U[0, 1]$; the policy is
# $\pi_\theta(y \mid x) = \operatorname{softmax}(\texttt{table}[x] + \texttt{bias})_y$, a state dict
# with two tensors like a tiny network. Expected rewards and KLs are exact sums over the table. The
# rest of this notebook runs WARP on it.

# %%
theta_sft, reward = toy.make_bandit()  # 16 prompts x 8 tokens, float64
pi_sft = toy.probs(theta_sft)
print("pi_sft(. | x=0):", np.round(pi_sft[0].numpy(), 3))
print("r(x=0, .):      ", np.round(reward[0].numpy(), 3))
print(f"E[r] under pi_sft: {toy.expected_reward(theta_sft, reward):.4f}; "
      f"best possible (argmax per prompt): {reward.max(-1).values.mean():.4f}")

# %% [markdown]
# ### Exercise 1 · the exact KL of two toy policies
# Write `exact_kl(pi_p, pi_q)`: both are $(P, K)$ tables of probabilities (rows sum to 1); return
# $\frac{1}{P}\sum_x \sum_y \pi_p(y \mid x) \log \frac{\pi_p(y \mid x)}{\pi_q(y \mid x)}$ as a float.
# The grader compares it with `toy.kl` on two pairs of tables. Until you solve it, the notebook uses
# the reference.

# %%
def exact_kl(pi_p, pi_q):
    raise NotImplementedError  # your code here (one line)


exact_kl = exercises.check("exact_kl", exact_kl)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("exact_kl"))  # the solution, one click away

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
# Check the claim numerically: at $\pi^*_\beta$, $J_\beta = \beta\,\mathbb{E}_x \log Z_\beta(x)$
# (`toy.optimal_value`), and any other policy loses exactly $\beta\,\mathrm{KL}(\pi \,\|\, \pi^*_\beta)$.
# Then the **exact front**: sweep $\beta$, plot $(\mathrm{KL}(\pi^*_\beta \| \pi_{\text{sft}}),
# \mathbb{E}_{\pi^*_\beta}[r])$. No policy can lie above it; section 4 puts WARP's points under it.

# %%
beta = 0.1
pi_star = optimal_policy(pi_sft, reward, beta)
J = lambda pi: float((pi * reward).sum(-1).mean()) - beta * exact_kl(pi, pi_sft)
print(f"J(pi*) = {J(pi_star):.6f}   beta E log Z = {toy.optimal_value(theta_sft, reward, beta):.6f}")
assert abs(J(pi_star) - toy.optimal_value(theta_sft, reward, beta)) < 1e-10
other = torch.softmax(torch.randn(16, 8, dtype=torch.float64), -1)
assert abs(J(pi_star) - J(other) - beta * exact_kl(other, pi_star)) < 1e-10

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
# ## 1. The EMA anchor
#
# After every optimiser step of an RL run, the anchor moves a fraction $\mu$ towards the policy:
#
# $$\theta_{\text{ema}} \leftarrow (1-\mu)\,\theta_{\text{ema}} + \mu\,\theta .$$
#
# Unrolling the recursion from $\theta_{\text{ema}}^{0} = \theta_{\text{init}}$ over $t$ steps:
#
# $$\theta_{\text{ema}}^{t} = (1-\mu)^{t}\,\theta_{\text{init}}
#   + \sum_{k=0}^{t-1} \mu(1-\mu)^{k}\,\theta^{t-k}.$$
#
# The policy of $k$ steps ago gets weight $\mu(1-\mu)^k$: a geometric memory. Its mean age is
# $\sum_k k\,\mu(1-\mu)^k = (1-\mu)/\mu \approx 1/\mu$, and the weight has fallen by $e^{-1}$ after
# $1/\mu$ steps: **$1/\mu$ is the anchor's horizon** (100 steps for the paper's $\mu = 0.01$).
#
# First, `ema` applied step by step equals the unrolled sum:

# %%
mu, num_steps = 0.05, 40
policies = [{"w": torch.randn(3, dtype=torch.float64)} for _ in range(num_steps + 1)]
anchor = policies[0]  # theta_ema^0 = theta_init
for theta in policies[1:]:
    anchor = ema(anchor, theta, mu)

unrolled = (1 - mu) ** num_steps * policies[0]["w"] + sum(
    mu * (1 - mu) ** k * policies[num_steps - k]["w"] for k in range(num_steps)
)
print("recursion:", anchor["w"].numpy(), "\nunrolled: ", unrolled.numpy())
assert torch.allclose(anchor["w"], unrolled, atol=1e-12)

# %% [markdown]
# ### Exercise 3 · the EMA step
# Write `ema_step(theta_ema, theta, mu)` for state dicts (`dict[str, Tensor]`): return a **new**
# dict $\{k: (1-\mu)\,\theta_{\text{ema}}[k] + \mu\,\theta[k]\}$, leaving `theta_ema` untouched
# (other code may still hold it). Graded against `warp_utils.weights.ema`.

# %%
def ema_step(theta_ema, theta, mu):
    raise NotImplementedError  # your code here


ema_step = exercises.check("ema", ema_step)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("ema"))

# %%
fig, ax = plt.subplots(figsize=(7, 3.2))
ages = np.arange(400)
for mu in (0.01, 0.05, 0.1):
    (line,) = ax.plot(ages, mu * (1 - mu) ** ages, label=f"$\\mu$ = {mu}")
    ax.axvline(1 / mu, color=line.get_color(), ls=":", lw=1)
    assert abs(sum(mu * (1 - mu) ** k for k in range(20_000)) - 1) < 1e-12  # weights sum to 1
ax.set(
    xlabel="age k of the policy (steps ago)",
    ylabel="weight $\\mu(1-\\mu)^k$",
    yscale="log",
    ylim=(1e-5, 0.2),
    title="What the anchor remembers (dotted: horizon $1/\\mu$)",
)
ax.legend()
plt.show()
# %% [markdown]
# **The anchor lags a drifting policy.** If the policy moves at constant velocity,
# $\theta^{t} = \theta^{0} + t\,v$, the lag $\ell_t = \theta^t - \theta_{\text{ema}}^t$ obeys
# $\ell_t = (1-\mu)(\ell_{t-1} + v)$, whose fixed point is
#
# $$\ell_\infty = \frac{1-\mu}{\mu}\, v .$$
#
# So the KL penalty $\beta \log \pi_\theta / \pi_{\text{ema}}$ always pulls back by about $1/\mu$
# steps' worth of progress: small $\mu$ = strong regularisation (close to a frozen SFT anchor),
# large $\mu$ = the anchor chases the policy and the penalty vanishes.

# %%
velocity, num_steps = 0.01, 1500
fig, ax = plt.subplots(figsize=(7, 3.2))
steps = np.arange(1, num_steps + 1)
ax.plot(steps, velocity * steps, "k", lw=2, label="policy $\\theta^t = t\\,v$")
for mu in (0.01, 0.05, 0.1):
    anchor, trace = {"w": torch.zeros(1, dtype=torch.float64)}, []
    for t in steps:
        anchor = ema(anchor, {"w": torch.full((1,), velocity * t, dtype=torch.float64)}, mu)
        trace.append(anchor["w"].item())
    lag = velocity * num_steps - trace[-1]
    print(f"mu={mu:<5} lag = {lag:.4f}   (1 - mu) / mu * v = {(1 - mu) / mu * velocity:.4f}")
    assert abs(lag - (1 - mu) / mu * velocity) < 1e-6
    ax.plot(steps, trace, label=f"anchor, $\\mu$ = {mu}")
ax.set(xlabel="step t", ylabel="weight", title="The EMA anchor lags by $(1-\\mu)v/\\mu$")
ax.legend()
plt.show()
# %% [markdown]
# ## 2. Task vectors and SLERP
#
# Each of the $M$ RL runs starts at $\theta_{\text{init}}$ and ends at $\theta_m$. What it learned
# is its **task vector** $\delta_m = \theta_m - \theta_{\text{init}}$. SLERP merges two task vectors
# along the arc between them, per tensor, with the angle
#
# $$\cos\Omega = \frac{\langle \delta_1, \delta_2\rangle}{\lVert\delta_1\rVert\,\lVert\delta_2\rVert}.$$
#
# **Deriving the coefficients.** Take unit vectors $e_1, e_2$ at angle $\Omega$ in their plane.
# The unit vector orthogonal to $e_1$ in that plane is $e_\perp = (e_2 - \cos\Omega\, e_1)/\sin\Omega$.
# The point at angle $\lambda\Omega$ from $e_1$ on the arc is
#
# $$u(\lambda) = \cos(\lambda\Omega)\,e_1 + \sin(\lambda\Omega)\,e_\perp
#  = \frac{\sin\Omega\cos\lambda\Omega - \cos\Omega\sin\lambda\Omega}{\sin\Omega}\,e_1
#  + \frac{\sin\lambda\Omega}{\sin\Omega}\,e_2
#  = \frac{\sin((1-\lambda)\Omega)}{\sin\Omega}\,e_1 + \frac{\sin(\lambda\Omega)}{\sin\Omega}\,e_2 .$$
#
# Applying the same coefficients to the task vectors and adding $\theta_{\text{init}}$ back:
#
# $$\operatorname{slerp}(\theta_{\text{init}}, \theta_1, \theta_2, \lambda) = \theta_{\text{init}}
#  + \frac{\sin((1-\lambda)\Omega)}{\sin\Omega}\,\delta_1 + \frac{\sin(\lambda\Omega)}{\sin\Omega}\,\delta_2 .$$
#
# The code check: `slerp` on 2-D "models" lands exactly on $u(\lambda)$.

# %%
omega = math.radians(100)
e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
e2 = torch.tensor([math.cos(omega), math.sin(omega)], dtype=torch.float64)
e_perp = (e2 - math.cos(omega) * e1) / math.sin(omega)
theta_init = {"w": torch.tensor([0.3, -0.2], dtype=torch.float64)}  # anywhere: it is added back
theta_1, theta_2 = {"w": theta_init["w"] + e1}, {"w": theta_init["w"] + e2}

lams = np.linspace(0, 1, 21)
arc = torch.stack(
    [slerp(theta_init, [theta_1, theta_2], lam)["w"] - theta_init["w"] for lam in lams]
)
chord = torch.stack(
    [lerp(theta_init, [theta_1, theta_2], lam)["w"] - theta_init["w"] for lam in lams]
)
u = torch.stack([math.cos(lam * omega) * e1 + math.sin(lam * omega) * e_perp for lam in lams])
assert torch.allclose(arc, u, atol=1e-12)
print("max |slerp - u(lambda)| =", (arc - u).abs().max().item())

# %%
fig, ax = plt.subplots(figsize=(4.2, 4.2))
ax.plot(*arc.T, "o-", ms=3, label="SLERP: on the arc")
ax.plot(*chord.T, "s-", ms=3, label="LERP: on the chord")
for vec, name in ((e1, "$\\delta_1$"), (e2, "$\\delta_2$")):
    ax.annotate("", vec.tolist(), (0, 0), arrowprops={"arrowstyle": "->", "lw": 1.5})
    ax.text(*(1.08 * vec).tolist(), name)
ax.plot(0, 0, "k.")
ax.set(
    aspect="equal",
    xlim=(-0.5, 1.3),
    ylim=(-0.2, 1.2),
    title=f"Two task vectors, $\\Omega$ = {math.degrees(omega):.0f}°, relative to $\\theta_{{init}}$",
)
ax.legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# **Lemma 1 (SLERP keeps the norm).** With $\lVert\delta_1\rVert = \lVert\delta_2\rVert = l$, the
# merged task vector has norm $l$ for every $\lambda$: it stays on the arc. **Lemma 2 (LERP
# shrinks it)** to $l\sqrt{1 - 2(1-\cos\Omega)(\lambda - \lambda^2)}$, i.e. $l/\sqrt{2}$ for
# orthogonal task vectors at $\lambda = 1/2$. Independent runs give nearly orthogonal task vectors in
# high dimension, so LERP loses about 30% of what each run learned. The appendix notebook
# `03b_appendix_lemmas` checks both lemmas in 1,000 dimensions, shows why SLERP must act on task
# vectors and not on full weights, and derives Eq. 26 for $M > 2$.
#
# ### Exercise 4 · SLERP of two task vectors
# Write `slerp2(theta_init, theta_1, theta_2, lam)` for state dicts, **tensor by tensor** (each
# tensor has its own angle $\Omega$): the formula above, with $\delta_m = \theta_m - \theta_{\text{init}}$.
# When the angle is undefined or zero (a task vector of norm 0, or two collinear ones,
# $\sin\Omega \approx 0$), fall back to LERP of the task vectors. The grader tries both cases.

# %%
def slerp2(theta_init, theta_1, theta_2, lam=0.5):
    raise NotImplementedError  # your code here


slerp2 = exercises.check("slerp", slerp2)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("slerp"))

# %% [markdown]
# ### Spot the bug · a LERP fallback
# A public reproduction wrote its SLERP like this. Read it: what happens when two runs end up with
# collinear task vectors for one tensor (for example, two runs that saw the same data)?

# %%
print(inspect.getsource(bugs.slerp_fallback_forgets_init))

# %% [markdown]
# <details><summary>Answer</summary>
#
# The fallback returns the merged **task vector** without adding $\theta_{\text{init}}$ back: that
# tensor of the merged model is replaced by a small difference of weights. In a language model the
# layer is essentially zeroed and the model destroyed, silently, and only when the angle happens to
# be tiny. The grader's collinear case catches it (below). On the toy, whose SFT logits are small,
# the damage is milder but visible: two identical runs merged this way land at more KL for no more
# reward, further below the exact front of section 0.
# </details>

# %%
verdict = exercises.spot_the_bug("slerp", "LERP fallback forgets theta_init")
assert verdict == "wrong"
run = toy.rl_run(theta_sft, reward, T=50, mu=0.01, beta=0.1, lr=4.0, batch_size=8,
                 generator=torch.Generator().manual_seed(0))[0]
below_front = {}
for name, merge in (("slerp (correct)", lambda a, b, c: slerp(a, [b, c])),
                    ("buggy fallback", bugs.slerp_fallback_forgets_init)):
    merged = merge(theta_sft, run, run)  # two identical runs: collinear task vectors
    value, divergence = toy.expected_reward(merged, reward), toy.kl(merged, theta_sft)
    below_front[name] = toy.optimal_reward_at_kl(theta_sft, reward, divergence) - value
    print(f"{name:16} reward {value:.4f}   KL to SFT {divergence:.4f}   "
          f"below the exact front by {below_front[name]:.4f}")
assert below_front["buggy fallback"] > below_front["slerp (correct)"]

# %% [markdown]
# ## 3. LITI: back towards the initialisation
#
# The merge is pulled back towards the initialisation:
#
# $$\theta_\eta = (1-\eta)\,\theta_{\text{init}} + \eta\,\theta_{\text{slerp}}, \qquad \eta\in[0,1],$$
#
# and $\theta_\eta$ becomes the next iteration's $\theta_{\text{init}}$. As $\eta$ goes from 0 to 1
# the policy walks the segment from $\theta_{\text{init}}$ to $\theta_{\text{slerp}}$, trading KL for
# reward, and the next iteration's runs start from a better place than SFT. That this walk stays
# useful rests on **linear mode connectivity**: fine-tunes of the same pre-trained model are joined
# by straight paths along which the loss (here: reward and KL) changes smoothly, without a barrier,
# so the weights in between are good models too (the figure below, on the toy). The paper's Lemmas
# 4-5 further assume the KL is convex and the reward concave along the segment; the appendix
# `03b_appendix_lemmas` checks when that holds (only in part).
#
# ### Exercise 5 · LITI
# Write `my_liti(theta_init, theta_merged, eta)` for state dicts, returning a new dict.

# %%
def my_liti(theta_init, theta_merged, eta):
    raise NotImplementedError  # your code here


my_liti = exercises.check("liti", my_liti)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("liti"))

# %% [markdown]
# Reward and KL along two straight lines of the toy: from SFT to one RL run (LITI's segment), and
# between two runs of the same iteration (the path LERP averages along). No barrier: every point in
# between is a working policy, which is what makes averaging weights sensible at all.

# %%
runs = [toy.rl_run(theta_sft, reward, T=50, mu=0.01, beta=0.1, lr=4.0, batch_size=8,
                   generator=torch.Generator().manual_seed(m))[0] for m in range(2)]
ts = np.linspace(0, 1, 21)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for start, end, name in ((theta_sft, runs[0], "SFT -> run 1"), (runs[0], runs[1], "run 1 -> run 2")):
    path = [my_liti(start, end, float(t)) for t in ts]
    axes[0].plot(ts, [toy.expected_reward(p, reward) for p in path], label=name)
    axes[1].plot(ts, [toy.kl(p, theta_sft) for p in path], label=name)
axes[0].set(xlabel="position t on the straight line", ylabel="E[r]", title="reward along the path")
axes[1].set(xlabel="position t on the straight line", ylabel="KL to SFT", title="KL along the path")
axes[0].legend(fontsize=8)
plt.show()
between = [toy.expected_reward(my_liti(runs[0], runs[1], float(t)), reward) for t in ts]
assert min(between) >= min(between[0], between[-1]) - 0.01  # no barrier between the two runs

# %% [markdown]
# ### Spot the bug · a LITI that does nothing
# Another reproduction's LITI. The code runs, the loss curves look fine. What is wrong?

# %%
print(inspect.getsource(bugs.liti_does_nothing))

# %% [markdown]
# <details><summary>Answer</summary>
#
# `theta_merged` is overwritten by `theta_init`, so the result is $(1-\eta)\theta_{\text{init}} +
# \eta\,\theta_{\text{init}} = \theta_{\text{init}}$ whatever $\eta$: every WARP iteration restarts
# from SFT, the $I$ iterations are $I$ repeats of the first, and the front never moves outward. The
# grader sees it at once: the output equals `theta_init`. On the toy, it is WARP with $\eta = 0$.
# </details>

# %%
assert exercises.spot_the_bug("liti", "LITI that does nothing") == "wrong"
for eta, name in ((0.5, "correct LITI"), (0.0, "LITI that does nothing")):
    last = toy.warp(theta_sft, reward, I=3, eta=eta)[-1]["theta_merged"]
    print(f"{name:24} iteration 3 merge: reward {toy.expected_reward(last, reward):.4f}, "
          f"KL {toy.kl(last, theta_sft):.4f}")

# %% [markdown]
# ## 4. A toy WARP you can play with
#
# Algorithm 1 on the toy bandit of section 0, with the exact same `slerp`, `liti` and `ema`
# functions. For $i = 1..I$: $M$ REINFORCE runs from $\theta_{\text{init}}$, each on the
# KL-regularised reward
#
# $$r_\beta(x, y) = r(x, y) - \beta \log\frac{\pi_\theta(y\mid x)}{\pi_{\text{ema}}(y\mid x)}$$
#
# ($r_\beta$ is a constant weight, no gradient through it; leave-one-out baseline), each with its
# own EMA anchor; then $\theta_{\text{slerp}} = \operatorname{slerp}(\theta_{\text{init}}, \{\theta_m\})$
# and $\theta_{\text{init}} \leftarrow \operatorname{liti}(\theta_{\text{init}}, \theta_{\text{slerp}}, \eta)$.
# Rewards and KLs are exact sums; only training samples. First, the merges of the same runs:


# %%
def merge_report(record, theta_sft, reward):
    """Reward and KL-to-SFT of the SLERP and LERP merges of one iteration's runs."""
    rows = {f"run {m}": theta for m, theta in enumerate(record["thetas"], 1)}
    rows["SLERP"] = slerp(record["theta_init"], record["thetas"])
    rows["LERP"] = lerp(record["theta_init"], record["thetas"])
    rows["SLERP of EMAs (bug)"] = slerp(record["theta_init"], record["theta_emas"])
    return {
        name: (toy.expected_reward(theta, reward), toy.kl(theta, theta_sft))
        for name, theta in rows.items()
    }


started = time.perf_counter()
history = toy.warp(theta_sft, reward)  # I=3, M=2, T=50, mu=0.01, eta=0.5, beta=0.1
print(f"toy WARP ran in {time.perf_counter() - started:.2f} s\n")
report = merge_report(history[0], theta_sft, reward)
print(f"SFT: reward {toy.expected_reward(theta_sft, reward):.4f}")
for name, (value, divergence) in report.items():
    print(f"{name:20} reward {value:.4f}   KL to SFT {divergence:.4f}")

# %%
assert report["SLERP"][0] >= report["LERP"][0], report  # SLERP keeps the norm: more reward...
assert report["SLERP"][1] >= report["LERP"][1], (
    report
)  # ...and more KL: a different point on the front
final = history[-1]
kls_final, _ = toy.liti_path(
    final["theta_init"], final["theta_merged"], np.linspace(0, 1, 51), reward, final["theta_init"]
)
assert (np.diff(kls_final) > 0).all()  # exact KL to the initial policy is monotone in eta

# %% [markdown]
# ### Exercise 6 · the end of an iteration
# `toy.warp` returns one record per iteration: `theta_init`, the trained runs `thetas`, their EMA
# anchors `theta_emas`, ... Write `next_init(record, eta)`: the next iteration's
# $\theta_{\text{init}}$ (use `slerp` and `liti` from `warp_utils.weights`, imported above). The grader
# compares with what `toy.warp` itself computed.

# %%
def next_init(record, eta):
    raise NotImplementedError  # your code here (two lines)


next_init = exercises.check("warp_merge", next_init)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("warp_merge"))

# %% [markdown]
# ### Spot the bug · which models are merged?
# A reproduction kept, for each run, both the policy and its EMA anchor, and merged like this:

# %%
print(inspect.getsource(bugs.warp_merge_slerp_of_emas))

# %% [markdown]
# <details><summary>Answer</summary>
#
# It merges the **anchors** $\theta^m_{\text{ema}}$, not the trained policies $\theta^m$. With
# $\mu = 0.01$ and $T = 50$ the anchor has moved only about $1 - 0.99^{50} \approx 40\%$ of the way
# (less, since it lags a moving target): the merge throws most of the RL run away, and each
# iteration advances far less along the front. The row "SLERP of EMAs (bug)" of the table above
# shows it: much less reward (and KL) than the SLERP of the runs.
# </details>

# %%
assert exercises.spot_the_bug("warp_merge", "SLERP of the EMA models") == "wrong"
assert report["SLERP of EMAs (bug)"][0] < report["SLERP"][0]
assert report["SLERP of EMAs (bug)"][1] < report["SLERP"][1]

# %% [markdown]
# ### WARP, LERP and REINFORCE under the exact front
# The fronts of notebook 05, on the toy: for each policy $\theta$, the LITI segment from SFT,
# $(1-\eta)\,\theta_{\text{sft}} + \eta\,\theta$. WARP's three iterations, the same with LERP merges,
# and REINFORCE with a frozen SFT anchor ($\mu = 0$) trained for WARP's whole budget of $IMT$
# steps. Above them, the exact optimal front of section 0: the assert checks that **no policy of any
# method lies above it** (up to $10^{-9}$), with the exact constrained optimum
# `toy.optimal_reward_at_kl` at each policy's own KL.

# %%
etas = np.linspace(0, 1, 11)
warp_history = toy.warp(theta_sft, reward)  # I=3, M=2, T=50
lerp_history = toy.warp(theta_sft, reward, merge=lerp)
reinforce = toy.rl_run(theta_sft, reward, T=3 * 2 * 50, mu=0.0, beta=0.1, lr=4.0, batch_size=8,
                       generator=torch.Generator().manual_seed(0))[0]
curves = {f"WARP iteration {i + 1}": record["theta_merged"] for i, record in enumerate(warp_history)}
curves["LERP iteration 3"] = lerp_history[-1]["theta_merged"]
curves["REINFORCE, SFT anchor"] = reinforce
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(front_kls, front_rewards, "k", lw=2.5, label="exact optimal front")
checked = 0
for name, theta in curves.items():
    kls, rewards = toy.liti_path(theta_sft, theta, etas, reward, theta_sft)
    ax.plot(kls, rewards, ".-", label=name)
    for k, r in zip(kls, rewards):
        assert r <= toy.optimal_reward_at_kl(theta_sft, reward, k) + 1e-9, (name, k, r)
        checked += 1
for record in warp_history:  # the individual runs too
    for theta in record["thetas"]:
        assert toy.expected_reward(theta, reward) <= toy.optimal_reward_at_kl(
            theta_sft, reward, toy.kl(theta, theta_sft)) + 1e-9
        checked += 1
ax.set(xlabel="KL($\\pi$ || $\\pi_{sft}$)", ylabel="E[r]", xlim=(0, 1.05 * max(
    toy.kl(t, theta_sft) for t in curves.values())), title="Toy fronts under the exact optimum")
ax.legend(fontsize=8)
plt.show()
gaps = {name: toy.optimal_reward_at_kl(theta_sft, reward, toy.kl(t, theta_sft)) - toy.expected_reward(t, reward)
        for name, t in curves.items()}
print(f"{checked} policies checked: none above the exact front. Reward missing at equal KL (eta = 1):")
for name, gap in gaps.items():
    print(f"  {name:24} {gap:.4f}")

# %% [markdown]
# ### The playground
#
# `draw_warp` runs WARP twice with the same seeds (SLERP merges, LERP merges) and draws, left, the
# KL-reward plane (KL to the SFT policy): the runs of each iteration, the LITI segment from
# $\theta_{\text{init}}$ to the merge, and where $\eta$ stops on it; right, the SFT and final
# policies on the first prompt against its reward. It is called once here with the defaults (a
# static figure that needs no browser), then wired to sliders (`continuous_update=False`: it
# re-runs on release).


# %%
def draw_warp(mu=0.01, eta=0.5, beta=0.1, M=2, I=3):
    def point(theta):  # (KL to SFT, expected reward): a point of the KL-reward plane
        return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)

    _, (front, bars) = plt.subplots(1, 2, figsize=(11, 3.8))
    finals = {}
    for merge, color in ((slerp, "tab:blue"), (lerp, "tab:orange")):
        history = toy.warp(theta_sft, reward, I=I, M=M, mu=mu, eta=eta, beta=beta, merge=merge)
        for i, record in enumerate(history):
            kls, rewards = toy.liti_path(
                record["theta_init"],
                record["theta_merged"],
                np.linspace(0, 1, 11),
                reward,
                theta_sft,
            )
            front.plot(kls, rewards, color=color, alpha=0.5)
            front.plot(*point(record["theta_merged"]), "*", color=color, ms=9)
            front.plot(
                *zip(*[point(theta) for theta in record["thetas"]]), ".", color=color, alpha=0.5
            )
            front.plot(
                *point(record["theta_next"]),
                "o",
                color=color,
                mfc="white",
                label=f"{merge.__name__.upper()}: LITI points" if i == 0 else None,
            )
        finals[merge.__name__] = history[-1]["theta_next"]
    front.plot(*point(theta_sft), "ks", label="SFT")
    front.plot(front_kls, front_rewards, "k", lw=1, alpha=0.5, label="exact optimal front")
    front.set(
        xlabel="KL($\\pi$ || $\\pi_{sft}$)",
        ylabel="expected reward",
        title=f"$\\mu$={mu}, $\\eta$={eta}, $\\beta$={beta}, M={M}: runs ·, merges ★",
    )
    front.legend(fontsize=8)
    tokens = np.arange(reward.shape[1])
    for shift, (name, theta) in zip((-0.25, 0, 0.25), [("SFT", theta_sft), *finals.items()]):
        bars.bar(
            tokens + shift,
            toy.probs(theta)[0].numpy(),
            width=0.25,
            label=name if name == "SFT" else f"WARP with {name.upper()}",
        )
    bars.plot(tokens, reward[0].numpy(), "k_", ms=14, mew=2, label="reward r(x=0, y)")
    bars.set(
        xlabel="token y",
        ylabel="$\\pi(y \\mid x=0)$",
        title="policy on prompt 0 after I iterations",
    )
    bars.legend(fontsize=8)
    plt.show()
    return finals


finals = draw_warp()  # the static figure, defaults

# %%
slider = {"continuous_update": False, "readout_format": ".2f"}
controls = widgets.interactive(
    draw_warp,
    mu=widgets.FloatLogSlider(
        value=0.01, base=10, min=-3, max=0, step=0.25, description="mu", continuous_update=False
    ),
    eta=widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="eta", **slider),
    beta=widgets.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.05, description="beta", **slider),
    M=widgets.IntSlider(value=2, min=1, max=5, description="M", continuous_update=False),
    I=widgets.fixed(3),
)
display(controls)  # non-blocking: headless runs (nbval) just render the default state

# %% [markdown]
# ## Summary
#
# - RLHF maximises $\mathbb{E}[r] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}})$; the KL term
#   keeps the policy where the reward model can be trusted (against reward hacking). The optimum is
#   $\pi^*_\beta \propto \pi_{\text{sft}}\, e^{r/\beta}$, and sweeping $\beta$ traces the best
#   possible KL-reward front, which we computed exactly on the toy and checked that no WARP, LERP or
#   REINFORCE policy crosses.
# - The **EMA anchor** remembers the last $\approx 1/\mu$ steps and lags a drifting policy by
#   $(1-\mu)v/\mu$: a KL penalty towards it regularises less and less as training goes on.
# - **SLERP** merges task vectors $\delta_m = \theta_m - \theta_{\text{init}}$ along the arc, keeping their
#   norm (Lemma 1), where LERP shrinks it (Lemma 2).
# - **LITI** walks back from the merge towards $\theta_{\text{init}}$ (linear mode connectivity makes
#   the path usable) and restarts the next iteration from there.
# - The five public bugs (a LITI that does nothing, SLERP of the EMAs, a LERP fallback that forgets
#   $\theta_{\text{init}}$, a KL penalty not detached, tokens after EOS counted; the last two in
#   notebook 04) all run without error: only tests catch them.
#
# ## Questions
#
# 1. Why can RLHF with a KL penalty never give probability to a completion that $\pi_{\text{sft}}$
#    gives probability 0?
# 2. What does $\pi^*_\beta$ become as $\beta \to \infty$, and as $\beta \to 0$?
# 3. With $\mu = 0.01$, roughly how many steps of the past does the anchor remember?
# 4. Two runs' task vectors are orthogonal and of equal norm $l$. What is the norm of their LERP
#    at $\lambda = 1/2$, and of their SLERP?
# 5. Which of the five bugs leaves every loss curve looking normal?
#
# <details><summary>Answers</summary>
#
# 1. $\pi^*_\beta = \pi_{\text{sft}}\, e^{r/\beta} / Z$ is 0 wherever $\pi_{\text{sft}}$ is; equivalently
#    $\mathrm{KL}(\pi \,\|\, \pi_{\text{sft}}) = \infty$ for any $\pi$ that puts mass there.
# 2. $\beta \to \infty$: $\pi_{\text{sft}}$ (the KL dominates). $\beta \to 0$: all mass on
#    $\arg\max_y r(x, y)$, the greedy policy at the right end of the front.
# 3. About $1/\mu = 100$ steps (the weight of the policy $k$ steps ago is $\mu(1-\mu)^k$).
# 4. LERP: $l/\sqrt{2}$ (Lemma 2 with $\cos\Omega = 0$); SLERP: $l$ (Lemma 1).
# 5. All of them: the RL runs themselves are fine in the three merge bugs (LITI, SLERP of EMAs,
#    LERP fallback), and a non-detached KL or counted post-EOS tokens only bias the gradient.
# </details>
#
# ## Try it
#
# - In the playground: $\eta = 0$ never leaves the SFT policy; $\eta = 1$ with $M = 1$ is plain RL
#   restarted from its own end point; $\beta = 0$ removes the KL penalty (how far from the optimal
#   front do the runs go?); raising $\mu$ weakens the anchor (more KL, more reward per iteration);
#   larger $M$ widens the gap between SLERP (norm kept) and LERP (norm shrinks roughly like
#   $1/\sqrt{M}$ for orthogonal task vectors).
# - Replace `toy.make_bandit()` by `toy.make_bandit(num_tokens=64)`: does WARP get closer to the
#   exact front, or further?
# - Put `bugs.warp_merge_liti_does_nothing` in place of `next_init` in a loop of your own over
#   `toy.rl_run`: how do the merges of iterations 1-3 compare?

# %%
print(f"notebook ran in {time.perf_counter() - notebook_start:.1f} s")

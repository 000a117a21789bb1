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
# # 03a · WARP in weight space: the EMA anchor, SLERP, LITI and Algorithm 1, on a toy
#
# **You will learn to**
# - compute the EMA anchor of a trajectory in closed form; measure what an EMA anchor changes;
# - merge task vectors with SLERP, and step back towards the initialisation with LITI;
# - tell when the straight line between two policies has a reward barrier (linear mode connectivity);
# - write Algorithm 1's loop, and recognise three bugs that public WARP reproductions shipped.
#
# **Prerequisites**: notebook 03 (the objective, its exact front, the toy bandit, the policy gradient).
# Appendix 03b (optional) derives Lemmas 1-2 and Eq. 26; the glossary of notebook 00 has every symbol.
#
# **Time**: <!-- run -->seconds<!-- /run --> to run on 2 CPU cores; 30-45 min to read and do the 5 exercises.
#
# Acronyms: **EMA** exponential moving average, **SLERP** spherical linear interpolation, **LERP**
# linear interpolation, **LITI** linear interpolation towards initialisation.

# %%
from warp_utils.course import check_environment

check_environment()  # a missing package: one message saying what to install, before any other import

# %%
import inspect

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

from warp_utils.core import ema, lerp, liti, slerp  # noqa: F401 (ema: for exercise 2)
from warp_utils.course import bugs, exercises, toy

torch.set_num_threads(1)  # tensors here are tiny: extra threads only add synchronisation
theta_sft, reward = toy.make_bandit()  # notebook 03's toy: 16 prompts x 8 tokens, float64
front_kls, front_rewards = toy.optimal_front(theta_sft, reward, np.logspace(-2.5, 1.5, 60))
settings = {"beta": 0.1, "lr": 4.0, "batch_size": 8}  # each run's REINFORCE steps, as in toy.warp

# %% [markdown]
# ## 1. The EMA anchor
#
# After every optimiser step, the anchor $\theta_{\text{ema}}$ of the KL penalty moves a fraction
# $\mu$ towards the policy: $\theta_{\text{ema}} \leftarrow (1-\mu)\,\theta_{\text{ema}} + \mu\,\theta$.
# Unrolled from $\theta_{\text{ema}}^{0} = \theta_{\text{init}}$ over a trajectory $\theta^1, \dots, \theta^t$:
#
# $$\theta_{\text{ema}}^{t} = (1-\mu)^{t}\,\theta_{\text{init}} + \sum_{k=0}^{t-1} \mu(1-\mu)^{k}\,\theta^{t-k}.$$
#
# The policy of $k$ steps ago weighs $\mu(1-\mu)^k$, which falls by $e^{-1}$ after $1/\mu$ steps:
# **the anchor's horizon** (100 steps for the paper's $\mu = 0.01$). A policy drifting at velocity
# $v$ is trailed at a lag $\ell_t = (1-\mu)(\ell_{t-1} + v) \to (1-\mu)v/\mu$: about $1/\mu$ steps behind.
#
# ### Exercise 1 · the anchor after a trajectory
# Write `ema_anchor(theta_init, trajectory, mu)` for state dicts: `trajectory` is the list
# $[\theta^1, \dots, \theta^t]$ (the last is the latest, age 0); return $\theta_{\text{ema}}^t$ by the
# closed form, in new tensors, inputs untouched. Graded against $t$ steps of `weights.ema`.

# %%
def ema_anchor(theta_init, trajectory, mu):
    raise NotImplementedError  # your code here


ema_anchor = exercises.check("ema_anchor", ema_anchor)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("ema_anchor"))

# %%
fig, ax = plt.subplots(figsize=(7, 3))  # your function, fed one-hot "policies": the weights of the steps
n, v, onehots = 400, 0.01, [{"w": row} for row in torch.eye(400, dtype=torch.float64)]
for mu in (0.01, 0.05, 0.1):
    memory = ema_anchor({"w": torch.zeros(n, dtype=torch.float64)}, onehots, mu)["w"].flip(0)
    (line,) = ax.plot(memory.numpy(), label=f"$\\mu$ = {mu}")
    ax.axvline(1 / mu, color=line.get_color(), ls=":", lw=1)
    drift = [{"w": torch.tensor([v * t], dtype=torch.float64)} for t in range(1, 1501)]  # velocity v
    lag = v * 1500 - ema_anchor({"w": torch.zeros(1, dtype=torch.float64)}, drift, mu)["w"].item()
    print(f"mu = {mu:<5} lag after 1500 steps {lag:.4f}   (1 - mu) v / mu = {(1 - mu) * v / mu:.4f}")
    assert abs(lag - (1 - mu) * v / mu) < 1e-6
ax.set(xlabel="age k (steps ago)", ylabel="weight", yscale="log", ylim=(1e-5, 0.2),
       title="What the anchor remembers (dotted: the horizon $1/\\mu$)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### Why an EMA anchor, rather than the SFT policy?
# Classic RLHF anchors the penalty to $\pi_{\text{sft}}$ for the whole run ($\mu = 0$). WARP's anchor
# follows the policy, so the penalty relaxes as training goes. **Predict first**: after the same
# number of steps, which anchor reaches more reward **at equal KL** to $\pi_{\text{sft}}$?

# %%
prediction = None  # your prediction: "ema" or "sft"

# %% [markdown]
# ### Exercise 2 · measure it
# Write `anchor_point(theta_sft, reward, step, mu, T)`: policy and anchor start at `theta_sft`;
# $T$ times, `theta = step(theta, anchor)` (one REINFORCE step on $r_\beta$, KL towards `anchor`),
# then an EMA step of the anchor with rate `mu`. Return the policy's point in the KL-reward plane,
# `(toy.kl(theta, theta_sft), toy.expected_reward(theta, reward))`. Graded against the toy's training.

# %%
def anchor_point(theta_sft, reward, step, mu, T):
    raise NotImplementedError  # your code here


anchor_point = exercises.check("anchor_point", anchor_point)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("anchor_point"))

# %% [markdown]
# Both anchors, $T = 200$ steps, three seeds. The points sit at different KLs: to compare at equal
# KL, walk the segment from SFT to each policy (LITI's: KL grows along it) to the smaller KL.

# %%
T, anchors = 200, {"sft": 0.0, "ema": 0.01}
points, equal = {a: [] for a in anchors}, {a: [] for a in anchors}
for seed in (0, 1, 2):
    for a, mu in anchors.items():
        step = toy.make_step(reward, generator=torch.Generator().manual_seed(seed), **settings)
        points[a].append(anchor_point(theta_sft, reward, step, mu, T))
    for a, mu in anchors.items():  # the same runs again, for their weights
        theta = toy.rl_run(theta_sft, reward, toy.ToyConfig(T=T, mu=mu, **settings), torch.Generator().manual_seed(seed))[0]
        kls, rewards = toy.liti_path(theta_sft, theta, np.linspace(0, 1, 401), reward, theta_sft)
        equal[a].append(float(np.interp(min(p[-1][0] for p in points.values()), kls, rewards)))
mean = {a: (*np.mean(points[a], axis=0), np.mean(equal[a])) for a in anchors}  # KL, reward, at equal KL
for a, (kl, value, at_equal_kl) in mean.items():
    print(f"{a.upper()} anchor: KL to SFT {kl:.3f}, reward {value:.4f}, reward at equal KL {at_equal_kl:.4f}")
better = max(anchors, key=lambda a: mean[a][2])
print(f"At equal KL the {better.upper()} anchor has more reward. Your prediction: "
      + ("none yet" if prediction is None else "right" if prediction == better else "wrong"))
assert mean["ema"][0] > mean["sft"][0]  # the anchor follows the policy: the penalty relaxes

# %% [markdown]
# **Reading it.** With an SFT anchor and a fixed $\beta$ the run heads for $\pi^*_\beta$, a point *on*
# notebook 03's front. An EMA anchor relaxes the penalty: the run travels further in the same steps,
# on a path that need not hug the front. Which wins at equal KL is this measurement's answer for
# these settings, not a law. WARP bets on the distance, and takes the KL back with LITI and merging.
#
# ## 2. Task vectors and SLERP
#
# Each of the $M$ runs starts at $\theta_{\text{init}}$ and ends at $\theta_m$; what it learned is its
# **task vector** $\delta_m = \theta_m - \theta_{\text{init}}$. SLERP merges two of them along the arc
# between them, per tensor, with $\cos\Omega = \langle \delta_1, \delta_2\rangle /
# (\lVert\delta_1\rVert\,\lVert\delta_2\rVert)$:
#
# $$\operatorname{slerp}(\theta_{\text{init}}, \theta_1, \theta_2, \lambda) = \theta_{\text{init}}
#  + \frac{\sin((1-\lambda)\Omega)}{\sin\Omega}\,\delta_1 + \frac{\sin(\lambda\Omega)}{\sin\Omega}\,\delta_2$$
#
# (the point at angle $\lambda\Omega$ on the arc, derived and drawn in appendix 03b). **Lemma 1**: for
# $\lVert\delta_1\rVert = \lVert\delta_2\rVert = l$, SLERP's task vector has norm $l$. **Lemma 2**: LERP's
# has $l\sqrt{(1+\cos\Omega)/2}$ at $\lambda = 1/2$, so $1 - 1/\sqrt 2 \approx 29\%$ is lost for orthogonal ones.
#
# ### Exercise 3 · SLERP of two task vectors
# Write `slerp2(theta_init, theta_1, theta_2, lam)` for state dicts, **tensor by tensor** (each has
# its own $\Omega$); with no angle (a task vector of norm 0, or collinear ones: $\sin\Omega \approx
# 0$), fall back to LERP of the task vectors. The grader tries both.

# %%
def slerp2(theta_init, theta_1, theta_2, lam=0.5):
    raise NotImplementedError  # your code here


slerp2 = exercises.check("slerp", slerp2)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("slerp"))

# %% [markdown]
# ### Spot the bug · a LERP fallback
# A public reproduction wrote its SLERP like this. What happens when two runs end up with
# collinear task vectors for one tensor (for example, two runs that saw the same data)?

# %%
print(inspect.getsource(bugs.slerp_fallback_forgets_init))

# %% [markdown]
# <details><summary>Answer</summary>
#
# The fallback returns the merged **task vector** without adding $\theta_{\text{init}}$ back: that
# tensor becomes a small difference of weights. In a language model the layer is essentially zeroed,
# silently, and only when the angle is tiny. The grader's collinear case catches it; on the toy, two
# identical runs merged this way land further below the exact front.
# </details>

# %%
assert exercises.spot_the_bug("slerp", "LERP fallback forgets theta_init") == "wrong"
run = toy.make_run(reward)(0, 0, theta_sft)[0]  # one toy run, merged with itself
gap = {name: toy.optimal_reward_at_kl(theta_sft, reward, toy.kl(t, theta_sft)) - toy.expected_reward(t, reward)
       for name, t in (("SLERP", slerp(theta_sft, [run] * 2)), ("bug", bugs.slerp_fallback_forgets_init(theta_sft, run, run)))}
print("reward below the exact front at the merge's KL:", {name: round(value, 4) for name, value in gap.items()})
assert gap["bug"] > gap["SLERP"]

# %% [markdown]
# ## 3. LITI, and when a straight line fails
#
# The merge is pulled back, $\theta_\eta = (1-\eta)\,\theta_{\text{init}} + \eta\,\theta_{\text{slerp}}$, and
# becomes the next $\theta_{\text{init}}$: a walk on the straight segment, trading KL for reward.
#
# ### Exercise 4 · the end of an iteration: SLERP, then LITI
# Write `next_init(theta_init, thetas, eta)`: `thetas` are the $M$ trained runs; merge them with
# `slerp(theta_init, thetas)` (imported: it handles $M > 2$ too, Eq. 26), then write the LITI step
# yourself, in a new dict, leaving the inputs untouched. Graded against `toy.warp`'s own merge.

# %%
def next_init(theta_init, thetas, eta):
    raise NotImplementedError  # your code here


next_init = exercises.check("warp_merge", next_init)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("warp_merge"))

# %% [markdown]
# **Linear mode connectivity.** A straight line's **barrier** is the largest dip of the reward below
# the chord between its ends (`toy.lmc_barrier`). For one prompt and $r = (1, 1, 0)$, logits $(10, 0, 5)$
# and $(0, 10, 5)$ score $\approx 0.99$, their midpoint $(5, 5, 5)$ only $2/3$: different starting points.

# %%
one = lambda z: {"table": torch.tensor([z], dtype=torch.float64), "bias": torch.zeros(3, dtype=torch.float64)}
r_two, start_1, start_2 = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64), one([10.0, 0.0, 5.0]), one([0.0, 10.0, 5.0])
run_from = lambda theta, rew, seed: toy.rl_run(theta, rew, toy.ToyConfig(T=50, mu=0.01, **settings), torch.Generator().manual_seed(seed))[0]
pairs = {"different starts: the two policies": (start_1, start_2, r_two),
         "different starts: a run from each": (run_from(start_1, r_two, 0), run_from(start_2, r_two, 1), r_two),
         "shared start: two runs, r = (1, 1, 0)": (run_from(start_1, r_two, 0), run_from(start_1, r_two, 1), r_two),
         "shared start: two runs on the toy": (run_from(theta_sft, reward, 0), run_from(theta_sft, reward, 1), reward)}
fig, ax = plt.subplots(figsize=(7, 3))
ts, barrier = np.linspace(0, 1, 21), {name: toy.lmc_barrier(*pair) for name, pair in pairs.items()}
for name, (a, b, rew) in pairs.items():
    ends = toy.expected_reward(a, rew), toy.expected_reward(b, rew)
    ax.plot(ts, [toy.expected_reward(liti(a, b, t), rew) - (1 - t) * ends[0] - t * ends[1] for t in ts.tolist()],
            ".-", label=f"{name}: barrier {barrier[name]:.1e}")
ax.set(xlabel="position t on the line", ylabel="reward minus chord", title="Dips below the chord")
ax.legend(fontsize=8)
plt.show()
assert barrier["different starts: the two policies"] > 0.3  # (e^10 + 1) / (e^10 + 1 + e^5) - 2/3
shared = max(barrier[name] for name in pairs if name.startswith("shared"))
assert shared < 0.01 * min(barrier[name] for name in pairs if name.startswith("different"))

# %% [markdown]
# Runs from a shared start stay in one basin; policies from different starts can sit in two. WARP
# merges runs of **one** iteration, all from one $\theta_{\text{init}}$ (notebook 05: the barrier on GPT-2).
#
# ### Spot the bug · a LITI that does nothing
# Another reproduction's end of an iteration. It runs, the loss curves look fine. What is wrong?

# %%
print(inspect.getsource(bugs.warp_merge_liti_does_nothing))

# %% [markdown]
# <details><summary>Answer</summary>
#
# The merge is overwritten by `theta_init`, so the result is $\theta_{\text{init}}$ whatever $\eta$:
# every iteration restarts from SFT, $I$ repeats of the first. On the toy, WARP with $\eta = 0$ (below).
# </details>

# %%
assert exercises.spot_the_bug("warp_merge", "LITI that does nothing") == "wrong"
for eta in (0.5, 0.0):  # eta = 0: what the bug does
    last = toy.warp(theta_sft, reward, toy.ToyConfig(eta=eta))[-1]["theta_merged"]
    print(f"eta = {eta}: iteration 3 merges at reward {toy.expected_reward(last, reward):.4f}, "
          f"KL {toy.kl(last, theta_sft):.4f}")

# %% [markdown]
# ## 4. Algorithm 1 on the toy
#
# For $i = 1..I$: $M$ runs from $\theta_{\text{init}}$, each $T$ REINFORCE steps on
# $r_\beta = r - \beta \log(\pi_\theta / \pi_{\text{ema}})$ with its own EMA anchor; then
# $\theta_{\text{init}} \leftarrow \operatorname{liti}(\theta_{\text{init}}, \operatorname{slerp}(\theta_{\text{init}}, \{\theta_m\}), \eta)$.
#
# ### Exercise 5 · the loop
# Write `warp_loop(theta_sft, run, I, M, eta)` returning the last $\theta_{\text{init}}$; `run(i, m, theta)`
# trains run $m$ of iteration $i$ from `theta` and returns `(theta_m, theta_ema)`, the policy and its
# anchor. Graded against `toy.warp`'s weights.

# %%
def warp_loop(theta_sft, run, I, M, eta):
    raise NotImplementedError  # your code here


warp_loop = exercises.check("warp_loop", warp_loop)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
print(exercises.solution("warp_loop"))

# %%
history = toy.warp(theta_sft, reward)  # I=3, M=2, T=50, mu=0.01, eta=0.5
mine = warp_loop(theta_sft, toy.make_run(reward), 3, 2, 0.5)  # your loop gives toy.warp's weights
assert all(torch.allclose(mine[k], history[-1]["theta_next"][k], atol=1e-12) for k in mine)
first = history[0]  # its first iteration, merged three ways
merges = {**{f"run {m}": t for m, t in enumerate(first["thetas"], 1)}, "SLERP": slerp(theta_sft, first["thetas"]),
          "LERP": lerp(theta_sft, first["thetas"]), "SLERP of EMAs (bug)": slerp(theta_sft, first["theta_emas"])}
report = {name: (toy.expected_reward(t, reward), toy.kl(t, theta_sft)) for name, t in merges.items()}
print("\n".join(f"{name:20} reward {value:.4f}   KL to SFT {kl:.4f}" for name, (value, kl) in report.items()))
assert report["SLERP"][0] >= report["LERP"][0] and report["SLERP"][1] >= report["LERP"][1]

# %% [markdown]
# ### Spot the bug · which models are merged?
# A reproduction kept, for each run, both the policy and its EMA anchor, and looped like this:

# %%
print(inspect.getsource(bugs.warp_loop_slerp_of_emas))

# %% [markdown]
# <details><summary>Answer</summary>
#
# It merges the **anchors** $\theta^m_{\text{ema}}$, not the trained policies $\theta^m$. With $\mu = 0.01$
# and $T = 50$ an anchor has moved well under half of the way: the merge throws most of each run
# away. The row "SLERP of EMAs (bug)" above shows it.
# </details>

# %%
assert exercises.spot_the_bug("warp_loop", "SLERP of the EMA models") == "wrong"
assert all(bug < right for bug, right in zip(report["SLERP of EMAs (bug)"], report["SLERP"]))

# %% [markdown]
# ### The playground
# WARP with SLERP and with LERP merges (same seeds): each iteration's runs, the LITI segment to the
# merge, and where $\eta$ stops on it. Drawn once with the defaults, then wired to sliders.


# %%
def draw_warp(mu=0.01, eta=0.5, beta=0.1, M=2, I=3):
    def point(theta):  # (KL to SFT, expected reward)
        return toy.kl(theta, theta_sft), toy.expected_reward(theta, reward)

    _, ax = plt.subplots(figsize=(7, 4))
    for merge, color in ((slerp, "tab:blue"), (lerp, "tab:orange")):
        for i, record in enumerate(toy.warp(theta_sft, reward, toy.ToyConfig(I=I, M=M, mu=mu, eta=eta, beta=beta), merge=merge)):
            ax.plot(*toy.liti_path(record["theta_init"], record["theta_merged"], np.linspace(0, 1, 11),
                                   reward, theta_sft), color=color, alpha=0.5)
            ax.plot(*point(record["theta_merged"]), "*", color=color, ms=9)
            ax.plot(*zip(*map(point, record["thetas"])), ".", color=color, alpha=0.5)
            ax.plot(*point(record["theta_next"]), "o", color=color, mfc="white",
                    label=f"{merge.__name__.upper()}: LITI points" if i == 0 else None)
    ax.plot(*point(theta_sft), "ks", label="SFT")
    ax.plot(front_kls, front_rewards, "k", lw=1, alpha=0.5, label="exact optimal front")
    ax.set(xlabel="KL($\\pi$ || $\\pi_{sft}$)", ylabel="expected reward",
           title=f"$\\mu$={mu}, $\\eta$={eta}, $\\beta$={beta}, M={M}: runs ·, merges ★")
    ax.legend(fontsize=8)
    plt.show()


draw_warp()  # the static figure, defaults

# %%
slider = {"continuous_update": False, "readout_format": ".2f"}  # redraw when a slider is released
display(widgets.interactive(  # non-blocking: a run without a browser renders the defaults
    draw_warp, I=widgets.fixed(3),
    mu=widgets.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.25, description="mu", continuous_update=False),
    eta=widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="eta", **slider),
    beta=widgets.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.05, description="beta", **slider),
    M=widgets.IntSlider(value=2, min=1, max=5, description="M", continuous_update=False)))

# %% [markdown]
# ## Summary
#
# - The **EMA anchor** weighs the policy of $k$ steps ago by $\mu(1-\mu)^k$ and lags a drifting policy
#   by $(1-\mu)v/\mu$: the penalty relaxes, the policy travels further (equal-KL verdict: above).
# - **SLERP** merges task vectors along the arc, keeping their norm (Lemma 1), where LERP shrinks it.
# - **LITI** walks back from the merge towards $\theta_{\text{init}}$ and restarts the next iteration
#   there. Runs from a shared start show no barrier between them; policies from different starts can.
# - The three bugs above all run without error: only tests catch them.
#
# ## Questions
#
# 1. With $\mu = 0.01$, roughly how many steps of the past does the anchor remember?
# 2. What is $\theta_{\text{ema}}^t$ for $\mu = 1$, and for $\mu = 0$?
# 3. Two orthogonal task vectors of norm $l$: the norm of their LERP at $\lambda = 1/2$? Of their SLERP?
# 4. Why does WARP merge only runs started from the same $\theta_{\text{init}}$?
#
# <details><summary>Answers</summary>
#
# 1. About $1/\mu = 100$ steps (the policy of $k$ steps ago weighs $\mu(1-\mu)^k$).
# 2. $\mu = 1$: the latest policy (no penalty at all). $\mu = 0$: $\theta_{\text{init}}$, an SFT anchor.
# 3. LERP: $l/\sqrt{2}$ (Lemma 2 with $\cos\Omega = 0$); SLERP: $l$ (Lemma 1).
# 4. Runs from a shared start stay linearly connected, so the weights in between are good policies;
#    policies from different starts can have a barrier between them (the $r = (1, 1, 0)$ example).
# </details>
#
# ## Try it
#
# - In the playground: $\eta = 0$ never leaves SFT; $\beta = 0$ drops the penalty; larger $M$ widens SLERP's lead.
# - In the anchor measurement, try $\mu = 0.05$ or $T = 50$: does the equal-KL verdict change?
# - Train the runs from the two different starts for longer (`T=500`): does their barrier close?

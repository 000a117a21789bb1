"""Oracles for warp_utils.course.toy: exact sums against brute-force loops, policy gradients against
autograd, and the wiring of Algorithm 1 (EMA anchor, SLERP of the trained policies, LITI)."""

import itertools
import math

import pytest
import torch

from warp_utils.core.weights import lerp, liti, slerp
from warp_utils.course import toy


def small_bandit(seed=0):
    return toy.make_bandit(num_prompts=3, num_tokens=5, seed=seed)


def perturbed(theta, seed, scale=0.7):
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in theta.items()
    }


def test_expected_reward_and_kl_match_brute_force_sums():
    theta_p, reward = small_bandit()
    theta_q = perturbed(theta_p, 1)
    num_prompts, num_tokens = reward.shape
    total_reward, total_kl = 0.0, 0.0
    for x in range(num_prompts):
        z_p = [theta_p["table"][x, y].item() + theta_p["bias"][y].item() for y in range(num_tokens)]
        z_q = [theta_q["table"][x, y].item() + theta_q["bias"][y].item() for y in range(num_tokens)]
        p = [math.exp(z) / sum(math.exp(v) for v in z_p) for z in z_p]
        q = [math.exp(z) / sum(math.exp(v) for v in z_q) for z in z_q]
        total_reward += sum(p[y] * reward[x, y].item() for y in range(num_tokens))
        total_kl += sum(p[y] * math.log(p[y] / q[y]) for y in range(num_tokens))
    assert toy.expected_reward(theta_p, reward) == pytest.approx(
        total_reward / num_prompts, abs=1e-12
    )
    assert toy.kl(theta_p, theta_q) == pytest.approx(total_kl / num_prompts, abs=1e-12)
    assert toy.kl(theta_p, theta_p) == pytest.approx(0.0, abs=1e-15)


def objective(theta, theta_ema, reward, beta):
    """E_x [ E_pi r - beta KL(pi || pi_ema) ], the quantity the exact gradient must ascend."""
    log_pi = torch.log_softmax(theta["table"] + theta["bias"], -1)
    log_ema = torch.log_softmax(theta_ema["table"] + theta_ema["bias"], -1).detach()
    pi = log_pi.exp()
    return ((pi * reward).sum(-1) - beta * (pi * (log_pi - log_ema)).sum(-1)).mean()


@pytest.mark.parametrize("beta", [0.0, 0.3])
def test_exact_policy_gradient_is_the_gradient_of_the_kl_regularised_reward(beta):
    theta_sft, reward = small_bandit()
    theta, theta_ema = perturbed(theta_sft, 1), perturbed(theta_sft, 2)
    leaf = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    objective(leaf, theta_ema, reward, beta).backward()
    grad = toy.policy_gradient(theta, theta_ema, reward, beta)
    for key in theta:
        torch.testing.assert_close(grad[key], leaf[key].grad, atol=1e-12, rtol=0)


def test_sampled_gradient_is_reinforce_with_leave_one_out_baseline():
    theta_sft, reward = small_bandit()
    theta, theta_ema, beta = perturbed(theta_sft, 1), perturbed(theta_sft, 2), 0.2
    prompts = torch.tensor([0, 2, 2, 1, 0, 2])
    actions = torch.tensor([4, 1, 1, 0, 3, 2])
    leaf = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    log_pi = torch.log_softmax(leaf["table"] + leaf["bias"], -1)
    log_ema = torch.log_softmax(theta_ema["table"] + theta_ema["bias"], -1)
    r_beta = [
        (reward[x, y] - beta * (log_pi[x, y] - log_ema[x, y])).item()
        for x, y in zip(prompts.tolist(), actions.tolist())
    ]
    n = len(r_beta)
    surrogate = 0.0
    for i, (x, y) in enumerate(zip(prompts.tolist(), actions.tolist())):
        baseline = (sum(r_beta) - r_beta[i]) / (n - 1)  # every other sample's mean
        surrogate = surrogate + (r_beta[i] - baseline) * log_pi[x, y] / n
    surrogate.backward()
    grad = toy.policy_gradient(theta, theta_ema, reward, beta, prompts, actions)
    for key in theta:
        torch.testing.assert_close(grad[key], leaf[key].grad, atol=1e-12, rtol=0)


def test_sampled_gradient_is_unbiased():
    theta_sft, reward = small_bandit()
    theta, theta_ema, beta = perturbed(theta_sft, 1), perturbed(theta_sft, 2), 0.2
    exact = toy.policy_gradient(theta, theta_ema, reward, beta)
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    prompts = torch.randint(reward.shape[0], (n,), generator=gen)
    actions = torch.multinomial(toy.probs(theta)[prompts], 1, generator=gen).squeeze(1)
    sampled = toy.policy_gradient(theta, theta_ema, reward, beta, prompts, actions)
    for key in theta:  # Monte Carlo error ~ 1/sqrt(n) ~ 2e-3 of O(1) terms, << the gradient
        torch.testing.assert_close(sampled[key], exact[key], atol=2e-3, rtol=0)
    assert exact["table"].abs().max() > 2e-2  # the check above is not trivially met


def test_sampled_gradient_without_baseline_is_plain_reinforce_and_unbiased():
    theta_sft, reward = small_bandit()
    theta, theta_ema, beta = perturbed(theta_sft, 1), perturbed(theta_sft, 2), 0.2
    prompts, actions = torch.tensor([0, 2, 1]), torch.tensor([4, 1, 0])
    leaf = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    log_pi = torch.log_softmax(leaf["table"] + leaf["bias"], -1)
    log_ema = torch.log_softmax(theta_ema["table"] + theta_ema["bias"], -1)
    surrogate = sum((reward[x, y] - beta * (log_pi[x, y] - log_ema[x, y])).item() * log_pi[x, y] / 3
                    for x, y in zip(prompts.tolist(), actions.tolist()))
    surrogate.backward()
    grad = toy.policy_gradient(theta, theta_ema, reward, beta, prompts, actions, baseline="none")
    for key in theta:
        torch.testing.assert_close(grad[key], leaf[key].grad, atol=1e-12, rtol=0)
    exact = toy.policy_gradient(theta, theta_ema, reward, beta)
    gen = torch.Generator().manual_seed(1)
    n = 400_000
    prompts = torch.randint(reward.shape[0], (n,), generator=gen)
    actions = torch.multinomial(toy.probs(theta)[prompts], 1, generator=gen).squeeze(1)
    sampled = toy.policy_gradient(theta, theta_ema, reward, beta, prompts, actions, baseline="none")
    for key in theta:
        torch.testing.assert_close(sampled[key], exact[key], atol=3e-3, rtol=0)
    with pytest.raises(ValueError, match="baseline"):
        toy.policy_gradient(theta, theta_ema, reward, beta, prompts, actions, baseline="mean")


def test_batch_of_one_raises():
    theta, reward = small_bandit()
    with pytest.raises(ValueError, match="batch_size >= 2"):
        toy.policy_gradient(theta, theta, reward, 0.1, torch.tensor([0]), torch.tensor([1]))


def test_rl_run_anchor_follows_the_ema_recursion():
    theta_sft, reward = small_bandit()
    run = {"T": 5, "beta": 0.1, "lr": 1.0, "batch_size": 4}
    theta, anchor = toy.rl_run(theta_sft, reward, toy.ToyConfig(mu=0.0, **run), torch.Generator().manual_seed(0))
    for key in theta_sft:
        assert torch.equal(anchor[key], theta_sft[key])  # mu = 0: the anchor never moves
        assert not torch.equal(theta[key], theta_sft[key])
    theta, anchor = toy.rl_run(theta_sft, reward, toy.ToyConfig(mu=1.0, **run), torch.Generator().manual_seed(0))
    for key in theta_sft:
        assert torch.equal(anchor[key], theta[key])  # mu = 1: the anchor is the policy


def test_warp_wiring():
    theta_sft, reward = small_bandit()
    settings = {"I": 2, "M": 3, "T": 5, "batch_size": 4, "seed": 3}
    history = toy.warp(theta_sft, reward, toy.ToyConfig(eta=0.5, **settings))
    assert len(history) == 2 and all(len(rec["thetas"]) == 3 for rec in history)
    assert all(torch.equal(history[0]["theta_init"][k], theta_sft[k]) for k in theta_sft)
    for rec in history:
        expected = slerp(rec["theta_init"], rec["thetas"])  # SLERP of trained policies, not EMAs
        for key in theta_sft:
            assert torch.equal(rec["theta_merged"][key], expected[key])
            liti = 0.5 * rec["theta_init"][key] + 0.5 * rec["theta_merged"][key]
            torch.testing.assert_close(rec["theta_next"][key], liti, atol=1e-15, rtol=0)
        assert not torch.equal(rec["thetas"][0]["table"], rec["thetas"][1]["table"])  # runs differ
    for key in theta_sft:  # the next iteration starts from LITI's output
        assert torch.equal(history[1]["theta_init"][key], history[0]["theta_next"][key])
    again = toy.warp(theta_sft, reward, toy.ToyConfig(eta=0.5, **settings))
    assert torch.equal(again[-1]["theta_next"]["table"], history[-1]["theta_next"]["table"])
    lerped = toy.warp(theta_sft, reward, toy.ToyConfig(eta=0.5, **settings), merge=lerp)
    for key in theta_sft:  # same seeds: same first-iteration runs, merged the LERP way
        assert torch.equal(lerped[0]["thetas"][1][key], history[0]["thetas"][1][key])
        assert torch.equal(
            lerped[0]["theta_merged"][key], lerp(theta_sft, history[0]["thetas"])[key]
        )


def test_warp_is_algorithm1_around_make_run_and_rl_run_is_anchored_run_around_make_step():
    theta_sft, reward = small_bandit()
    history = toy.warp(theta_sft, reward, toy.ToyConfig(I=2, M=2, T=5, batch_size=4, seed=2, mu=0.1))
    run = toy.make_run(reward, T=5, batch_size=4, seed=2, mu=0.1)
    again = toy.algorithm1(theta_sft, run, I=2, M=2, eta=0.5)
    for key in theta_sft:
        assert torch.equal(again[-1]["theta_next"][key], history[-1]["theta_next"][key])
    theta, anchor = run(1, 0, history[1]["theta_init"])  # run m of iteration i, re-run: the same
    for key in theta_sft:
        assert torch.equal(theta[key], history[1]["thetas"][0][key])
        assert torch.equal(anchor[key], history[1]["theta_emas"][0][key])
    settings = {"beta": 0.1, "lr": 1.0, "batch_size": 4}
    by_run = toy.rl_run(theta_sft, reward, toy.ToyConfig(T=6, mu=0.2, **settings), torch.Generator().manual_seed(5))
    step = toy.make_step(reward, generator=torch.Generator().manual_seed(5), **settings)
    theta, anchor = dict(theta_sft), dict(theta_sft)
    for _ in range(6):  # the loop written out: step, then the EMA of the anchor
        theta = step(theta, anchor)
        anchor = {k: 0.8 * anchor[k] + 0.2 * theta[k] for k in anchor}
    for key in theta_sft:
        torch.testing.assert_close(by_run[0][key], theta[key], atol=1e-14, rtol=0)
        torch.testing.assert_close(by_run[1][key], anchor[key], atol=1e-14, rtol=0)


def test_warp_with_eta_zero_never_leaves_sft_and_eta_one_m_one_is_the_run():
    theta_sft, reward = small_bandit()
    frozen = toy.warp(theta_sft, reward, toy.ToyConfig(I=2, M=2, T=5, eta=0.0, batch_size=4))
    for key in theta_sft:
        assert torch.equal(frozen[-1]["theta_next"][key], theta_sft[key])
    single = toy.warp(theta_sft, reward, toy.ToyConfig(I=1, M=1, T=5, eta=1.0, batch_size=4))
    for key in theta_sft:
        assert torch.equal(single[0]["theta_next"][key], single[0]["thetas"][0][key])


def test_liti_path_endpoints():
    theta_sft, reward = small_bandit()
    merged = perturbed(theta_sft, 4)
    kls, rewards = toy.liti_path(theta_sft, merged, [0.0, 1.0], reward, theta_sft)
    assert kls[0] == 0.0 and kls[1] == pytest.approx(toy.kl(merged, theta_sft), abs=1e-15)
    assert rewards == pytest.approx(
        [toy.expected_reward(theta_sft, reward), toy.expected_reward(merged, reward)], abs=1e-15
    )


# ----------------------------------------------------------------------------- linear mode connectivity


def one_prompt(logits):
    return {"table": torch.tensor([logits], dtype=torch.float64), "bias": torch.zeros(len(logits), dtype=torch.float64)}


def test_lmc_barrier_between_two_modes_is_the_closed_form():
    # r = (1, 1, 0): each end puts ~0.99 on one rewarded token; the midpoint's logits (5, 5, 5)
    # are uniform, reward 2/3, and the reward along the line is lowest there (by symmetry and
    # convexity of e^(10(1-t)) + e^(10t)), while the chord is flat at the ends' reward
    reward = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    theta_1, theta_2 = one_prompt([10.0, 0.0, 5.0]), one_prompt([0.0, 10.0, 5.0])
    end = (math.exp(10) + 1) / (math.exp(10) + 1 + math.exp(5))
    assert toy.expected_reward(theta_1, reward) == pytest.approx(end, abs=1e-15)
    assert toy.expected_reward(liti(theta_1, theta_2, 0.5), reward) == pytest.approx(2 / 3, abs=1e-15)
    assert toy.lmc_barrier(theta_1, theta_2, reward, points=21) == pytest.approx(end - 2 / 3, abs=1e-15)
    assert toy.lmc_barrier(theta_1, theta_2, reward, points=4) < end - 2 / 3  # t = 1/3, 2/3 miss the dip
    assert toy.lmc_barrier(theta_1, theta_2, reward, points=3) == toy.lmc_barrier(theta_1, theta_2, reward, points=21)


def test_lmc_barrier_is_the_dip_below_the_chord_and_zero_on_a_line_of_constant_reward():
    theta_sft, reward = small_bandit()
    theta_b = perturbed(theta_sft, 3)
    ts = [i / 6 for i in range(1, 6)]
    r_a, r_b = toy.expected_reward(theta_sft, reward), toy.expected_reward(theta_b, reward)
    dips = [(1 - t) * r_a + t * r_b - toy.expected_reward(liti(theta_sft, theta_b, t), reward) for t in ts]
    assert toy.lmc_barrier(theta_sft, theta_b, reward, points=7) == pytest.approx(max(dips), abs=1e-15)
    shifted = {"table": theta_sft["table"] + 1.0, "bias": theta_sft["bias"] - 1.0}  # the same policy
    assert toy.lmc_barrier(theta_sft, shifted, reward) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="points"):
        toy.lmc_barrier(theta_sft, theta_b, reward, points=2)


def test_runs_from_a_shared_start_show_no_barrier_and_policies_from_different_starts_do():
    reward = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    start_1, start_2 = one_prompt([10.0, 0.0, 5.0]), one_prompt([0.0, 10.0, 5.0])
    settings = {"T": 50, "mu": 0.01, "beta": 0.1, "lr": 4.0, "batch_size": 8}

    def run(start, seed):
        return toy.rl_run(start, reward, toy.ToyConfig(**settings), torch.Generator().manual_seed(seed))[0]

    different = toy.lmc_barrier(run(start_1, 0), run(start_2, 1), reward)
    shared = toy.lmc_barrier(run(start_1, 0), run(start_1, 1), reward)
    assert different > 0.03 and shared < 1e-6


# ----------------------------------------------------------------------------- the optimal front


def simplex_grid(step):
    """Every distribution (p0, p1, p2) on a grid of the 3-simplex, strictly positive."""
    n = round(1 / step)
    return [(i / n, j / n, (n - i - j) / n) for i in range(1, n) for j in range(1, n - i)]


def test_optimal_value_is_the_objective_at_the_closed_form_optimum_and_beats_random_policies():
    theta_sft, reward = small_bandit()
    for beta in (0.05, 0.3, 2.0):
        star = toy.optimal_policy(theta_sft, reward, beta)
        value = toy.expected_reward(star, reward) - beta * toy.kl(star, theta_sft)
        assert value == pytest.approx(toy.optimal_value(theta_sft, reward, beta), abs=1e-12)
        for seed in range(20):  # J(pi) = J(pi*) - beta KL(pi || pi*) < J(pi*)
            other = perturbed(star, seed, scale=0.3)
            gap = value - (toy.expected_reward(other, reward) - beta * toy.kl(other, theta_sft))
            assert gap == pytest.approx(beta * toy.kl(other, star), abs=1e-12)
            assert gap > 0


def test_exact_gradient_ascent_with_a_frozen_sft_anchor_converges_to_the_closed_form():
    theta_sft, reward = small_bandit()
    beta, theta = 0.2, {k: v.clone() for k, v in theta_sft.items()}
    for _ in range(4000):  # the anchor never moves (mu = 0): the fixed point is pi*_beta
        grad = toy.policy_gradient(theta, theta_sft, reward, beta)
        theta = {k: theta[k] + 5.0 * grad[k] for k in theta}
    torch.testing.assert_close(
        toy.probs(theta), toy.probs(toy.optimal_policy(theta_sft, reward, beta)), atol=1e-8, rtol=0
    )


def test_optimal_reward_at_kl_matches_a_brute_force_search_over_the_simplex():
    gen = torch.Generator().manual_seed(3)
    theta_sft = {"table": torch.randn(1, 3, generator=gen, dtype=torch.float64),
                 "bias": torch.zeros(3, dtype=torch.float64)}
    reward = torch.tensor([[0.1, 0.9, 0.5]], dtype=torch.float64)
    pi_sft = toy.probs(theta_sft)[0].tolist()
    grid = [(p, sum(pk * math.log(pk / qk) for pk, qk in zip(p, pi_sft)),
             sum(pk * rk for pk, rk in zip(p, reward[0].tolist()))) for p in simplex_grid(0.002)]
    for budget in (0.01, 0.1, 0.3, 0.6):
        brute = max(r for _, k, r in grid if k <= budget)
        exact = toy.optimal_reward_at_kl(theta_sft, reward, budget)
        assert brute <= exact + 1e-12  # nothing on the grid beats the front...
        assert exact - brute < 2e-3  # ...and the grid gets within its resolution of it
    greedy_kl = -math.log(pi_sft[1])  # all mass on the best token
    assert toy.optimal_reward_at_kl(theta_sft, reward, greedy_kl + 1.0) == pytest.approx(0.9)


def test_no_toy_policy_lies_above_the_optimal_front():
    theta_sft, reward = small_bandit()
    history = toy.warp(theta_sft, reward, toy.ToyConfig(I=2, M=2, T=30, lr=4.0))
    policies = [theta for record in history for theta in (*record["thetas"], record["theta_merged"])]
    policies += [perturbed(theta_sft, seed, scale=1.5) for seed in range(10)]
    for theta in policies:
        budget = toy.kl(theta, theta_sft)
        assert toy.expected_reward(theta, reward) <= toy.optimal_reward_at_kl(theta_sft, reward, budget) + 1e-9
    kls, rewards = toy.optimal_front(theta_sft, reward, [0.03, 0.1, 0.3, 1.0])
    assert all(a > b for a, b in itertools.pairwise(kls))
    assert all(a > b for a, b in itertools.pairwise(rewards))


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_optimal_policy_rejects_a_beta_that_is_not_positive_and_finite(beta):
    theta_sft, reward = small_bandit()
    with pytest.raises(ValueError, match="beta"):
        toy.optimal_policy(theta_sft, reward, beta)

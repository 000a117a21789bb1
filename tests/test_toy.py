"""Oracles for warp_utils.toy: exact sums against brute-force loops, policy gradients against
autograd, and the wiring of Algorithm 1 (EMA anchor, SLERP of the trained policies, LITI)."""

import math

import pytest
import torch

from warp_utils import toy
from warp_utils.weights import lerp, slerp


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


def test_batch_of_one_raises():
    theta, reward = small_bandit()
    with pytest.raises(ValueError, match="batch_size >= 2"):
        toy.policy_gradient(theta, theta, reward, 0.1, torch.tensor([0]), torch.tensor([1]))


def test_rl_run_anchor_follows_the_ema_recursion():
    theta_sft, reward = small_bandit()
    run = {"T": 5, "beta": 0.1, "lr": 1.0, "batch_size": 4}
    theta, anchor = toy.rl_run(
        theta_sft, reward, mu=0.0, generator=torch.Generator().manual_seed(0), **run
    )
    for key in theta_sft:
        assert torch.equal(anchor[key], theta_sft[key])  # mu = 0: the anchor never moves
        assert not torch.equal(theta[key], theta_sft[key])
    theta, anchor = toy.rl_run(
        theta_sft, reward, mu=1.0, generator=torch.Generator().manual_seed(0), **run
    )
    for key in theta_sft:
        assert torch.equal(anchor[key], theta[key])  # mu = 1: the anchor is the policy


def test_warp_wiring():
    theta_sft, reward = small_bandit()
    settings = {"I": 2, "M": 3, "T": 5, "batch_size": 4, "seed": 3}
    history = toy.warp(theta_sft, reward, eta=0.5, **settings)
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
    again = toy.warp(theta_sft, reward, eta=0.5, **settings)
    assert torch.equal(again[-1]["theta_next"]["table"], history[-1]["theta_next"]["table"])
    lerped = toy.warp(theta_sft, reward, eta=0.5, merge=lerp, **settings)
    for key in theta_sft:  # same seeds: same first-iteration runs, merged the LERP way
        assert torch.equal(lerped[0]["thetas"][1][key], history[0]["thetas"][1][key])
        assert torch.equal(
            lerped[0]["theta_merged"][key], lerp(theta_sft, history[0]["thetas"])[key]
        )


def test_warp_with_eta_zero_never_leaves_sft_and_eta_one_m_one_is_the_run():
    theta_sft, reward = small_bandit()
    frozen = toy.warp(theta_sft, reward, I=2, M=2, T=5, eta=0.0, batch_size=4)
    for key in theta_sft:
        assert torch.equal(frozen[-1]["theta_next"][key], theta_sft[key])
    single = toy.warp(theta_sft, reward, I=1, M=1, T=5, eta=1.0, batch_size=4)
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

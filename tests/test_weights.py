"""Exact oracles for warp_utils.core.weights: a float64 reference written from the paper's formulas,
the paper's lemmas, degenerate angles, dtypes, pass-through buffers, purity and tied weights."""

import math
import os

import pytest
import torch
from torch import nn

from warp_utils.core.weights import ema, ema_, lerp, liti, slerp, task_vector

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES = {"a.weight": (4, 5), "a.bias": (7,), "b.weight": (2, 3, 4)}


def random_state(seed, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return {
        k: (scale * torch.randn(s, generator=gen, dtype=torch.float64)).to(dtype)
        for k, s in SHAPES.items()
    }


def clone(state):
    return {k: v.clone() for k, v in state.items()}


def assert_state_close(actual, expected, atol, rtol=0.0):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(
            actual[key].double(),
            expected[key].double(),
            atol=atol,
            rtol=rtol,
            msg=lambda m, key=key: f"{key}: {m}",
        )


# ----------------------------------------------------------------------------- float64 reference
# Written element by element from the paper's equations, independent of the module's code paths.


def ref_dot(a, b):
    return sum(x * y for x, y in zip(a.flatten().tolist(), b.flatten().tolist()))


def ref_slerp_pair(d1, d2, lam):
    omega = math.acos(ref_dot(d1, d2) / math.sqrt(ref_dot(d1, d1) * ref_dot(d2, d2)))
    return (math.sin((1 - lam) * omega) * d1 + math.sin(lam * omega) * d2) / math.sin(omega)


def ref_merge(theta_init, thetas, lam, pair):
    out = {}
    for key, init in theta_init.items():
        deltas = [theta[key].double() - init.double() for theta in thetas]
        if len(thetas) == 2:
            merged = pair(deltas[0], deltas[1], lam)
        else:  # Eq. 26: slerp_m = slerp(slerp_{m-1}, theta_m, 1/m)
            merged = deltas[0]
            for m in range(2, len(thetas) + 1):
                merged = pair(merged, deltas[m - 1], 1.0 / m)
        out[key] = init.double() + merged
    return out


def ref_slerp(theta_init, thetas, lam=0.5):
    return ref_merge(theta_init, thetas, lam, ref_slerp_pair)


def ref_lerp(theta_init, thetas, lam=0.5):
    weights = [1 - lam, lam] if len(thetas) == 2 else [1 / len(thetas)] * len(thetas)
    return {
        k: init.double() + sum(w * (t[k].double() - init.double()) for w, t in zip(weights, thetas))
        for k, init in theta_init.items()
    }


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_slerp_m2_matches_float64_reference(lam):
    init, t1, t2 = random_state(0), random_state(1), random_state(2)
    assert_state_close(slerp(init, [t1, t2], lam), ref_slerp(init, [t1, t2], lam), atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_slerp_float32_close_to_reference(lam):
    states = [random_state(s, torch.float32) for s in range(3)]
    out = slerp(states[0], states[1:], lam)
    assert all(v.dtype == torch.float32 for v in out.values())
    assert_state_close(out, ref_slerp(states[0], states[1:], lam), atol=1e-5)


def test_slerp_m3_is_iterative_eq26():
    init, *thetas = [random_state(s) for s in range(4)]
    expected = ref_slerp(init, thetas)
    assert_state_close(slerp(init, thetas), expected, atol=1e-12)
    # Not the same as one symmetric step on the first two: the 1/m schedule matters.
    wrong = ref_slerp(init, [ref_slerp(init, thetas[:2], 0.5), thetas[2]], 0.5)
    assert not torch.allclose(expected["a.weight"], wrong["a.weight"], atol=1e-3)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_lerp_m2_matches_reference(lam):
    init, t1, t2 = random_state(0), random_state(1), random_state(2)
    assert_state_close(lerp(init, [t1, t2], lam), ref_lerp(init, [t1, t2], lam), atol=1e-12)


def test_lerp_m3_is_uniform_average_of_task_vectors():
    init, *thetas = [random_state(s) for s in range(4)]
    assert_state_close(lerp(init, thetas), ref_lerp(init, thetas), atol=1e-12)


def test_liti_and_task_vector_match_reference():
    init, merged = random_state(0), random_state(1)
    for eta in (0.0, 0.3, 0.5, 1.0):
        expected = {k: (1 - eta) * init[k] + eta * merged[k] for k in init}
        assert_state_close(liti(init, merged, eta), expected, atol=1e-12)
    assert_state_close(
        task_vector(merged, init), {k: merged[k] - init[k] for k in init}, atol=1e-12
    )


def test_ema_matches_reference():
    anchor, theta = random_state(0), random_state(1)
    expected = {k: 0.99 * anchor[k] + 0.01 * theta[k] for k in anchor}
    assert_state_close(ema(anchor, theta, 0.01), expected, atol=1e-12)


def test_endpoints():
    init, t1, t2 = (random_state(s, torch.float32) for s in range(3))
    for merge in (slerp, lerp):
        assert_state_close(merge(init, [t1, t2], 0.0), t1, atol=1e-6)
        assert_state_close(merge(init, [t1, t2], 1.0), t2, atol=1e-6)
        assert_state_close(merge(init, [t1]), t1, atol=0.0)  # M = 1: that model
    for key in init:  # LITI endpoints are exact
        assert torch.equal(liti(init, t1, 0.0)[key], init[key])
        assert torch.equal(liti(init, t1, 1.0)[key], t1[key])


def two_task_vectors(omega, norm_1, norm_2, dim=50, seed=0):
    """Task vectors of given norms at angle omega, in a random 2-D plane of R^dim."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=torch.float64))
    e1, e2 = basis[:, 0], basis[:, 1]
    return norm_1 * e1, norm_2 * (math.cos(omega) * e1 + math.sin(omega) * e2)


@pytest.mark.parametrize("degrees", [20, 60, 90, 135, 170])
def test_lemma1_slerp_keeps_norm_and_lemma2_lerp_shrinks_it(degrees):
    omega, length = math.radians(degrees), 2.5
    d1, d2 = two_task_vectors(omega, length, length)
    init = {"w": torch.randn(50, dtype=torch.float64)}
    t1, t2 = {"w": init["w"] + d1}, {"w": init["w"] + d2}
    for lam in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        slerp_norm = (slerp(init, [t1, t2], lam)["w"] - init["w"]).norm().item()
        lerp_norm = (lerp(init, [t1, t2], lam)["w"] - init["w"]).norm().item()
        assert slerp_norm == pytest.approx(length, abs=1e-6)
        lemma2 = length * math.sqrt(1 - 2 * (1 - math.cos(omega)) * (lam - lam**2))
        assert lerp_norm == pytest.approx(lemma2, abs=1e-6)
    if degrees == 90:
        assert lerp_norm == pytest.approx(length, abs=1e-6)  # lam = 1 endpoint
        mid = (lerp(init, [t1, t2], 0.5)["w"] - init["w"]).norm().item()
        assert mid == pytest.approx(length / math.sqrt(2), abs=1e-6)


@pytest.mark.parametrize(
    "case",
    ["identical", "zero_first", "both_zero", "antiparallel", "parallel_scaled", "single_element"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_angles_fall_back_to_lerp(case, dtype):
    init = random_state(0, dtype)
    delta = random_state(1, dtype)
    second = {
        "identical": delta,
        "zero_first": delta,
        "both_zero": {k: torch.zeros_like(v) for k, v in delta.items()},
        "antiparallel": {k: -v for k, v in delta.items()},
        "parallel_scaled": {k: 3 * v for k, v in delta.items()},
        "single_element": {k: torch.full_like(v, 0.7) for k, v in delta.items()},
    }[case]
    first = (
        {k: torch.zeros_like(v) for k, v in delta.items()}
        if case in ("zero_first", "both_zero")
        else delta
    )
    if case == "single_element":
        init, first = {"x": init["a.bias"][:1]}, {"x": delta["a.bias"][:1]}
        second = {"x": second["a.bias"][:1]}
    t1 = {k: init[k] + first[k] for k in init}
    t2 = {k: init[k] + second[k] for k in init}
    for lam in (0.3, 0.5):
        merged, linear = slerp(init, [t1, t2], lam), lerp(init, [t1, t2], lam)
        for key in merged:
            assert torch.isfinite(merged[key]).all()
            torch.testing.assert_close(merged[key], linear[key], atol=1e-6, rtol=0)
            # theta_init is added back in the fallback too: the result is not the bare task vector
            expected = init[key] + (1 - lam) * first[key] + lam * second[key]
            torch.testing.assert_close(merged[key], expected, atol=1e-6, rtol=0)


def test_bf16_in_bf16_out_close_to_reference():
    states = [random_state(s, torch.bfloat16) for s in range(4)]
    init, t1, t2, t3 = states
    checks = [
        (slerp(init, [t1, t2], 0.3), ref_slerp(init, [t1, t2], 0.3)),
        (slerp(init, [t1, t2, t3]), ref_slerp(init, [t1, t2, t3])),
        (lerp(init, [t1, t2]), ref_lerp(init, [t1, t2])),
        (liti(init, t1, 0.3), {k: 0.7 * init[k].double() + 0.3 * t1[k].double() for k in init}),
        (ema(init, t1, 0.1), {k: 0.9 * init[k].double() + 0.1 * t1[k].double() for k in init}),
        (task_vector(t1, init), {k: t1[k].double() - init[k].double() for k in init}),
    ]
    for out, expected in checks:
        assert all(v.dtype == torch.bfloat16 for v in out.values())
        # one bf16 rounding of the float64 result (8 bits of mantissa), not one per operation
        for key in expected:
            torch.testing.assert_close(out[key].double(), expected[key], rtol=2**-8, atol=1e-3)


def with_buffers(state, mask_value=True):
    state = dict(state)
    state["attn.mask"] = torch.tensor([[True, False], [mask_value, True]])
    state["steps"] = torch.tensor(7, dtype=torch.int64)
    return state


def test_non_float_tensors_pass_through():
    init, t1, t2 = (with_buffers(random_state(s)) for s in range(3))
    outs = [
        slerp(init, [t1, t2]),
        slerp(init, [t1, t2, t1]),
        lerp(init, [t1, t2]),
        liti(init, t1, 0.5),
        ema(init, t1, 0.1),
        task_vector(t1, init),
        slerp(init, [t1]),
    ]
    for out in outs:
        for key in ("attn.mask", "steps"):
            assert out[key].dtype == init[key].dtype
            assert torch.equal(out[key], init[key])
    t_bad = with_buffers(random_state(1), mask_value=False)
    with pytest.raises(ValueError, match="attn.mask"):
        slerp(init, [t1, t_bad])
    with pytest.raises(ValueError, match="attn.mask"):
        ema(init, t_bad, 0.1)


def test_inputs_are_not_mutated():
    states = [with_buffers(random_state(s, torch.float32)) for s in range(4)]
    before = [clone(s) for s in states]
    init, t1, t2, t3 = states
    slerp(init, [t1, t2], 0.3), slerp(init, [t1, t2, t3]), lerp(init, [t1, t2, t3])
    liti(init, t1, 0.5), ema(init, t1, 0.5), task_vector(t1, init)
    out = slerp(init, [t1])
    out["a.weight"].add_(1.0)  # M = 1 returns a copy, not an alias of thetas[0]
    for state, saved in zip(states, before):
        for key in saved:
            assert torch.equal(state[key], saved[key]), key


def test_ema_mu_zero_is_identity_and_mu_one_is_copy():
    anchor, theta = random_state(0, torch.float32), random_state(1, torch.float32)
    for key in anchor:
        assert torch.equal(ema(anchor, theta, 0.0)[key], anchor[key])
        assert torch.equal(ema(anchor, theta, 1.0)[key], theta[key])


class NetWithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)  # float running_mean/var, int64 num_batches_tracked


def test_ema_inplace_three_steps_equal_closed_form():
    torch.manual_seed(0)
    ema_model, model = NetWithBuffers(), NetWithBuffers()
    with torch.no_grad():
        model.norm.running_mean.normal_()
        model.norm.num_batches_tracked.fill_(5)
    anchor0 = clone(ema_model.state_dict())
    target = clone(model.state_dict())
    mu = 0.2
    for _ in range(3):
        ema_(ema_model, model, mu)
    decay = (1 - mu) ** 3
    for key, value in ema_model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert torch.equal(value, anchor0[key])  # integer buffers are not averaged
        else:
            expected = decay * anchor0[key] + (1 - decay) * target[key]
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=0)
    assert torch.equal(model.state_dict()["linear.weight"], target["linear.weight"])


def tiny_gpt2(seed):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=64,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    return model


def test_ema_inplace_decays_tied_weights_once():
    ema_model, model = tiny_gpt2(0), tiny_gpt2(1)
    expected = ema(ema_model.state_dict(), model.state_dict(), 0.3)
    ema_(ema_model, model, 0.3)
    assert ema_model.lm_head.weight is ema_model.transformer.wte.weight
    for key, value in ema_model.state_dict().items():
        assert torch.equal(value, expected[key]), key  # twice-decayed wte would differ


def test_tied_weights_stay_tied_after_merges():
    models = [tiny_gpt2(s) for s in range(4)]
    init, *thetas = [m.state_dict() for m in models]
    merges = [
        slerp(init, thetas[:2], 0.3),
        slerp(init, thetas),
        lerp(init, thetas),
        liti(init, slerp(init, thetas), 0.5),
        ema(init, thetas[0], 0.1),
    ]
    for merged in merges:
        assert torch.equal(merged["lm_head.weight"], merged["transformer.wte.weight"])
        fresh = tiny_gpt2(9)
        fresh.load_state_dict(merged)
        assert fresh.lm_head.weight is fresh.transformer.wte.weight
        assert torch.equal(fresh.lm_head.weight, merged["lm_head.weight"])


def test_per_tensor_angles_not_one_global_angle():
    # Two tensors, one with orthogonal task vectors and one with nearly parallel ones.
    init = {"u": torch.zeros(2, dtype=torch.float64), "v": torch.zeros(2, dtype=torch.float64)}
    t1 = {
        "u": torch.tensor([1.0, 0.0], dtype=torch.float64),
        "v": torch.tensor([1.0, 0.0], dtype=torch.float64),
    }
    t2 = {
        "u": torch.tensor([0.0, 1.0], dtype=torch.float64),
        "v": torch.tensor([1.0, 0.1], dtype=torch.float64),
    }
    merged = slerp(init, [t1, t2], 0.5)
    assert_state_close(merged, ref_slerp(init, [t1, t2], 0.5), atol=1e-12)
    flat1, flat2 = torch.cat([t1["u"], t1["v"]]), torch.cat([t2["u"], t2["v"]])
    global_merge = ref_slerp_pair(flat1, flat2, 0.5)
    assert not torch.allclose(torch.cat([merged["u"], merged["v"]]), global_merge, atol=1e-3)
    assert merged["u"].norm().item() == pytest.approx(1.0, abs=1e-12)  # Lemma 1 per tensor


BAD_UNIT = [-0.1, 1.5, float("nan")]


@pytest.mark.parametrize("value", BAD_UNIT)
def test_out_of_range_hyperparameters_raise(value):
    init, t1, t2 = (random_state(s) for s in range(3))
    with pytest.raises(ValueError, match=r"mu must be in \[0, 1\]"):
        ema(init, t1, value)
    with pytest.raises(ValueError, match=r"mu must be in \[0, 1\]"):
        ema_(nn.Linear(2, 2), nn.Linear(2, 2), value)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        slerp(init, [t1, t2], value)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\]"):
        lerp(init, [t1, t2], value)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        liti(init, t1, value)


def test_structural_errors_raise_naming_the_key():
    init, t1, t2 = (random_state(s) for s in range(3))
    missing = {k: v for k, v in t2.items() if k != "a.bias"}
    extra = {**t2, "c.weight": torch.zeros(2)}
    reshaped = {**t2, "b.weight": torch.zeros(4, 3, 2, dtype=torch.float64)}
    for merge in (slerp, lerp):
        with pytest.raises(ValueError, match="a.bias"):
            merge(init, [t1, missing])
        with pytest.raises(ValueError, match="c.weight"):
            merge(init, [t1, extra])
        with pytest.raises(ValueError, match="b.weight"):
            merge(init, [t1, reshaped])
        with pytest.raises(ValueError, match="lam"):
            merge(init, [t1, t2, t1], lam=0.5)  # M > 2: lam is fixed by Eq. 26
        with pytest.raises(ValueError, match="M >= 1"):
            merge(init, [])
    with pytest.raises(ValueError, match="b.weight"):
        liti(init, reshaped, 0.5)
    with pytest.raises(ValueError, match="a.bias"):
        ema(init, missing, 0.1)
    with pytest.raises(ValueError, match="b.weight"):
        task_vector(reshaped, init)
    with pytest.raises(ValueError, match="weight"):
        ema_(nn.Linear(2, 3), nn.Linear(2, 2), 0.1)


def test_task_norm_is_the_float64_norm_of_the_whole_task_vector():
    from warp_utils.core.weights import task_norm

    init = {"w": torch.zeros(2, 2), "b": torch.ones(3), "steps": torch.tensor([7])}
    theta = {"w": torch.tensor([[3.0, 0.0], [0.0, 0.0]]), "b": torch.tensor([1.0, 5.0, 1.0]), "steps": torch.tensor([7])}
    assert task_norm(theta, init) == pytest.approx(5.0, abs=1e-12)  # sqrt(3^2 + 4^2): the int tensor left out
    assert task_norm(init, init) == 0.0

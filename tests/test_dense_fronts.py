"""warp_utils.evaluate.dense_fronts: the range statistic against closed forms on piecewise-linear fronts
(linear in log-KL between measured points, where the trapezoid rule is exact), the shared range,
and the eta bisection on synthetic monotone KL(eta)."""

import math

import numpy as np
import pytest

from warp_utils.evaluate.dense_fronts import (
    bisect_eta,
    dense_front_etas,
    envelope_gap,
    shared_range,
    target_grid,
    upper_envelope,
)

E = math.e

# -----------------------------------------------------------------------------
# upper envelope


def test_upper_envelope_is_the_best_value_within_each_budget():
    rng = np.random.default_rng(0)
    for _ in range(50):
        kls = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 4.0], size=8)  # unsorted, with repeats
        values = rng.normal(size=8)
        out_kls, envelope = upper_envelope(kls, values)
        assert out_kls.tolist() == sorted(set(kls.tolist()))
        # by definition: the largest value among points with KL <= k
        assert envelope.tolist() == [values[kls <= k].max() for k in out_kls]


def test_upper_envelope_ignores_a_dip():
    kls, envelope = upper_envelope([2.0, 0.0, 1.0, 3.0], [0.5, 0.0, 0.7, 0.9])
    assert kls.tolist() == [0.0, 1.0, 2.0, 3.0] and envelope.tolist() == [0.0, 0.7, 0.7, 0.9]


@pytest.mark.parametrize("kls, values, match", [
    ([], [], "1-D"), ([1.0, 2.0], [1.0], "1-D"), ([1.0, math.nan], [1.0, 2.0], "finite"),
    ([-0.1, 1.0], [1.0, 2.0], ">= 0"),
])
def test_upper_envelope_rejects_bad_fronts(kls, values, match):
    with pytest.raises(ValueError, match=match):
        upper_envelope(kls, values)


# -----------------------------------------------------------------------------
# the range statistic


def test_gap_of_fronts_linear_in_log_kl_is_the_closed_form():
    # A = 2 + 0.5 log k, B = 1 + 0.2 log k, measured at different KLs; both increasing, so the
    # envelopes are the lines themselves and the gap is 1 + 0.3 log k: its mean over log k in
    # [L, H] is 1 + 0.3 (log L + log H) / 2. L and H are not measured points of either front.
    kls_a, kls_b = np.geomspace(0.2, 6.0, 7), np.array([0.1, 0.35, 0.9, 2.2, 5.0, 8.0])
    front_a, front_b = (kls_a, 2 + 0.5 * np.log(kls_a)), (kls_b, 1 + 0.2 * np.log(kls_b))
    low, high = 0.3, 4.7
    expected = 1 + 0.3 * (math.log(low) + math.log(high)) / 2
    assert envelope_gap(front_a, front_b, low, high) == pytest.approx(expected, rel=1e-12)
    assert envelope_gap(front_b, front_a, low, high) == pytest.approx(-expected, rel=1e-12)
    assert envelope_gap(front_a, front_a, low, high) == 0.0


def test_gap_uses_both_fronts_breakpoints():
    # A: log k = 0, 1, 2 -> 0, 1, 1.5 (kink at log k = 1). Integral over log k in [0, 2]:
    # 1/2 + (1 + 1.5) / 2 = 1.75, mean 0.875.
    # B: log k = -1, 0.5, 3 -> 0, 0.6, 0.6 (kink at 0.5, a breakpoint of B only): on [0, 0.5]
    # B = 0.4 + 0.4 x, integral 0.2 + 0.05; on [0.5, 2] 0.6 * 1.5 = 0.9; total 1.15, mean 0.575.
    front_a = (np.exp([0.0, 1.0, 2.0]), [0.0, 1.0, 1.5])
    front_b = (np.exp([-1.0, 0.5, 3.0]), [0.0, 0.6, 0.6])
    assert envelope_gap(front_a, front_b, 1.0, E**2) == pytest.approx(0.875 - 0.575, rel=1e-12)


def test_gap_reads_the_envelope_of_a_non_monotone_front():
    # A dips to 0 at log k = 1 between two points at 1: its envelope is 1 throughout (the raw
    # points would average 0.5). A's SFT point at KL 0 lifts its envelope to 2 in the second case.
    zero = (np.array([0.5, 10.0]), [0.0, 0.0])
    assert envelope_gap((np.exp([0.0, 1.0, 2.0]), [1.0, 0.0, 1.0]), zero, 1.0, E**2) == pytest.approx(1.0)
    assert envelope_gap(([0.0, 1.0, E, E**2], [2.0, 0.0, 1.0, 0.5]), zero, 1.0, E**2) == pytest.approx(2.0)


def test_gap_interpolates_in_log_kl():
    # one segment from (KL 1, 0) to (KL 100, 2): at KL 10 the log-KL line gives 1 (a line in KL
    # would give 2 * 9 / 99 = 0.18); over [10, 100] the mean is (1 + 2) / 2
    front, zero = ([1.0, 100.0], [0.0, 2.0]), ([1.0, 100.0], [0.0, 0.0])
    assert envelope_gap(front, zero, 1.0, 100.0) == pytest.approx(1.0)
    assert envelope_gap(front, zero, 10.0, 100.0) == pytest.approx(1.5)


def test_gap_is_the_integral_of_the_envelopes_on_a_fine_grid():
    # random noisy fronts: the trapezoid on the breakpoints equals a fine midpoint sum of the
    # envelopes interpolated in log-KL (computed here without the module's nodes)
    rng = np.random.default_rng(1)

    def envelope_at(front, log_k):
        kls, values = np.asarray(front[0]), np.asarray(front[1])
        order = np.argsort(kls)
        kls, env = kls[order], np.maximum.accumulate(values[order])
        return np.interp(log_k, np.log(kls[kls > 0]), env[kls > 0])

    for _ in range(20):
        fronts = [(np.append(0.0, np.sort(rng.uniform(0.05, 6.0, 6))), rng.normal(size=7)) for _ in range(2)]
        low = max(f[0][1] for f in fronts) * 1.01
        high = min(f[0][-1] for f in fronts) * 0.99
        edges = np.linspace(math.log(low), math.log(high), 200_001)
        mid = (edges[1:] + edges[:-1]) / 2
        fine = np.mean(envelope_at(fronts[0], mid) - envelope_at(fronts[1], mid))
        assert envelope_gap(fronts[0], fronts[1], low, high) == pytest.approx(fine, abs=1e-8)


def test_gap_is_nan_outside_what_both_fronts_measured():
    a, b = ([0.0, 0.5, 1.0, 4.0], [0.0, 1.0, 2.0, 3.0]), ([0.0, 0.8, 3.0], [0.0, 1.0, 2.0])
    assert math.isfinite(envelope_gap(a, b, 0.8, 3.0))  # the exact shared range is readable
    assert math.isnan(envelope_gap(a, b, 0.7, 3.0))  # below b's first non-zero KL
    assert math.isnan(envelope_gap(a, b, 0.8, 3.5))  # above b's last KL
    assert math.isnan(envelope_gap(a, b, 2.0, 2.0)) and math.isnan(envelope_gap(a, b, 2.0, 1.0))
    assert math.isnan(envelope_gap(a, b, math.nan, math.nan))
    with pytest.raises(ValueError, match="k_low"):
        envelope_gap(a, b, 0.0, 3.0)


# -----------------------------------------------------------------------------
# the shared range


def test_shared_range_takes_the_largest_first_and_the_smallest_last_kl():
    seeds = [
        {"warp": ([0.0, 0.9, 2.0, 4.1], [0, 1, 2, 3]), "reinforce": ([0.0, 0.5, 2.8], [0, 1, 2])},
        {"warp": ([0.0, 0.7, 3.5], [0, 1, 2]), "reinforce": ([0.0, 0.88, 2.77], [0, 1, 2])},
    ]
    assert shared_range(seeds) == (0.9, 2.77)
    # a list per seed, fronts as their KLs alone: the same range
    assert shared_range([[f[0] for f in s.values()] for s in seeds]) == (0.9, 2.77)
    # KL 0 (the SFT point) is never the first KL: a front's first non-zero one is
    # (0.5, 3.0): a tuple of two numbers is two KLs, not (kls, values)
    assert shared_range([[[0.0, 0.0, 1.0, 5.0]], [(0.5, 3.0)]]) == (1.0, 3.0)


def test_shared_range_is_covered_by_every_front_of_every_seed():
    rng = np.random.default_rng(2)
    ranges = 0
    for _ in range(30):
        seeds = [[(np.append(0.0, rng.uniform(0.1, 5.0, 5)), rng.normal(size=6)) for _ in range(2)]
                 for _ in range(3)]
        low, high = shared_range(seeds)
        if math.isnan(low):
            continue
        ranges += 1
        assert all(math.isfinite(envelope_gap(a, b, low, high)) for a, b in seeds)
        # a hair wider on either side, some front no longer covers it
        assert any(math.isnan(envelope_gap(a, b, low * 0.999, high)) for a, b in seeds)
        assert any(math.isnan(envelope_gap(a, b, low, high * 1.001)) for a, b in seeds)
    assert ranges > 15


def test_shared_range_can_be_empty():
    nan_pair = (pytest.approx(math.nan, nan_ok=True),) * 2
    assert shared_range([[[0.0, 2.0, 3.0], [0.0, 0.5, 1.5]]]) == nan_pair  # 2.0 >= 1.5
    assert shared_range([[[0.0, 2.0], [0.0, 0.5, 2.0]]]) == nan_pair  # k_low == k_high
    assert shared_range([[[0.0], [0.0, 0.5, 2.0]]]) == nan_pair  # a front never left SFT
    for bad in ([], [[]]):
        with pytest.raises(ValueError, match=">= 1"):
            shared_range(bad)


# -----------------------------------------------------------------------------
# targets and bisection on eta


def test_target_grid_is_geometric_between_the_ends():
    grid = target_grid(0.5, 4.0, 4)
    assert grid == pytest.approx([0.5, 1.0, 2.0, 4.0], rel=1e-12)
    assert len(target_grid(0.88, 2.77)) == 6
    for points in (1, 7, True):
        with pytest.raises(ValueError, match="points"):
            target_grid(0.5, 4.0, points)
    for low, high in ((0.0, 1.0), (2.0, 1.0), (math.nan, math.nan)):
        with pytest.raises(ValueError, match="k_low"):
            target_grid(low, high)


class Counted:
    """A KL(eta) that counts its calls: each is an evaluation of a policy on prompts."""

    def __init__(self, kl):
        self.kl, self.calls = kl, 0

    def __call__(self, eta):
        self.calls += 1
        return self.kl(eta)


SYNTHETIC = {"quadratic": lambda eta: 5 * eta**2, "exponential": lambda eta: 0.2 * (math.exp(4 * eta) - 1)}


@pytest.mark.parametrize("name", SYNTHETIC)
def test_bisection_hits_every_target_within_ten_percent(name):
    for target in target_grid(0.05, 4.5):
        kl_of_eta = Counted(SYNTHETIC[name])
        eta, kl, evaluations = bisect_eta(kl_of_eta, target)
        assert abs(kl - target) <= 0.10 * target and 0.0 <= eta <= 1.0
        assert kl == SYNTHETIC[name](eta) and (eta, kl) == evaluations[-1]
        assert len(evaluations) == kl_of_eta.calls <= 20


def test_unreachable_target_is_reported_after_one_evaluation():
    kl_of_eta = Counted(SYNTHETIC["quadratic"])  # KL(1) = 5
    eta, kl, evaluations = bisect_eta(kl_of_eta, 6.0)
    assert math.isnan(eta) and math.isnan(kl) and evaluations == [(1.0, 5.0)] and kl_of_eta.calls == 1
    assert bisect_eta(SYNTHETIC["quadratic"], 5.4)[:2] == (1.0, 5.0)  # within 10% of KL(1): hit


def test_a_target_missed_within_max_steps_is_reported():
    step = Counted(lambda eta: 0.0 if eta < 0.3 else 2.0)  # jumps over the target
    eta, _, evaluations = bisect_eta(step, 1.0, max_steps=12)
    assert math.isnan(eta) and len(evaluations) == step.calls == 12
    eta, _, evaluations = bisect_eta(SYNTHETIC["quadratic"], 1.0, tol=1e-12, max_steps=5)
    assert math.isnan(eta) and len(evaluations) == 5


def test_bisection_rejects_bad_input():
    for kwargs, match in (({"target": 0.0}, "target"), ({"target": 1.0, "tol": 0.0}, "tol"),
                          ({"target": 1.0, "lo": 1.0}, "lo < hi"),
                          ({"target": 1.0, "max_steps": 0}, "max_steps")):
        with pytest.raises(ValueError, match=match):
            bisect_eta(SYNTHETIC["quadratic"], **kwargs)
    with pytest.raises(ValueError, match="finite"):
        bisect_eta(lambda eta: math.nan, 1.0)


def test_dense_front_reuses_evaluations():
    kl_of_eta = Counted(SYNTHETIC["exponential"])
    targets = list(target_grid(0.3, 6.0)) + [20.0]  # KL(1) = 10.7: the last is out of reach
    points, evaluations = dense_front_etas(kl_of_eta, targets)
    assert [p[0] for p in points] == targets and kl_of_eta.calls == len(evaluations)
    for target, eta, kl in points[:-1]:
        assert abs(kl - target) <= 0.10 * target and kl == SYNTHETIC["exponential"](eta)
    assert math.isnan(points[-1][1])
    independent = sum(len(bisect_eta(SYNTHETIC["exponential"], t)[2]) for t in targets)
    assert len(evaluations) < independent  # KL(1) is measured once, brackets narrow
    assert dense_front_etas(kl_of_eta, targets[:-1])[0] == points[:-1]  # deterministic
    _, _, new = bisect_eta(kl_of_eta, targets[2], known=evaluations)
    assert new == []  # a point already measured within 10% costs nothing


# ----------------------------------------------------------------------------- measuring a front

from warp_utils.evaluate.dense_fronts import (  # noqa: E402
    KL_FLOOR,
    KL_TOLERANCE,
    MAX_TARGETS,
    envelope_at,
    front_targets,
    measure_front,
    search_eta,
)


def test_front_targets_run_from_the_floor_to_the_endpoint():
    targets = front_targets(4.0)
    assert targets[0] == pytest.approx(KL_FLOOR) and targets[-1] == pytest.approx(4.0)
    assert len(targets) == MAX_TARGETS and np.allclose(np.diff(np.log(targets)), np.log(40) / (MAX_TARGETS - 1))
    assert front_targets(0.2)[0] == pytest.approx(0.05)  # a short front: a quarter of its end
    with pytest.raises(ValueError, match="k_max"):
        front_targets(0.0)


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_search_eta_hits_a_target_on_curves_it_does_not_assume(power):
    calls = []

    def kl(eta):
        calls.append(eta)
        return 5.0 * eta ** power

    for target in (0.1, 0.7, 3.0):
        eta, hit, evaluations = search_eta(kl, target, [(0.0, 0.0), (1.0, 5.0)])
        assert abs(hit - target) <= KL_TOLERANCE * target and hit == pytest.approx(5.0 * eta ** power)
        assert len(evaluations) <= 12
    if power == 2.0:  # the model it interpolates with: one evaluation per target
        assert len(calls) == 3


def test_search_eta_needs_a_bracket():
    with pytest.raises(ValueError, match="bracket"):
        search_eta(lambda eta: eta, 2.0, [(0.0, 0.0), (1.0, 1.0)])


def full_and_subset(power=2.0, k_max=4.0, subset_bias=0.9):
    """A synthetic front: KL on all prompts k_max * eta^power; the subset's KL is `subset_bias`
    times that (another sample of prompts), so a search on the subset alone can miss."""
    log = {"full": [], "subset": []}

    def evaluate(eta):
        log["full"].append(eta)
        return {"kl_to_sft": k_max * eta ** power, "reward_sd": eta}

    def subset(eta):
        log["subset"].append(eta)
        return subset_bias * k_max * eta ** power

    return evaluate, subset, log


@pytest.mark.parametrize("bias", [1.0, 0.97, 0.85, 1.2])
def test_measure_front_puts_every_point_within_ten_percent_of_its_target(bias):
    evaluate, subset, log = full_and_subset(subset_bias=bias)
    endpoint = evaluate(1.0)
    log["full"].clear()
    targets = front_targets(4.0)
    rows, counts = measure_front(subset, evaluate, endpoint, targets, bias * 4.0)
    assert [r["target_kl"] for r in rows] == pytest.approx(sorted(targets))  # every target hit, in eta order
    for row in rows:
        assert abs(row["kl_to_sft"] - row["target_kl"]) <= KL_TOLERANCE * row["target_kl"]
        assert row["kl_to_sft"] == pytest.approx(4.0 * row["eta"] ** 2)  # each row is its eta's evaluation
    assert rows[-1]["eta"] == 1.0 and counts["missed"] == 0
    assert counts == {"subset": len(log["subset"]), "full": len(log["full"]), "missed": 0}
    assert 1.0 not in log["full"]  # the endpoint is not evaluated twice
    if abs(bias - 1.0) <= 0.03:  # the subset agrees: one evaluation on all prompts per target below the endpoint
        assert counts["full"] == len(targets) - 1


def test_measure_front_reports_a_target_it_cannot_reach():
    evaluate, subset, _ = full_and_subset()
    endpoint = evaluate(1.0)
    rows, counts = measure_front(subset, evaluate, endpoint, [0.5, 8.0], 3.6)
    assert [r["target_kl"] for r in rows] == [0.5] and counts["missed"] == 1


def test_envelope_at_reads_the_envelope_in_log_kl():
    kls, values = np.array([0.0, 0.1, 1.0, 10.0]), np.array([0.0, 1.0, 0.5, 3.0])
    assert envelope_at((kls, values), 1.0) == pytest.approx(1.0)  # the dip at KL 1 is not the front
    assert envelope_at((kls, values), math.sqrt(10.0)) == pytest.approx(2.0)  # halfway in log-KL
    assert math.isnan(envelope_at((kls, values), 0.05)) and math.isnan(envelope_at((kls, values), 11.0))


def test_envelope_mean_is_the_closed_form_and_splits_the_gap():
    from warp_utils.evaluate.dense_fronts import envelope_gap, envelope_mean

    kls = np.geomspace(0.1, 10.0, 7)
    a, b = (kls, 1.0 + 0.5 * np.log(kls)), (kls, 2.0 + 0.25 * np.log(kls))
    low, high = 0.3, 5.0
    assert envelope_mean(a, low, high) == pytest.approx(1.0 + 0.5 * (math.log(low) + math.log(high)) / 2, rel=1e-12)
    assert envelope_gap(a, b, low, high) == pytest.approx(envelope_mean(a, low, high) - envelope_mean(b, low, high))

"""warp_utils.stats against scipy, a brute-force closed test (Holm), simulation (power) and closed
forms."""

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from warp_utils.stats import (
    Claim,
    grade_claims,
    holm_levels,
    minimum_detectable_effect,
    seed_interval,
    standardize_rewards,
    t_test_p_value,
    verdict,
)

RNG = np.random.default_rng(0)


def random_seed_differences(rng, n_seeds):
    return rng.normal(rng.choice([0.0, 0.5, 2.0]), rng.uniform(0.1, 1.0), size=n_seeds)


# -----------------------------------------------------------------------------
# one claim: interval and test across seeds


@pytest.mark.parametrize("n_seeds", [2, 3, 5, 10])
@pytest.mark.parametrize("level", [0.95, 0.99, 0.9875])
def test_seed_interval_is_scipys_student_t_interval(n_seeds, level):
    d = RNG.normal(0.3, 0.7, size=n_seeds)
    mean, low, high = seed_interval(d, level)
    expected = sps.t.interval(level, n_seeds - 1, loc=d.mean(), scale=sps.sem(d))
    assert mean == pytest.approx(d.mean(), abs=1e-15)
    assert (low, high) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n_seeds", [2, 3, 7])
def test_p_value_is_scipys_one_sample_t_test(n_seeds):
    for _ in range(20):
        d = random_seed_differences(RNG, n_seeds)
        assert t_test_p_value(d) == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-10)


def test_interval_excludes_zero_exactly_when_p_is_below_alpha():
    for _ in range(300):
        d = random_seed_differences(RNG, int(RNG.integers(2, 6)))
        level = float(RNG.uniform(0.8, 0.999))
        _, low, high = seed_interval(d, level)
        assert (low > 0 or high < 0) == (t_test_p_value(d) < 1 - level)


def test_one_seed_gives_no_interval():
    assert seed_interval([0.4]) == (0.4, pytest.approx(math.nan, nan_ok=True),
                                    pytest.approx(math.nan, nan_ok=True))
    assert math.isnan(t_test_p_value([0.4]))
    (claim,) = grade_claims([("c", "s", 1, [0.4])])
    assert claim.verdict == "inconclusive" and claim.n_seeds == 1 and claim.mean == 0.4
    assert math.isnan(claim.ci_low) and math.isnan(claim.ci_high) and math.isnan(claim.mde)


def test_equal_seeds_have_zero_width():
    assert t_test_p_value([0.3, 0.3, 0.3]) == 0.0 and t_test_p_value([0.0, 0.0]) == 1.0
    assert seed_interval([0.3, 0.3])[1:] == (pytest.approx(0.3), pytest.approx(0.3))


def test_bad_differences_are_clear_errors():
    with pytest.raises(ValueError, match="KL"):
        seed_interval([0.1, math.nan])
    with pytest.raises(ValueError, match="1-D"):
        seed_interval([])
    with pytest.raises(ValueError, match="level"):
        seed_interval([0.1, 0.2], level=1.5)


# -----------------------------------------------------------------------------
# Holm across claims


def closed_test_rejections(p_values, alpha):
    """Holm by its definition: the closed test of Bonferroni tests. H_i is rejected when every
    intersection of hypotheses containing i is rejected: min_{j in I} p_j < alpha / |I|."""
    k = len(p_values)
    rejected = set()
    for i in range(k):
        subsets = (s for size in range(1, k + 1) for s in itertools.combinations(range(k), size) if i in s)
        if all(min(p_values[j] for j in s) < alpha / len(s) for s in subsets):
            rejected.add(i)
    return rejected


def test_holm_intervals_reject_what_the_closed_test_rejects():
    rng = np.random.default_rng(1)
    disagreements, rejected_some, spared_some = 0, 0, 0
    for _ in range(150):
        k = int(rng.integers(1, 6))
        family = [(f"c{i}", "d", 1, random_seed_differences(rng, int(rng.integers(2, 6))))
                  for i in range(k)]
        claims = grade_claims(family)
        excluded = {i for i, c in enumerate(claims) if c.ci_low > 0 or c.ci_high < 0}
        p_values = [sps.ttest_1samp(d, 0.0).pvalue for *_, d in family]
        expected = closed_test_rejections(p_values, 0.05)
        disagreements += excluded != expected
        rejected_some += bool(expected)
        # claims whose unadjusted 95% interval excludes 0 but Holm keeps: adjustment bites
        spared_some += any(p < 0.05 for i, p in enumerate(p_values) if i not in expected)
    assert disagreements == 0
    assert rejected_some > 40 and spared_some > 15  # both outcomes exercised


def test_holm_levels_step_down():
    # sorted p: 0.001 < alpha/3 -> level 1 - alpha/3; 0.03 >= alpha/2 -> Holm stops at alpha/2,
    # so 0.04 keeps alpha/2 (not alpha/1, where 0.04 would pass)
    levels = holm_levels([0.04, 0.001, 0.03])
    assert levels == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3, 1 - 0.05 / 2])
    assert holm_levels([0.001, 0.02, 0.04]) == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 0.95])


def test_claims_without_interval_are_not_counted_in_holm():
    d = np.array([0.9, 1.1, 1.0])
    alone, with_single = grade_claims([("a", "d", 1, d)]), grade_claims([("a", "d", 1, d), ("b", "d", 1, [2.0])])
    assert with_single[0] == alone[0] and with_single[0].level == 0.95
    assert math.isnan(with_single[1].level)


def test_grade_claims_fills_every_field():
    d = [0.9, 1.3, 1.1]
    (claim,) = grade_claims([("iteration 2 above 1", "reward at KL 2: I2 - I1", 1, d)])
    mean, low, high = seed_interval(d, 0.95)
    assert (claim.mean, claim.ci_low, claim.ci_high) == (mean, low, high)
    assert claim.verdict == verdict(low, high, 1) == "supported" and claim.n_seeds == 3
    assert claim.mde == pytest.approx(minimum_detectable_effect(np.std(d, ddof=1), 3, 0.95))
    (flipped,) = grade_claims([("x", "s", -1, d)])
    assert flipped.verdict == "contradicted"


# -----------------------------------------------------------------------------
# minimum detectable effect


@pytest.mark.parametrize("n_seeds, level", [(3, 0.95), (5, 0.95), (3, 1 - 0.05 / 3)])
def test_mde_is_detected_with_80_percent_power_by_simulation(n_seeds, level):
    sd, draws = 0.7, 200_000
    effect = minimum_detectable_effect(sd, n_seeds, level)
    rng = np.random.default_rng(2)
    samples = rng.normal(effect, sd, size=(draws, n_seeds))
    t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(n_seeds))
    power = np.mean(np.abs(t) > sps.t.ppf(0.5 + level / 2, n_seeds - 1))
    assert power == pytest.approx(0.8, abs=0.005)  # binomial sd of the estimate: 0.0009


def test_mde_tends_to_the_normal_closed_form():
    n = 10_000  # t -> normal: (z_{0.975} + z_{0.8}) sd / sqrt(n)
    closed = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 2.0 / math.sqrt(n)
    assert minimum_detectable_effect(2.0, n) == pytest.approx(closed, rel=1e-3)
    assert math.isnan(minimum_detectable_effect(1.0, 1)) and minimum_detectable_effect(0.0, 3) == 0.0
    # fewer seeds, stricter level: a larger effect can hide
    assert minimum_detectable_effect(1.0, 3) > minimum_detectable_effect(1.0, 5)
    assert minimum_detectable_effect(1.0, 3, 0.99) > minimum_detectable_effect(1.0, 3, 0.95)


# -----------------------------------------------------------------------------
# verdict and the stored claim


@pytest.mark.parametrize("low, high, sign, expected", [
    (0.1, 0.5, 1, "supported"), (0.1, 0.5, -1, "contradicted"),
    (-0.5, -0.1, -1, "supported"), (-0.5, -0.1, 1, "contradicted"),
    (-0.1, 0.5, 1, "inconclusive"), (-0.1, 0.5, -1, "inconclusive"),
    (0.0, 0.5, 1, "inconclusive"), (-0.5, 0.0, -1, "inconclusive"),
    (math.nan, math.nan, 1, "inconclusive"),
])
def test_verdict(low, high, sign, expected):
    assert verdict(low, high, sign) == expected


def test_verdict_rejects_bad_input():
    for sign in (0, 2, True):
        with pytest.raises(ValueError, match="expected_sign"):
            verdict(0.1, 0.2, sign)
    with pytest.raises(ValueError, match="ci_low"):
        verdict(0.5, 0.1, 1)


def test_claim_to_dict_is_strict_json():
    claim = grade_claims([("a", "s", 1, [0.2, 0.4, 0.3]), ("b", "s", -1, [0.1])])
    rows = json.loads(json.dumps([c.to_dict() for c in claim], allow_nan=False))
    required = {"name", "statistic", "expected_sign", "mean", "ci_low", "ci_high", "n_seeds", "mde", "verdict"}
    assert all(required <= set(row) for row in rows)
    assert rows[1]["ci_low"] is None and rows[1]["verdict"] == "inconclusive"
    assert rows[0]["per_seed"] == [0.2, 0.4, 0.3]
    assert Claim(**{**rows[0], "per_seed": tuple(rows[0]["per_seed"])}) == claim[0]


# -----------------------------------------------------------------------------
# rewards in SFT standard deviations


def test_standardize_rewards():
    assert standardize_rewards([2.0, 4.0, 0.5], [1.0, 2.0, 3.0]).tolist() == [0.0, 2.0, -1.5]
    assert standardize_rewards(2.5, [1.0, 2.0, 3.0]) == 0.5
    rng = np.random.default_rng(3)
    sft, r = rng.normal(-2.0, 3.0, 64), rng.normal(1.0, 2.0, (4, 8))
    z = standardize_rewards(sft, sft)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std(ddof=1) == pytest.approx(1.0)
    # a rebuilt reward model that only rescales and shifts r gives the same numbers
    np.testing.assert_allclose(standardize_rewards(5 * r - 3, 5 * sft - 3), standardize_rewards(r, sft))
    assert standardize_rewards(r, sft).shape == (4, 8)


def test_standardize_rewards_needs_a_scale():
    with pytest.raises(ValueError, match="sft_rewards"):
        standardize_rewards([1.0], [0.5])
    with pytest.raises(ValueError, match="all equal"):
        standardize_rewards([1.0], [0.5, 0.5])

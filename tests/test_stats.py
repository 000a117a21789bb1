"""warp_utils.evaluate.stats against scipy, a brute-force closed test (Holm), simulation (power) and closed
forms."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from warp_utils.evaluate.stats import (
    crossed_bootstrap,
    grade_family,
    holm_reject,
    one_sided_p_value,
    percentile_interval,
    seed_interval,
    seeds_for_power,
    standardize_rewards,
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


def test_interval_excludes_zero_exactly_when_p_is_below_alpha():
    for _ in range(300):
        d = random_seed_differences(RNG, int(RNG.integers(2, 6)))
        level = float(RNG.uniform(0.8, 0.999))
        _, low, high = seed_interval(d, level)
        assert (low > 0 or high < 0) == (sps.ttest_1samp(d, 0.0).pvalue < 1 - level)


def test_one_seed_gives_no_interval():
    assert seed_interval([0.4]) == (0.4, pytest.approx(math.nan, nan_ok=True),
                                    pytest.approx(math.nan, nan_ok=True))
    assert verdict(*seed_interval([0.4])[1:], 1) == "inconclusive"


def test_equal_seeds_have_zero_width():
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


# -----------------------------------------------------------------------------
# verdict


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


# -----------------------------------------------------------------------------
# one-sided tests


@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize("n_seeds", [2, 3, 5, 10])
def test_one_sided_p_is_scipys_one_sample_t_test(alternative, n_seeds):
    for _ in range(20):
        d = random_seed_differences(RNG, n_seeds) * RNG.choice([-1.0, 1.0])
        expected = sps.ttest_1samp(d, 0.0, alternative=alternative).pvalue
        assert one_sided_p_value(d, alternative) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_one_sided_p_values_split_the_two_sided_one():
    for _ in range(50):
        d = random_seed_differences(RNG, 4) * RNG.choice([-1.0, 1.0])
        greater, less = one_sided_p_value(d, "greater"), one_sided_p_value(d, "less")
        assert greater + less == pytest.approx(1.0)
        assert 2 * min(greater, less) == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)


def test_one_sided_p_edge_cases():
    assert math.isnan(one_sided_p_value([0.4])) and math.isnan(one_sided_p_value([0.4], "less"))
    assert one_sided_p_value([0.3, 0.3]) == 0.0 and one_sided_p_value([0.3, 0.3], "less") == 1.0
    assert one_sided_p_value([0.0, 0.0]) == 1.0 == one_sided_p_value([0.0, 0.0], "less")
    for alternative in ("two-sided", "Greater", None):
        with pytest.raises(ValueError, match="alternative"):
            one_sided_p_value([0.1, 0.2], alternative)
    with pytest.raises(ValueError, match="1-D"):
        one_sided_p_value([], "less")


# -----------------------------------------------------------------------------
# Holm within one family


def test_holm_reject_is_the_closed_test():
    rng = np.random.default_rng(4)
    rejected_some = spared_some = 0
    for _ in range(400):
        k = int(rng.integers(1, 7))
        # small p, large p, and p exactly on Holm's thresholds alpha / j (strict: not rejected)
        p = [float(rng.choice([10 ** -rng.uniform(1, 4), rng.uniform(), 0.05 / rng.integers(1, k + 1)]))
             for _ in range(k)]
        if k > 2 and rng.uniform() < 0.3:
            p[1] = p[0]  # ties
        expected = closed_test_rejections(p, 0.05)
        assert {i for i, r in enumerate(holm_reject(p)) if r} == expected
        rejected_some += bool(expected)
        spared_some += any(q < 0.05 for i, q in enumerate(p) if i not in expected)
    assert rejected_some > 100 and spared_some > 50  # both outcomes exercised


def test_holm_reject_steps_down_and_skips_missing_tests():
    assert holm_reject([0.04, 0.001, 0.03]) == [False, True, False]  # 0.03 >= 0.05 / 2 stops it
    assert holm_reject([0.001, 0.02, 0.04]) == [True, True, True]
    assert holm_reject([0.03, math.nan]) == [True, False]  # NaN: not in k, so 0.03 < 0.05 / 1
    assert holm_reject([0.03, 0.5], alpha=0.1) == [True, False] and holm_reject([]) == []
    with pytest.raises(ValueError, match="level"):
        holm_reject([0.01], alpha=0.0)


# -----------------------------------------------------------------------------
# directional verdicts in one family


def differences_with_p(p, sign=1, n=5):
    """Per-seed differences whose one-sided p in direction `sign` is `p`: a fixed spread, shifted."""
    z = np.linspace(-1.0, 1.0, n)
    shift = sps.t.isf(p, n - 1) * z.std(ddof=1) / math.sqrt(n)
    d = sign * (shift + z)
    assert one_sided_p_value(d, "greater" if sign > 0 else "less") == pytest.approx(p)
    return d


def verdicts(family):
    return [g.verdict for g in grade_family(family)]


def test_clear_effects_and_noise():
    rng = np.random.default_rng(5)
    up, down = rng.normal(1.0, 0.1, 5), rng.normal(-1.0, 0.1, 5)
    noise = np.array([-0.1, 0.05, 0.0, -0.05, 0.1])
    family = [(1, up), (-1, up), (-1, down), (1, down), (1, noise), (-1, noise)]
    assert verdicts(family) == ["supported", "contradicted", "supported", "contradicted",
                                "inconclusive", "inconclusive"]
    graded = grade_family([(1, up), (-1, up)])
    assert graded[0].p_expected == one_sided_p_value(up, "greater") == graded[1].p_opposite
    assert graded[0].p_opposite == one_sided_p_value(up, "less") == graded[1].p_expected


def test_family_size_moves_a_marginal_claim_as_holm_says():
    margin = differences_with_p(0.03)  # below alpha, above alpha / 2
    noise, strong = differences_with_p(0.6), differences_with_p(1e-4)
    assert verdicts([(1, margin)]) == ["supported"]
    # two tests: the smallest p needs < 0.025, 0.03 fails and Holm stops
    assert verdicts([(1, margin), (1, noise)]) == ["inconclusive", "inconclusive"]
    # a strong claim is rejected at 0.05 / 2 first; the margin then needs only < 0.05 / 1
    assert verdicts([(1, margin), (1, strong)]) == ["supported", "supported"]
    # three tests: the margin is second, at 0.05 / 2
    assert verdicts([(1, margin), (1, strong), (1, noise)])[0] == "inconclusive"
    # a one-seed claim is no test: it does not enlarge the family
    assert verdicts([(1, margin), (1, [5.0])]) == ["supported", "inconclusive"]
    # the opposite direction has its own Holm: a marginal contradiction is lost the same way
    assert verdicts([(-1, margin)]) == ["contradicted"]
    assert verdicts([(-1, margin), (1, noise)]) == ["inconclusive", "inconclusive"]


def test_family_error_of_false_support_is_about_alpha():
    # 5 null claims per family: a false "supported" in at most alpha of families (Holm), and close
    # to it (one-sided tests: two-sided ones at alpha would give about alpha / 2). Binomial sd of
    # the rate over 2000 families: 0.005.
    rng = np.random.default_rng(6)
    false_support = sum("supported" in verdicts([(1, rng.normal(0, 1, 4)) for _ in range(5)])
                        for _ in range(2000)) / 2000
    assert 0.035 < false_support < 0.065


def test_grade_family_rejects_bad_signs():
    for sign in (0, 2, True):
        with pytest.raises(ValueError, match="expected_sign"):
            grade_family([(sign, [0.1, 0.2])])


# -----------------------------------------------------------------------------
# seeds for power


def one_sided_power(effect, sd, n, level):
    """By the definition of power: the noncentral t's tail beyond the test's critical value."""
    return sps.nct.sf(sps.t.ppf(level, n - 1), n - 1, effect / sd * math.sqrt(n))


@pytest.mark.parametrize("sd, effect, level", [
    (1.0, 1.0, 0.95), (0.025, 0.034, 1 - 0.05 / 5), (0.025, 0.05, 1 - 0.05 / 10), (0.3, 0.05, 0.95),
    (1.0, 5.0, 0.95),
])
def test_seeds_for_power_is_the_first_n_with_enough_power(sd, effect, level):
    n = seeds_for_power(sd, effect, level)
    brute = next(m for m in range(2, 10_000) if one_sided_power(effect, sd, m, level) >= 0.8)
    assert n == brute


def test_seeds_for_power_known_value_and_simulation():
    # the "iteration 2 above iteration 1": +0.034 at sd 0.025, about 10 seeds at its Holm
    # level (one family of 10 claims)
    assert seeds_for_power(0.025, 0.034, 1 - 0.05 / 10) == 10
    # simulated: the one-sided test has >= 80% power with n seeds and < 80% with n - 1
    sd, effect, level, draws = 1.0, 0.9, 0.95, 200_000
    n = seeds_for_power(sd, effect, level)
    rng = np.random.default_rng(7)
    for m, enough in ((n, True), (n - 1, False)):
        x = rng.normal(effect, sd, size=(draws, m))
        power = np.mean(x.mean(1) / (x.std(1, ddof=1) / math.sqrt(m)) > sps.t.ppf(level, m - 1))
        assert abs(power - 0.8) > 0.005  # 5 binomial sds: the side is resolved
        assert (power >= 0.8) == enough


def test_seeds_for_power_against_the_normal_closed_form():
    # large n: t -> normal, n ~ ((z_level + z_power) sd / effect)^2
    closed = ((sps.norm.ppf(0.95) + sps.norm.ppf(0.8)) / 0.05) ** 2
    assert seeds_for_power(1.0, 0.05) == pytest.approx(closed, rel=0.01)


def test_seeds_for_power_edge_cases():
    assert seeds_for_power(0.0, 0.1) == 2 and math.isnan(seeds_for_power(math.nan, 0.1))
    for kwargs, match in (({"effect": 0.0}, "effect"), ({"effect": -0.1}, "effect"),
                          ({"effect": 0.1, "level": 1.0}, "level"),
                          ({"effect": 0.1, "sd": -1.0}, "sd")):
        with pytest.raises(ValueError, match=match):
            seeds_for_power(**{"sd": 1.0, **kwargs})
    with pytest.raises(ValueError, match="seeds needed"):
        seeds_for_power(1.0, 1e-4, max_seeds=1000)


# -----------------------------------------------------------------------------
# crossed bootstrap


def bootstrap_variance_check(replicates, expected):
    """The replicates' variance (ddof 0) against its expectation, within 4 standard errors of a
    variance estimated from R draws: se = sd((x - mean)^2) / sqrt(R), read off the replicates."""
    squares = (replicates - replicates.mean()) ** 2
    se = squares.std() / math.sqrt(replicates.size)
    assert abs(squares.mean() - expected) < 4 * se
    assert 4 * se < 0.06 * expected  # the check is tight: R is large enough to mean something


def test_crossed_bootstrap_variance_of_seed_plus_prompt_effects():
    # values = a_s + b_p: a replicate's mean is mean_i a_{s_i} + mean_j b_{p_j}, two independent
    # means of S and P draws with replacement, so its variance is exactly
    # var0(a) / S + var0(b) / P, var0 the variance with ddof 0 (the bootstrap's (n-1)/n factor).
    # Prompts resampled per seed instead would give var0(b) / (S P); not at all, 0.
    rng = np.random.default_rng(8)
    n_seeds, n_prompts = 5, 40
    a, b = rng.normal(0, 0.5, n_seeds), rng.normal(0, 3.0, n_prompts)
    values = a[:, None] + b[None, :]
    replicates = crossed_bootstrap(values, replicates=20_000, seed=0)
    expected = a.var() / n_seeds + b.var() / n_prompts
    bootstrap_variance_check(replicates, expected)
    assert replicates.mean() == pytest.approx(values.mean(), abs=0.02)
    # seeds-only resampling (each seed's mean over all prompts) sees var0(a) / S alone
    seed_means = values.mean(1)
    seeds_only = seed_means[rng.integers(0, n_seeds, (20_000, n_seeds))].mean(1)
    assert seeds_only.var() == pytest.approx(a.var() / n_seeds, rel=0.05)
    assert replicates.var() > 3 * seeds_only.var()


def test_one_prompt_resample_serves_every_front():
    # two fronts sharing prompt effects b_p: the per-seed difference of their prompt-resampled
    # means cancels b exactly when both fronts see the same prompt draw, leaving var0(a0 - a1) / S
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 0.5, (6, 2)), rng.normal(0, 3.0, 30)
    values = a[:, :, None] + b[None, None, :]
    replicates = crossed_bootstrap(values, 20_000, seed=1, statistic=lambda m: m[:, 0] - m[:, 1])
    bootstrap_variance_check(replicates, (a[:, 0] - a[:, 1]).var() / 6)


def test_crossed_bootstrap_is_reproducible_and_exact_on_constants():
    values = np.random.default_rng(10).normal(size=(3, 8))
    assert np.array_equal(crossed_bootstrap(values, 50, seed=3), crossed_bootstrap(values, 50, seed=3))
    assert not np.array_equal(crossed_bootstrap(values, 50, seed=3), crossed_bootstrap(values, 50, seed=4))
    assert np.allclose(crossed_bootstrap(np.full((3, 8), 0.25), 20), 0.25)


def test_crossed_bootstrap_rejects_bad_input():
    for values, kwargs, match in (
        ([1.0, 2.0], {}, "seeds, ..., prompts"), (np.zeros((0, 3)), {}, "seeds, ..., prompts"),
        ([[1.0, math.nan]], {}, "finite"), (np.zeros((2, 2, 3)), {}, "without a statistic"),
        (np.zeros((2, 3)), {"replicates": 0}, "replicates"),
        (np.zeros((2, 2, 3)), {"statistic": lambda m: m}, "one number per seed"),
    ):
        with pytest.raises(ValueError, match=match):
            crossed_bootstrap(values, **kwargs)


def test_percentile_interval():
    assert percentile_interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    assert percentile_interval(np.arange(1001.0), 0.5) == pytest.approx((250.0, 750.0))
    with pytest.raises(ValueError, match="replicates"):
        percentile_interval([1.0])
    with pytest.raises(ValueError, match="level"):
        percentile_interval([1.0, 2.0], 1.5)

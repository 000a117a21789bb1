"""Statistics behind every verdict: training seeds, one-sided tests with Holm's adjustment, seeds
needed for power, a crossed bootstrap.

A claim compares two configurations with one statistic, e.g. "reward at a common KL, iteration 2
minus iteration 1". Each training seed s gives one paired difference d_s (both configurations
evaluated on the same prompts with the same sampling seed: evaluation.paired_difference). Across
S seeds:

    mean      d_bar = (1/S) sum_s d_s
    interval  d_bar +- t_{1 - a/2, S - 1} sd(d) / sqrt(S)       (Student t, S - 1 dof; sd with S - 1)

Training variance is inside d_s, so the interval covers it; one seed gives no interval (NaN bounds,
verdict inconclusive). Every claim has a direction ("A above B") and is graded by one-sided t-tests
with Holm's step-down within its family (grade_family, below); seeds_for_power says how many seeds
would resolve a claim's smallest effect of interest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # family-wise error rate of the claims graded together (95% intervals)
POWER = 0.8  # the power seeds_for_power asks for
VERDICTS = ("supported", "contradicted", "inconclusive")


def _differences(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"per-seed differences must be a 1-D list of >= 1 numbers, got shape "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"per-seed differences must be finite, got {values.tolist()} (NaN: some "
                         "seed's front does not reach the KL compared; choose one every seed reaches)")
    return values


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def seed_interval(differences, level: float = 1 - ALPHA) -> tuple[float, float, float]:
    """(mean, low, high) of the per-seed differences: Student-t interval on S - 1 dof. One seed:
    (d_1, NaN, NaN)."""
    d, level = _differences(differences), _check_level(level)
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan
    half = sps.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return mean, mean - half, mean + half


def verdict(ci_low: float, ci_high: float, expected_sign: int) -> str:
    """`supported` when the interval lies strictly on the expected side of 0, `contradicted` when
    strictly on the other side, else `inconclusive` (also when there is no interval: NaN)."""
    if expected_sign not in (1, -1) or isinstance(expected_sign, bool):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "inconclusive"
    if ci_low > ci_high:
        raise ValueError(f"ci_low must be <= ci_high, got [{ci_low}, {ci_high}]")
    if ci_low > 0 or ci_high < 0:
        return "supported" if (1 if ci_low > 0 else -1) == expected_sign else "contradicted"
    return "inconclusive"


def standardize_rewards(rewards, sft_rewards):
    """Rewards in SFT standard deviations, (r - mean r_sft) / sd r_sft (sd with n - 1), r_sft the
    SFT policy's rewards on the same evaluation prompts: a scale that survives a rebuilt reward
    model. Returns a float64 array shaped like `rewards` (a float for a scalar)."""
    sft = np.asarray(sft_rewards, dtype=np.float64).ravel()
    if sft.size < 2 or not np.all(np.isfinite(sft)):
        raise ValueError(f"sft_rewards must hold >= 2 finite rewards, got {sft.size} values")
    sd = sft.std(ddof=1)
    if sd == 0.0:
        raise ValueError("sft_rewards are all equal: their standard deviation is 0, no scale")
    out = (np.asarray(rewards, dtype=np.float64) - sft.mean()) / sd
    return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------- directional claims
#
# Every claim is directional ("A above B"), so it is graded by one-sided tests: `supported` when
# the test in the expected direction rejects after Holm within the claim's family (one judge's
# claims), `contradicted` when the test in the opposite direction does, else `inconclusive`.
# Holm runs at alpha once per direction: a false `supported` in the family has probability
# <= alpha, and so has a false `contradicted`.

ALTERNATIVES = ("greater", "less")


def one_sided_p_value(differences, alternative: str = "greater") -> float:
    """One-sided p of the one-sample t-test of mean 0 against mean > 0 ("greater") or < 0
    ("less"): a directional claim is evidence only in its own direction. NaN for one seed; all
    seeds equal: 0 if their mean lies in the alternative's direction, else 1."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    d = _differences(differences)
    if d.size < 2:
        return math.nan
    mean, sd = d.mean(), d.std(ddof=1)
    sign = 1.0 if alternative == "greater" else -1.0
    if sd == 0.0:
        return 0.0 if sign * mean > 0 else 1.0
    t = mean / (sd / math.sqrt(d.size))
    # the tail scipy's ttest_1samp uses for each alternative, so the two agree to the last bits
    return float(sps.t.sf(t, d.size - 1) if sign > 0 else sps.t.cdf(t, d.size - 1))


def holm_reject(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Which hypotheses of ONE family Holm's step-down rejects: in increasing p (ties: input
    order), the j-th of k is rejected while p < alpha / (k - j + 1); the first that is not stops
    it. Controls the family-wise error at alpha. NaN p (no test: one seed) is not rejected and
    not counted in k."""
    _check_level(1 - alpha)
    p = [float(value) for value in p_values]
    order = sorted((i for i, value in enumerate(p) if not math.isnan(value)), key=lambda i: (p[i], i))
    rejected = [False] * len(p)
    for rank, i in enumerate(order):
        if not p[i] < alpha / (len(order) - rank):
            break  # step-down: every larger p is kept too
        rejected[i] = True
    return rejected


@dataclasses.dataclass(frozen=True)
class DirectionalGrade:
    """One claim graded by grade_family: its verdict and the two one-sided p-values (before Holm)."""

    verdict: str
    p_expected: float  # the one-sided test in the claim's direction
    p_opposite: float  # the one-sided test in the other direction


def _check_sign(expected_sign: int) -> int:
    if expected_sign not in (1, -1) or isinstance(expected_sign, bool):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    return int(expected_sign)


def grade_family(claims: Sequence[tuple[int, Sequence[float]]],
                 alpha: float = ALPHA) -> list[DirectionalGrade]:
    """Grade ONE family of directional claims, each (expected_sign, per-seed differences):
    `supported` when Holm rejects "no effect in the expected direction" among the family's
    expected-direction tests, `contradicted` when it rejects among the opposite-direction tests,
    else `inconclusive` (also with one seed). Input order."""
    signs = [_check_sign(sign) for sign, _ in claims]
    directions = [("greater", "less") if sign > 0 else ("less", "greater") for sign in signs]
    p_expected = [one_sided_p_value(d, side) for (_, d), (side, _) in zip(claims, directions)]
    p_opposite = [one_sided_p_value(d, side) for (_, d), (_, side) in zip(claims, directions)]
    supported, contradicted = holm_reject(p_expected, alpha), holm_reject(p_opposite, alpha)
    # p_expected + p_opposite = 1, so both reject only if alpha >= 1/2, which _check_level allows
    # but no family uses; expected direction first
    verdicts = ["supported" if s else "contradicted" if c else "inconclusive"
                for s, c in zip(supported, contradicted)]
    return [DirectionalGrade(v, pe, po) for v, pe, po in zip(verdicts, p_expected, p_opposite)]


# ----------------------------------------------------------------------------- seeds for power


def _one_sided_power(effect_in_sd: float, n: int, level: float) -> float:
    """P(one-sided t-test at `level` rejects) when the true mean is effect_in_sd sds its way."""
    return float(sps.nct.sf(sps.t.ppf(level, n - 1), n - 1, effect_in_sd * math.sqrt(n)))


def seeds_for_power(sd: float, effect: float, level: float = 1 - ALPHA, power: float = POWER,
                    max_seeds: int = 1_000_000) -> int | float:
    """The fewest seeds (>= 2) with which the one-sample t-test at confidence `level` (e.g. a
    Holm level 1 - alpha / k) detects a true mean difference `effect` with probability `power`,
    the seeds' sd being `sd` (noncentral t, exact): how many seeds a claim must train to resolve
    its smallest effect of interest, by the one-sided test in the effect's direction (the test
    grade_family uses). NaN when sd is not finite (one seed: no sd observed). Power grows with n,
    so the smallest n is found by doubling then bisection."""
    level, power = _check_level(level), _check_level(power)
    if not (math.isfinite(effect) and effect > 0):
        raise ValueError(f"effect must be finite and > 0 (the smallest effect of interest), got {effect}")
    if not math.isfinite(sd):
        return math.nan
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd == 0:
        return 2  # no noise: any effect is seen by the smallest test

    def enough(n):
        return _one_sided_power(effect / sd, n, level) >= power

    low, high = 1, 2  # enough(low) is False by convention (no test with 1 seed)
    while not enough(high):
        if high >= max_seeds:
            raise ValueError(f"more than {max_seeds} seeds needed for effect {effect} at sd {sd}")
        low, high = high, min(2 * high, max_seeds)
    while high - low > 1:  # invariant: enough(high), not enough(low)
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


# ----------------------------------------------------------------------------- crossed bootstrap


def crossed_bootstrap(values, replicates: int = 2000, seed: int = 0,
                      statistic=None) -> np.ndarray:
    """Replicates of the mean over seeds, resampling the seeds AND the evaluation prompts.

    values: (seeds, ..., prompts), e.g. per-prompt differences (seeds x prompts), or per-prompt
    rewards (seeds x fronts x etas x prompts). Each replicate draws the seeds with replacement,
    and one resample of the prompts that it applies to every seed, front and eta: the prompts
    are crossed with the seeds (every seed was evaluated on the same prompts), so the prompt
    draw moves all of them together. Resampling seeds alone would miss that shared prompt
    variance. Each seed's prompt-resampled means (shape (seeds, ...)) go through `statistic`
    (default: none, values must then be seeds x prompts), which returns one number per seed, e.g.
    an envelope gap; the replicate is the mean of those. Descriptive: with few seeds it
    under-covers, as any bootstrap over 3 to 10 units does."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim < 2 or v.shape[0] < 1 or v.shape[-1] < 1:
        raise ValueError(f"values must be (seeds, ..., prompts) with >= 1 of each, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    if statistic is None and v.ndim != 2:
        raise ValueError(f"without a statistic values must be seeds x prompts, got shape {v.shape}")
    if replicates < 1 or isinstance(replicates, bool):
        raise ValueError(f"replicates must be >= 1, got {replicates!r}")
    rng = np.random.default_rng(seed)
    n_seeds, n_prompts = v.shape[0], v.shape[-1]
    out = np.empty(int(replicates))
    for r in range(int(replicates)):
        seeds = rng.integers(0, n_seeds, n_seeds)
        weights = np.bincount(rng.integers(0, n_prompts, n_prompts), minlength=n_prompts) / n_prompts
        means = v[seeds] @ weights  # each resampled seed's means over the one prompt resample
        per_seed = means if statistic is None else np.asarray(statistic(means), dtype=np.float64)
        if per_seed.shape != (n_seeds,):
            raise ValueError(f"statistic must return one number per seed, shape ({n_seeds},), got "
                             f"{per_seed.shape}")
        out[r] = per_seed.mean()
    return out


def percentile_interval(replicates, level: float = 1 - ALPHA) -> tuple[float, float]:
    """The central `level` interval of bootstrap replicates (percentile method)."""
    level = _check_level(level)
    r = np.asarray(replicates, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"replicates must be 1-D, finite, >= 2 of them, got shape {r.shape}")
    low, high = np.quantile(r, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def chord_dips(ts, values) -> np.ndarray:
    """values(t) - ((1 - t) values(0) + t values(1)) at every interior t: how far a quantity
    measured along the straight line between two weights lies above (> 0) or below (< 0, a
    barrier) the chord between its ends (linear mode connectivity). ts holds 0 and 1; values has
    one row per t (a number, or per-prompt values). Returns one row per interior t, in ts order."""
    ts, values = np.asarray(ts, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if values.shape[:1] != ts.shape:
        raise ValueError(f"values must have one row per t ({ts.size}), got shape {values.shape}")
    if 0.0 not in ts or 1.0 not in ts:
        raise ValueError("ts must contain both ends, 0 and 1")
    start, end = values[ts == 0.0][0], values[ts == 1.0][0]
    interior = (ts > 0.0) & (ts < 1.0)
    if not interior.any():
        raise ValueError("ts must hold at least one interior point")
    t = ts[interior].reshape(-1, *([1] * (values.ndim - 1)))
    return values[interior] - ((1 - t) * start + t * end)

"""Statistics behind every verdict: training seeds, Holm's adjustment, minimum detectable effects.

A claim compares two configurations with one statistic, e.g. "reward at a common KL, iteration 2
minus iteration 1". Each training seed s gives one paired difference d_s (both configurations
evaluated on the same prompts with the same sampling seed: evaluation.paired_difference). Across
S seeds:

    mean      d_bar = (1/S) sum_s d_s
    interval  d_bar +- t_{1 - a/2, S - 1} sd(d) / sqrt(S)       (Student t, S - 1 dof; sd with S - 1)
    p         2 P(T_{S-1} > |d_bar| / (sd(d) / sqrt(S)))        (the matching two-sided t-test)

so the interval at level 1 - a excludes 0 exactly when p < a. Training variance is inside d_s, so
the interval covers it; one seed gives no interval (NaN bounds, verdict inconclusive).

Holm across the k claims graded together, written as intervals: sort the claims by p (ties: input
order); the claim of rank j = 1..k gets a = alpha / (k - j + 1), as long as every claim before it
excluded 0 (p < its a); from the first claim that does not, every later claim keeps that same a
(Holm's step-down stops there). So a claim's interval excludes 0 exactly when Holm rejects it (a
brute-force closed test checks this). Claims without an interval (one seed) are not in the family.

The minimum detectable effect of a claim is the true mean difference that its test (two-sided t
at the claim's level, S seeds) detects with 80% power, with the observed sd standing for the true
one (noncentral t, exact): an "inconclusive" claim says how large an effect could hide there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as sps

ALPHA = 0.05  # family-wise error rate of the claims graded together (95% intervals)
POWER = 0.8  # power at the minimum detectable effect
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


def t_test_p_value(differences) -> float:
    """Two-sided p of the one-sample t-test of mean 0 on the per-seed differences (NaN for one
    seed; all seeds equal: 0 if they are not 0, else 1)."""
    d = _differences(differences)
    if d.size < 2:
        return math.nan
    mean, sd = d.mean(), d.std(ddof=1)
    if sd == 0.0:
        return 0.0 if mean != 0.0 else 1.0
    return float(2.0 * sps.t.sf(abs(mean) / (sd / math.sqrt(d.size)), d.size - 1))


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """The confidence level of each claim's interval under Holm's step-down (module docstring).
    NaN p (a claim without an interval): NaN level, and the claim is not counted in k."""
    _check_level(1 - alpha)
    p = [float(value) for value in p_values]
    tested = [i for i, value in enumerate(p) if not math.isnan(value)]
    order = sorted(tested, key=lambda i: (p[i], i))
    levels, stopped_at = [math.nan] * len(p), None
    for rank, i in enumerate(order):
        step = alpha / (len(order) - rank) if stopped_at is None else stopped_at
        levels[i] = 1.0 - step
        if stopped_at is None and not p[i] < step:
            stopped_at = step  # Holm stops: no later claim is tested at a looser level
    return levels


def _power(effect_in_sd: float, n: int, level: float) -> float:
    """P(two-sided t-test at `level` rejects) when the true mean is effect_in_sd standard deviations."""
    critical = sps.t.ppf(0.5 + level / 2, n - 1)
    shift = effect_in_sd * math.sqrt(n)  # the noncentrality
    # P(T < -c) written as P(T' > c) with T' of noncentrality -shift: scipy's nct.cdf gives NaN
    # where that tail underflows
    return float(sps.nct.sf(critical, n - 1, shift) + sps.nct.sf(critical, n - 1, -shift))


def minimum_detectable_effect(sd: float, n: int, level: float = 1 - ALPHA,
                              power: float = POWER) -> float:
    """The true mean difference the t-test at `level` on `n` seeds detects with probability
    `power`, the seeds' standard deviation being `sd`. n < 2: NaN (no test)."""
    level, power = _check_level(level), _check_level(power)
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if _power(0.0, n, level) >= power:  # only with absurd levels: any effect is "detected"
        return 0.0
    high = 1.0
    while _power(high, n, level) < power:
        high *= 2.0
    effect = optimize.brentq(lambda x: _power(x, n, level) - power, 0.0, high, xtol=1e-12)
    return float(effect * sd)


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


@dataclasses.dataclass(frozen=True)
class Claim:
    """One graded claim, as results.json stores it. `ci_low`/`ci_high` are the interval the
    verdict uses (after Holm), at confidence `level`; `mde` the minimum detectable effect there."""

    name: str
    statistic: str  # what d_s measures, e.g. "reward at KL 2.0: iteration 2 - iteration 1"
    expected_sign: int  # +1: the claim says d > 0; -1: d < 0
    mean: float
    ci_low: float
    ci_high: float
    n_seeds: int
    mde: float
    verdict: str
    level: float = math.nan
    per_seed: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None (JSON has no NaN), tuples lists."""
        out = dataclasses.asdict(self)
        out["per_seed"] = list(self.per_seed)
        return {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in out.items()}


def grade_claims(claims: Sequence[tuple[str, str, int, Sequence[float]]],
                 alpha: float = ALPHA) -> list[Claim]:
    """Grade claims together: each (name, statistic, expected_sign, per-seed differences) becomes a
    Claim with its Holm-adjusted interval, minimum detectable effect and verdict (input order)."""
    data = [_differences(differences) for _, _, _, differences in claims]
    levels = holm_levels([t_test_p_value(d) for d in data], alpha)
    graded = []
    for (name, statistic, sign, _), d, level in zip(claims, data, levels):
        mean, low, high = seed_interval(d, level) if d.size >= 2 else (float(d.mean()), math.nan, math.nan)
        sd = float(d.std(ddof=1)) if d.size >= 2 else math.nan
        mde = minimum_detectable_effect(sd, d.size, level) if d.size >= 2 else math.nan
        graded.append(Claim(name, statistic, sign, mean, low, high, int(d.size), mde,
                            verdict(low, high, sign), level, tuple(d.tolist())))
    return graded


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

"""Fronts read over a KL range, and the eta search that measures them densely there.

A front is the reward a family of policies reaches against their KL to the SFT policy, given as
(kls, values): one measured point per eta. "Front A above front B" is read over the KL range every
front and seed compared reaches, not at one KL (one KL is always some front's endpoint in some
seed, so one noisy point decides the claim):

    range      K_low  = the largest first non-zero measured KL over the fronts and seeds compared
               K_high = the smallest maximum KL of any of those fronts (shared_range)
    envelope   E(k) = the best value among points with KL <= k (upper_envelope)
    statistic  (1 / (log K_high - log K_low)) * integral of E_A - E_B over log k in the range

Each envelope is interpolated linearly in log-KL between its measured points, so E_A - E_B is
piecewise linear in log k with kinks only at measured KLs: the trapezoid rule on the union of both
fronts' breakpoints (plus the range ends) is then the exact integral (envelope_gap). Log-KL
because KL spans decades along a front (0.1 to 5) and the eta grid is geometric in KL; each
decade weighs the same. (evaluation.reward_at_kl, the one-point reading, interpolates in KL; the
two agree at every measured KL.)

The dense points come from bisection on eta (bisect_eta): KL(eta) increases with eta, so eta is
halved in on until KL is within 10% of each target of a geometric grid (target_grid). Pure numpy:
kl_of_eta is any callable, e.g. one that samples a policy on a subset of prompts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

MAX_TARGETS = 6  # target KLs per front: the budget for the denser fronts
KL_TOLERANCE = 0.10  # a dense point is within 10% of its target KL


def _front(kls, values) -> tuple[np.ndarray, np.ndarray]:
    kls, values = np.asarray(kls, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if kls.ndim != 1 or kls.shape != values.shape or kls.size < 1:
        raise ValueError(f"a front is (kls, values), two 1-D arrays of one length >= 1, got shapes "
                         f"{kls.shape} and {values.shape}")
    if not (np.all(np.isfinite(kls)) and np.all(np.isfinite(values))):
        raise ValueError("a front's kls and values must be finite (a NaN point was not measured: "
                         "drop it)")
    if np.any(kls < 0):
        raise ValueError(f"KL to SFT is >= 0, got {kls.min()}")
    return kls, values


def upper_envelope(kls, values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct kls, envelope): the running max of values in KL order, because within a
    KL budget every point with less KL is available too (a noisy dip is not the front). Points
    measured at one KL count once, with their best value."""
    kls, values = _front(kls, values)
    order = np.argsort(kls, kind="stable")
    kls, envelope = kls[order], np.maximum.accumulate(values[order])
    last_of_each = np.append(kls[1:] != kls[:-1], True)  # the running max is largest there
    return kls[last_of_each], envelope[last_of_each]


def _covers(kls: np.ndarray, k_low: float, k_high: float) -> bool:
    positive = kls[kls > 0]
    return positive.size > 0 and positive[0] <= k_low and kls[-1] >= k_high


def envelope_gap(front_a, front_b, k_low: float, k_high: float) -> float:
    """Mean over log-KL in [k_low, k_high] of envelope A minus envelope B (module docstring):
    each envelope interpolated linearly in log-KL, integrated by the trapezoid rule on both
    fronts' measured KLs inside the range plus its ends, which is exact for such envelopes.

    NaN when the range is empty (k_low >= k_high, or NaN) or a front does not cover it: no
    non-zero measured KL at or below k_low, or none at or above k_high (no extrapolation). A
    point at KL 0 (the SFT policy) raises the envelope but has no log-KL: it is never a node."""
    (kls_a, env_a), (kls_b, env_b) = upper_envelope(*front_a), upper_envelope(*front_b)
    if not k_low < k_high:  # also NaN bounds: shared_range's empty range
        return math.nan
    if k_low <= 0:
        raise ValueError(f"k_low must be > 0 (the mean is over log-KL), got {k_low}")
    if not (_covers(kls_a, k_low, k_high) and _covers(kls_b, k_low, k_high)):
        return math.nan
    inside = np.concatenate([kls_a, kls_b])
    nodes = np.log(np.unique(np.concatenate([[k_low, k_high], inside[(inside > k_low) & (inside < k_high)]])))

    def on_nodes(kls, envelope):
        positive = kls > 0
        return np.interp(nodes, np.log(kls[positive]), envelope[positive])

    gap = on_nodes(kls_a, env_a) - on_nodes(kls_b, env_b)
    area = np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(nodes))
    return float(area / (nodes[-1] - nodes[0]))


def _front_kls(front) -> np.ndarray:
    """A front's measured KLs: the front may be (kls, values) or the kls alone."""
    if isinstance(front, tuple) and len(front) == 2 and np.ndim(front[0]) == 1:
        front = front[0]  # (kls, values); a tuple of two numbers is two KLs
    kls = np.asarray(front, dtype=np.float64)
    if kls.ndim != 1 or kls.size < 1 or not np.all(np.isfinite(kls)):
        raise ValueError(f"a front's KLs must be 1-D, finite, >= 1 of them; got shape {kls.shape}")
    return kls


def shared_range(fronts_by_seed: Sequence) -> tuple[float, float]:
    """(k_low, k_high), the KL range every front of every seed reaches, so that a claim reads its
    fronts only where all of them were measured: k_low the largest first non-zero measured KL,
    k_high the smallest maximum KL. fronts_by_seed: one entry per seed, each a sequence (or a
    mapping, by name) of the fronts compared, each (kls, values) or its kls. (NaN, NaN) when
    k_low >= k_high (or a front has no non-zero KL): there is no shared range."""
    seeds = [list(fronts.values()) if isinstance(fronts, Mapping) else list(fronts)
             for fronts in fronts_by_seed]
    if not seeds or any(not fronts for fronts in seeds):
        raise ValueError("fronts_by_seed must hold >= 1 seed, each with >= 1 front")
    kls = [_front_kls(front) for fronts in seeds for front in fronts]
    firsts = [k[k > 0].min() if np.any(k > 0) else math.inf for k in kls]
    k_low, k_high = float(max(firsts)), float(min(k.max() for k in kls))
    return (k_low, k_high) if k_low < k_high else (math.nan, math.nan)


def target_grid(k_low: float, k_high: float, points: int = MAX_TARGETS) -> np.ndarray:
    """`points` target KLs spaced geometrically from k_low to k_high, both included: even in
    log-KL, where the range statistic averages. At most MAX_TARGETS (the evaluation budget)."""
    if not 2 <= points <= MAX_TARGETS or isinstance(points, bool):
        raise ValueError(f"points must be an integer in [2, {MAX_TARGETS}], got {points!r}")
    if not 0 < k_low < k_high < math.inf:
        raise ValueError(f"need 0 < k_low < k_high < inf, got [{k_low}, {k_high}] (NaN: no shared "
                         "range)")
    return np.geomspace(k_low, k_high, int(points))


def _check_search(target: float, tol: float, lo: float, hi: float, max_steps: int) -> None:
    if not 0 < target < math.inf:
        raise ValueError(f"target KL must be finite and > 0, got {target}")
    if not 0 < tol < 1:
        raise ValueError(f"tol is relative, in (0, 1), got {tol}")
    if not lo < hi:
        raise ValueError(f"need lo < hi, got [{lo}, {hi}]")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


def _narrow(known, target: float, lo: float, hi: float) -> tuple[float, float, bool]:
    """The bracket [lo, hi] narrowed by known (eta, kl) points, and whether its hi is known to
    exceed the target. Known points out of order (a noisy, non-monotone KL) are ignored."""
    below = [eta for eta, kl in known if lo <= eta <= hi and kl < target]
    above = [eta for eta, kl in known if lo <= eta <= hi and kl >= target]
    new_lo, new_hi = max(below, default=lo), min(above, default=hi)
    return (new_lo, new_hi, bool(above)) if new_lo < new_hi else (lo, hi, False)


def bisect_eta(kl_of_eta: Callable[[float], float], target: float, tol: float = KL_TOLERANCE,
               lo: float = 0.0, hi: float = 1.0, max_steps: int = 20,
               known: Sequence[tuple[float, float]] = ()) -> tuple[float, float, list]:
    """(eta, kl, evaluations): an eta in [lo, hi] whose kl = kl_of_eta(eta) is within `tol`
    (relative) of `target`, by bisection on KL(eta), assumed increasing with KL(lo) below the
    target (eta = 0 is the SFT policy: KL 0). `evaluations` lists the (eta, kl) pairs this call
    measured: each is a real evaluation, so at most max_steps of them.

    `known` (eta, kl) pairs, measured before, are reused: one within tol is returned without a
    new evaluation, the others narrow the bracket. A target out of reach (KL(hi) below it by more
    than tol) or not hit within max_steps gives eta = kl = NaN, after at most one evaluation in the
    first case: reported, never looped on."""
    _check_search(target, tol, lo, hi, max_steps)
    hits = [(eta, kl) for eta, kl in known if lo <= eta <= hi and abs(kl - target) <= tol * target]
    if hits:
        eta, kl = min(hits, key=lambda point: abs(point[1] - target))
        return float(eta), float(kl), []
    lo, hi, above = _narrow(known, target, lo, hi)
    evaluations = []

    def measure(eta: float) -> float:
        kl = float(kl_of_eta(eta))
        if not math.isfinite(kl):
            raise ValueError(f"kl_of_eta({eta}) returned {kl}, not a finite KL")
        evaluations.append((eta, kl))
        return kl

    if not above:  # one evaluation tells whether the target is reachable at all
        kl = measure(hi)
        if abs(kl - target) <= tol * target:
            return float(hi), kl, evaluations
        if kl < target:
            return math.nan, math.nan, evaluations
    while len(evaluations) < max_steps:
        eta = (lo + hi) / 2
        kl = measure(eta)
        if abs(kl - target) <= tol * target:
            return eta, kl, evaluations
        lo, hi = (eta, hi) if kl < target else (lo, eta)
    return math.nan, math.nan, evaluations


def dense_front_etas(kl_of_eta: Callable[[float], float], targets: Sequence[float],
                     tol: float = KL_TOLERANCE, lo: float = 0.0, hi: float = 1.0,
                     max_steps: int = 20) -> tuple[list[tuple[float, float, float]], list]:
    """([(target, eta, kl) per target], evaluations): bisect_eta for each target, each search
    reusing every evaluation made so far (a point measured for one target narrows, or hits,
    the next one): the dense front costs fewer evaluations than independent searches.
    Unreachable targets come back with eta = kl = NaN."""
    evaluations, points = [], []
    for target in targets:
        eta, kl, new = bisect_eta(kl_of_eta, float(target), tol, lo, hi, max_steps, evaluations)
        evaluations += new
        points.append((float(target), eta, kl))
    return points, evaluations

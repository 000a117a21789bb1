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


def envelope_mean(front, k_low: float, k_high: float) -> float:
    """Mean over log-KL in [k_low, k_high] of one front's upper envelope (interpolated in log-KL,
    as envelope_gap reads it: envelope_gap(A, B) = envelope_mean(A) - envelope_mean(B) when both
    cover the range). Ranks several fronts over the range they share. NaN as envelope_gap."""
    kls, _ = _front(*front)
    flat = (kls, np.zeros_like(kls))  # a front at 0 over the same KLs: its envelope is 0
    return envelope_gap(front, flat, k_low, k_high)


def envelope_at(front, k: float) -> float:
    """The upper envelope of front = (kls, values) at KL k > 0, interpolated in log-KL as
    envelope_gap integrates it (the one-point reading of a claim at the top of its range). NaN
    outside the front's non-zero measured KLs (no extrapolation)."""
    kls, envelope = upper_envelope(*front)
    positive = kls > 0
    if not (k > 0 and positive.any() and kls[positive][0] <= k <= kls[-1]):
        return math.nan
    return float(np.interp(math.log(k), np.log(kls[positive]), envelope[positive]))


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


# ----------------------------------------------------------------------------- measuring a front

KL_FLOOR = 0.1  # nats: the lowest target KL of every front. Below it a policy barely differs from
# SFT (its reward gain is within one evaluation's noise), and one floor for all fronts makes their
# shared range start there instead of at the sparsest front's first point.
SEARCH_TOLERANCE = 0.07  # the search on a prompt subset aims tighter than KL_TOLERANCE, so that
# the evaluation on all prompts (a slightly different mean KL) still lands within KL_TOLERANCE


def front_targets(k_max: float, floor: float = KL_FLOOR, points: int = MAX_TARGETS) -> np.ndarray:
    """The target KLs of one front whose endpoint (eta = 1) has KL k_max: geometric from `floor`
    to k_max, both included; a front that ends below 4 floors spans [k_max / 4, k_max] instead."""
    if not 0 < k_max < math.inf:
        raise ValueError(f"k_max must be finite and > 0, got {k_max}")
    low = floor if k_max > 4 * floor else k_max / 4
    return target_grid(low, k_max, points)


def _secant(lo: tuple[float, float], hi: tuple[float, float], target: float) -> float:
    """The next eta between bracket ends lo = (eta, kl) < target <= hi: on the power law
    KL = c eta^p through both ends (p = 2 from SFT's (0, 0), where KL ~ eta^2), kept within
    the bracket's middle 80% so that a curve off the power law still shrinks the bracket."""
    (eta_lo, kl_lo), (eta_hi, kl_hi) = lo, hi
    if eta_lo > 0 and 0 < kl_lo < kl_hi:
        power = math.log(kl_hi / kl_lo) / math.log(eta_hi / eta_lo)
        eta = eta_lo * (target / kl_lo) ** (1 / power)
    else:  # from SFT: KL ~ eta^2 near eta = 0
        eta = eta_hi * math.sqrt(target / kl_hi)
    return min(max(eta, eta_lo + 0.1 * (eta_hi - eta_lo)), eta_hi - 0.1 * (eta_hi - eta_lo))


def search_eta(kl_of_eta: Callable[[float], float], target: float, known: Sequence[tuple[float, float]],
               tol: float = KL_TOLERANCE, max_steps: int = 12) -> tuple[float, float, list]:
    """(eta, kl, evaluations) like bisect_eta, faster on a LITI front: KL(eta) is close to a power
    law (eta^2 near SFT), so each step solves the power law through the bracket's known ends
    (_secant), a regula falsi in log-log coordinates that still shrinks a bracket on any
    increasing curve. `known` must bracket the target: a point below it
    (eta = 0, KL 0 is SFT) and one at or above it (the endpoint). NaN when max_steps pass."""
    _check_search(target, tol, 0.0, 1.0, max_steps)
    known = [(float(eta), float(kl)) for eta, kl in known]
    hits = [(eta, kl) for eta, kl in known if abs(kl - target) <= tol * target]
    if hits:
        eta, kl = min(hits, key=lambda point: abs(point[1] - target))
        return eta, kl, []
    evaluations = []
    for _ in range(max_steps):
        below = [p for p in known + evaluations if p[1] < target]
        above = [p for p in known + evaluations if p[1] >= target]
        if not below or not above:
            raise ValueError(f"known points must bracket the target KL {target}: got {sorted(known)}")
        lo, hi = max(below), min(above)  # by eta: the tightest bracket
        if not lo[0] < hi[0]:  # a noisy KL(eta) out of order: fall back on plain bisection order
            lo, hi = min(below), max(above)
            if not lo[0] < hi[0]:
                return math.nan, math.nan, evaluations
        eta = _secant(lo, hi, target)
        kl = float(kl_of_eta(eta))
        if not math.isfinite(kl):
            raise ValueError(f"kl_of_eta({eta}) returned {kl}, not a finite KL")
        evaluations.append((eta, kl))
        if abs(kl - target) <= tol * target:
            return eta, kl, evaluations
    return math.nan, math.nan, evaluations


def measure_front(subset_kl: Callable[[float], float], evaluate: Callable[[float], dict], endpoint: dict,
                  targets: Sequence[float], subset_endpoint_kl: float,
                  tol: float = KL_TOLERANCE) -> tuple[list[dict], dict]:
    """The dense front's rows: one evaluation on all prompts per target KL, its eta searched on a
    subset of the prompts (cheap) and repaired on all prompts when the full KL misses by more than
    `tol`. evaluate(eta) -> row with `kl_to_sft` (all prompts) and optionally `subset_kl` (the
    subset's KL in the same evaluation, reused by the search); subset_kl(eta) -> KL on the subset;
    endpoint: the row of eta = 1 (already evaluated; its KL is the largest target);
    subset_endpoint_kl: the subset's KL at eta = 1. Returns (rows with `eta` and `target_kl`, each
    within tol of its target, and a count of evaluations {"subset", "full", "missed"}): a target
    not reached is left out and counted in `missed`."""
    rows, counts = [], {"subset": 0, "full": 0, "missed": 0}
    # the subset's KL differs from all prompts' by a factor that varies little along one front: the
    # search reads the subset's KL scaled by the endpoint's ratio, in all prompts' units
    ratio = float(endpoint["kl_to_sft"]) / float(subset_endpoint_kl) if subset_endpoint_kl > 0 else 1.0

    def scaled_subset_kl(eta: float) -> float:
        return ratio * float(subset_kl(eta))

    subset_known = [(0.0, 0.0), (1.0, float(endpoint["kl_to_sft"]))]
    full_known = [(0.0, 0.0), (1.0, float(endpoint["kl_to_sft"]))]
    full_rows = {1.0: endpoint}

    def full(eta: float) -> float:
        row = evaluate(eta)
        full_rows[eta] = row
        counts["full"] += 1
        if row.get("subset_kl") is not None:  # the subset's KL comes with it: a free subset point
            subset_known.append((eta, ratio * float(row["subset_kl"])))
        return float(row["kl_to_sft"])

    for target in sorted(float(t) for t in targets):
        if abs(endpoint["kl_to_sft"] - target) <= tol * target:  # the largest target: eta = 1 itself
            rows.append({**endpoint, "eta": 1.0, "target_kl": target})
            continue
        try:
            eta, kl, new = search_eta(scaled_subset_kl, target, subset_known, SEARCH_TOLERANCE)
        except ValueError:  # the subset's KL does not reach the target: search on all prompts
            eta, new = math.nan, []
        subset_known += new
        counts["subset"] += len(new)
        if math.isfinite(eta) and eta not in full_rows:
            full_known.append((eta, full(eta)))
        if not math.isfinite(eta) or abs(full_rows[eta]["kl_to_sft"] - target) > tol * target:
            try:  # the subset's KL and all prompts' KL disagree here: search on all prompts
                eta, kl, new = search_eta(full, target, full_known, tol, max_steps=6)
            except ValueError:  # all prompts' KL does not bracket the target
                eta = math.nan
            full_known += [point for point in new if point not in full_known]
        if math.isfinite(eta) and abs(full_rows[eta]["kl_to_sft"] - target) <= tol * target:
            rows.append({**full_rows[eta], "eta": float(eta), "target_kl": target})
        else:
            counts["missed"] += 1
    return sorted(rows, key=lambda row: row["eta"]), counts

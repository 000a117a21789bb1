"""The multi-seed results of the main job: dense LITI fronts, claims graded across training seeds,
and their Markdown (docs/results/RESULTS.md and the README's results block).

No model here: `report.py` trains and evaluates, this module turns the evaluated numbers (a
results dict, saved as docs/results/results.json) into claims and text, so that every number
and every verdict in the README is computed from that file (tests/test_results.py checks it).

Rewards are compared in SFT standard deviations, reward_sd = (r - mean r_sft) / sd r_sft on the
same evaluation prompts (stats.standardize_rewards): a scale that survives a rebuilt reward model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .evaluation import reward_at_kl
from .dense_fronts import envelope_at, envelope_gap, shared_range
from .stats import (ALPHA, crossed_bootstrap, grade_family, percentile_interval, seed_interval,
                    seeds_for_power)

LOW_KL_SHARE = 0.1  # the mean fronts are drawn over [0.1 K, K], K the smallest maximum KL
MEAN_FRONT_POINTS = 8  # fixed KL values at which the seeds' fronts are averaged
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
HEADLINE_NOTE = "the default WARP run and REINFORCE with an SFT anchor"

# (name, front A, front B): "A's front is above B's at a common KL" (expected sign +1).
FRONT_CLAIMS = (
    ("iteration 2 above iteration 1 (paper Fig. 1b)", "iteration 2", "iteration 1"),
    ("SLERP above LERP (same runs of iteration 1)", "iteration 1", "LERP, iteration 1"),
    ("WARP (I = 2, M = 2) above REINFORCE with an SFT anchor (mu = 0, M = 1)", "iteration 2", "REINFORCE, SFT anchor"),
    ("WARP above REINFORCE with an SFT anchor at equal compute (I x M x T RL steps each)", "iteration 2",
     "REINFORCE, SFT anchor, equal compute"),
    ("M = 2 above M = 1 (iteration 1)", "iteration 1", "M = 1"),
    ("M = 3 above M = 2 (iteration 1)", "M = 3", "iteration 1"),
)
# (name, column, point A, point B, point A0, point B0): A - B (minus A0 - B0 when given) > 0.
POINT_CLAIMS = (
    ("larger mu (0.05 vs 0.01) -> more KL, theta_slerp_2", "kl_to_sft", "mu=0.05 slerp_2", "slerp_2", None, None),
    ("larger mu (0.05 vs 0.01) -> more reward, theta_slerp_2", "reward_sd", "mu=0.05 slerp_2", "slerp_2", None, None),
    ("larger mu: the KL gap opens at iteration 2", "kl_to_sft", "mu=0.05 slerp_2", "slerp_2",
     "mu=0.05 slerp_1", "slerp_1"),
    ("larger lr (1e-3 vs 1e-4) -> more KL, theta_slerp_1", "kl_to_sft", "lr=0.001 slerp_1", "slerp_1", None, None),
    ("larger lr (1e-3 vs 1e-4) -> more reward, theta_slerp_1", "reward_sd", "lr=0.001 slerp_1", "slerp_1", None, None),
)


# ----------------------------------------------------------------------------- across seeds


def _front(fronts: pd.DataFrame, name: str, seed: int) -> pd.DataFrame:
    front = fronts[(fronts["front"] == name) & (fronts["seed"] == seed)]
    if front.empty:
        raise ValueError(f"results have no front {name!r} for seed {seed}")
    return front


def seeds_with(table: pd.DataFrame, column: str, names) -> list[int]:
    """The seeds for which `table` holds every one of `names` in `column` (e.g. both fronts of a
    claim): the headline claims have more seeds than the others (report.HEADLINE_STUDIES)."""
    if column not in table.columns:  # no rows at all
        return []
    sets = [set(int(s) for s in table.loc[table[column] == name, "seed"]) for name in names]
    return sorted(set.intersection(*sets)) if sets else []


def reward_sd_at_kl(front: pd.DataFrame, kl: float) -> float:
    """reward_at_kl on the reward in SFT standard deviations (the mean fronts' reading)."""
    return reward_at_kl(front[["kl_to_sft", "reward_sd"]].rename(columns={"reward_sd": "reward_mean"}), kl)


def mean_fronts(fronts: pd.DataFrame, points: int = MEAN_FRONT_POINTS) -> pd.DataFrame:
    """Each front averaged across seeds at fixed KL values (geometric grid over [0.1 K, K], K the
    smallest maximum KL across seeds): columns front, kl, reward_sd, reward_sd_low/high (min/max
    over seeds), n_seeds. Points where a seed's front has no reading are left out."""
    rows = []
    for name in fronts["front"].unique():
        seeds = seeds_with(fronts, "front", [name])
        top = min(float(_front(fronts, name, s)["kl_to_sft"].max()) for s in seeds)
        if not top > 0:
            continue
        for kl in np.geomspace(LOW_KL_SHARE * top, top, points):
            values = [reward_sd_at_kl(_front(fronts, name, s), float(kl)) for s in seeds]
            if all(math.isfinite(v) for v in values):
                rows.append({"front": name, "kl": float(kl), "reward_sd": float(np.mean(values)),
                             "reward_sd_low": float(min(values)), "reward_sd_high": float(max(values)),
                             "n_seeds": len(values)})
    return pd.DataFrame(rows, columns=["front", "kl", "reward_sd", "reward_sd_low", "reward_sd_high", "n_seeds"])


# ----------------------------------------------------------------------------- claims

# The judges whose claims form one Holm family each: (family, column of the evaluation rows in SFT
# sd of that judge, column of the per-prompt table). Claims about KL alone need no judge: a third
# family. A rescored build reads the proxy from `reward_b_sd` (a second reward model's scores).
JUDGES = (("proxy", "reward_sd", "proxy_reward"), ("held-out sentiment", "heldout_sd", "heldout_sentiment"))
KL_FAMILY = "KL"
HEADLINE_CLAIMS = (FRONT_CLAIMS[0][0], FRONT_CLAIMS[2][0])
# Smallest effects of interest, which size the seeds a claim needs (seeds_for_power):
FRONT_EFFECT = 0.05  # SFT sd, a front claim: the choice for "front A above front B"
# SFT sd, a reward endpoint: one evaluation's mean on 256 prompts has a standard error of
# 1 / sqrt(256) = 0.0625 SFT sd, so a smaller gain could not be seen in any one evaluation.
POINT_REWARD_EFFECT = 0.05
# relative, a KL endpoint: the dense fronts place their points within 10% of a target KL, so a
# smaller KL difference is below the precision the course reads KL with (effect = 10% of B's KL).
KL_RELATIVE_EFFECT = 0.10
CLAIM_RANGES: dict[str, tuple[float, float]] = {}  # claim name -> (k_low, k_high) declared; else measured
BOOTSTRAP_REPLICATES = 1000


@dataclasses.dataclass
class ClaimData:
    """One claim measured per seed, before grading (Holm needs the whole family)."""

    name: str
    family: str
    statistic: str
    kind: str  # "front" (envelope gap over a KL range) or "point" (an endpoint difference)
    per_seed: list[float]
    seeds: list[int]
    effect: float  # smallest effect of interest, in the statistic's units
    expected_sign: int = 1
    k_low: float = math.nan
    k_high: float = math.nan
    one_point: dict | None = None  # the secondary reading at K_high (the envelopes there, log-KL interpolated)
    bootstrap: tuple | None = None  # (values, statistic) for stats.crossed_bootstrap


def claim_range(name: str, fronts: pd.DataFrame, names, seeds) -> tuple[float, float]:
    """[K_low, K_high] of a front claim: declared in CLAIM_RANGES, else the range every front of
    every seed compared reaches (dense_fronts.shared_range)."""
    if name in CLAIM_RANGES:
        return CLAIM_RANGES[name]
    return shared_range([[_front(fronts, n, s)["kl_to_sft"].to_numpy() for n in names] for s in seeds])


def _front_arrays(front: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    return front["kl_to_sft"].to_numpy(float), front[column].to_numpy(float)


def front_claim(name: str, a: str, b: str, fronts: pd.DataFrame, judge: tuple, prompts=None) -> ClaimData | None:
    """"Front a above front b" on one judge: per seed the envelope gap over [K_low, K_high]."""
    family, column, prompt_column = judge
    seeds = seeds_with(fronts, "front", (a, b))
    if not seeds or column not in fronts:
        return None
    k_low, k_high = claim_range(name, fronts, (a, b), seeds)
    if not k_low < k_high:
        return None
    per_seed = [envelope_gap(_front_arrays(_front(fronts, a, s), column), _front_arrays(_front(fronts, b, s), column),
                             k_low, k_high) for s in seeds]
    if not all(math.isfinite(d) for d in per_seed):
        return None
    point = [envelope_at(_front_arrays(_front(fronts, a, s), column), k_high)
             - envelope_at(_front_arrays(_front(fronts, b, s), column), k_high) for s in seeds]
    one_point = None
    if all(math.isfinite(d) for d in point):
        mean, low, high = seed_interval(point)
        one_point = {"kl": k_high, "mean": mean, "ci_low": low, "ci_high": high}
    boot = None if prompts is None else front_bootstrap(fronts, (a, b), seeds, prompt_column, prompts)
    return ClaimData(name, family, f"{family} envelope {a} - {b}, mean over log-KL", "front", per_seed, seeds,
                     FRONT_EFFECT, k_low=k_low, k_high=k_high, one_point=one_point, bootstrap=boot)


def point_claim(spec: tuple, points: pd.DataFrame, judge: tuple | None, prompts=None) -> ClaimData | None:
    """An endpoint claim: A - B (minus A0 - B0) of one column per seed; judge None: the KL claims."""
    name, column, a, b, a0, b0 = spec
    family, value_column, prompt_column = judge if judge else (KL_FAMILY, "kl_to_sft", "kl_to_sft")
    needed = [x for x in (a, b, a0, b0) if x]
    seeds = seeds_with(points, "policy", needed)
    if not seeds or value_column not in points:
        return None

    def value(policy, seed, col=value_column):
        return float(points[(points["policy"] == policy) & (points["seed"] == seed)][col].iloc[0])

    per_seed = [value(a, s) - value(b, s) - ((value(a0, s) - value(b0, s)) if a0 else 0.0) for s in seeds]
    effect = (POINT_REWARD_EFFECT if judge else
              KL_RELATIVE_EFFECT * float(np.mean([value(b, s) for s in seeds])))
    statistic = f"{family}: {a} - {b}" + (f" - ({a0} - {b0})" if a0 else "")
    boot = None if prompts is None else point_bootstrap(points, needed, seeds, prompt_column, prompts)
    return ClaimData(name, family, statistic, "point", per_seed, seeds, effect, bootstrap=boot)


def claim_data(results: dict, judges=JUDGES, prompts=None) -> list[ClaimData]:
    """Every claim of `results`, measured per seed: the front claims and the reward endpoint claims
    on each judge, the KL endpoint claims once. prompts: per-prompt tables for the bootstrap
    (PromptValues), or None (no bootstrap)."""
    fronts, points = pd.DataFrame(results["fronts"]), pd.DataFrame(results["points"])
    out = []
    for judge in judges:
        out += [front_claim(name, a, b, fronts, judge, prompts) for name, a, b in FRONT_CLAIMS]
        out += [point_claim(spec, points, judge, prompts) for spec in POINT_CLAIMS if spec[1] == "reward_sd"]
    out += [point_claim(spec, points, None, prompts) for spec in POINT_CLAIMS if spec[1] == "kl_to_sft"]
    return [claim for claim in out if claim is not None]


def grade(data: Sequence[ClaimData]) -> list[dict]:
    """Grade each family (stats.grade_family: one-sided tests, Holm within the family); add the
    95% t-interval, the seeds that 80% power at the claim's smallest effect needs at the family's
    strictest Holm level (alpha / k), and the crossed bootstrap's interval."""
    out = []
    for family in dict.fromkeys(claim.family for claim in data):
        members = [claim for claim in data if claim.family == family]
        grades = grade_family([(c.expected_sign, c.per_seed) for c in members])
        k = sum(len(c.per_seed) >= 2 for c in members)
        for claim, graded in zip(members, grades):
            d = np.asarray(claim.per_seed, dtype=float)
            mean, low, high = seed_interval(d)
            sd = float(d.std(ddof=1)) if d.size >= 2 else math.nan
            need = seeds_for_power(sd, claim.effect, 1 - ALPHA / max(k, 1)) if d.size >= 2 else math.nan
            record = {"name": claim.name, "family": family, "statistic": claim.statistic, "kind": claim.kind,
                      "expected_sign": claim.expected_sign, "n_seeds": int(d.size), "seeds": claim.seeds,
                      "per_seed": d.tolist(), "mean": mean, "ci_low": low, "ci_high": high, "sd": sd,
                      "p_expected": graded.p_expected, "p_opposite": graded.p_opposite, "family_size": k,
                      "verdict": graded.verdict, "smallest_effect": claim.effect, "seeds_for_power": need,
                      "k_low": claim.k_low, "k_high": claim.k_high, "one_point": claim.one_point,
                      "bootstrap": bootstrap_interval(claim)}
            out.append(_json_ready(record))
    return out


def _json_ready(value):
    """NaN -> None (JSON has no NaN), numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def claims(results: dict, per_prompt: pd.DataFrame | None = None) -> list[dict]:
    """Every claim graded, Holm within each judge's family; the headline claims also graded on the
    other builds of results['builds'] (`fragile` when a verdict differs between builds)."""
    prompts = None if per_prompt is None else PromptValues(per_prompt, results["sft"])
    graded = grade(claim_data(results, JUDGES, prompts))
    return with_fragility(graded, build_grades(results))


# ----------------------------------------------------------------------------- other builds

# The builds a claim is graded again on: the same completions re-scored by a second reward model
# ("rescored": every proxy claim), and a second SFT policy and reward model with their own runs
# ("rebuilt": the headline claims).


def build_grades(results: dict) -> dict[str, dict[tuple[str, str], dict]]:
    """{build: {(claim, family): {mean, verdict, n_seeds}}} on each other build, each build's
    claims graded as their own families: every proxy claim re-scored by the second reward model
    (same completions), the headline claims of the rebuilt SFT policy and reward model."""
    out = {}
    fronts, points = pd.DataFrame(results["fronts"]), pd.DataFrame(results["points"])
    if all("reward_b_sd" in t and t["reward_b_sd"].notna().all() for t in (fronts, points)):
        rescored = {**results, "fronts": fronts.drop(columns="reward_sd").rename(columns={"reward_b_sd": "reward_sd"}),
                    "points": points.drop(columns="reward_sd").rename(columns={"reward_b_sd": "reward_sd"})}
        out["rescored"] = [c for c in grade(claim_data(rescored, JUDGES[:1])) if c["family"] == "proxy"]
    for name, build in (results.get("builds") or {}).items():
        out[name] = [c for c in grade(claim_data(build, JUDGES)) if c["name"] in HEADLINE_CLAIMS]
    return {build: {(c["name"], c["family"]): {"mean": c["mean"], "verdict": c["verdict"], "n_seeds": c["n_seeds"]}
                    for c in graded} for build, graded in out.items()}


def with_fragility(graded: list[dict], builds: dict) -> list[dict]:
    """Each claim with `builds` (its grade on every other build that has it), `fragile` (True when
    a verdict differs from this build's, False when all agree, None when no other build has it)
    and `spread` ([min, max] of the means across builds)."""
    out = []
    for claim in graded:
        other = {build: grades[(claim["name"], claim["family"])] for build, grades in builds.items()
                 if (claim["name"], claim["family"]) in grades}
        means = [claim["mean"], *(g["mean"] for g in other.values())]
        out.append({**claim, "builds": other,
                    "fragile": (any(g["verdict"] != claim["verdict"] for g in other.values()) if other else None),
                    "spread": [min(means), max(means)] if other and None not in means else None})
    return out


# ----------------------------------------------------------------------------- the bootstrap


class PromptValues:
    """The per-prompt table by evaluation, prompts in one order for every evaluation (the crossed
    design): the KL, and each judge's value minus SFT's on the same prompt, in SFT sd (the sd held
    fixed: a scale). Their mean over any resample of the prompts is the judge's value in SFT sd
    relative to SFT on that resample, so the SFT point stays at 0 in every replicate."""

    def __init__(self, per_prompt: pd.DataFrame, sft: dict):
        table = per_prompt.sort_values(["eval_id", "prompt_id"], kind="stable")
        self.by_eval = {int(k): g for k, g in table.groupby("eval_id")}
        base = self.by_eval[int(sft["eval_id"])]
        self.base = {col: (base[col].to_numpy(float), float(base[col].std(ddof=1)))
                     for col in ("proxy_reward", "heldout_sentiment", "proxy_reward_b") if col in base}

    def values(self, eval_id: int, column: str) -> np.ndarray:
        v = self.by_eval[int(eval_id)][column].to_numpy(float)
        if column in self.base:
            sft, sd = self.base[column]
            v = (v - sft) / sd
        return v


def front_bootstrap(fronts: pd.DataFrame, names, seeds, column: str, prompts: PromptValues):
    """(values, statistic) of a front claim for crossed_bootstrap: values (seeds, fronts, points,
    [KL, judge], prompts), each front padded to one length by repeating its last point (a repeated
    point leaves the envelope as it is); statistic: per seed the envelope gap over the range the
    replicate's fronts share."""
    per_seed = []
    for s in seeds:
        per_front = []
        for name in names:
            front = _front(fronts, name, s).sort_values("kl_to_sft")
            per_front.append([np.stack([prompts.values(e, "kl_to_sft"), prompts.values(e, column)])
                              for e in front["eval_id"]])
        per_seed.append(per_front)
    length = max(len(front) for fronts_ in per_seed for front in fronts_)
    values = np.array([[front + [front[-1]] * (length - len(front)) for front in fronts_] for fronts_ in per_seed])

    def statistic(means):  # means: (seeds, fronts, points, 2)
        k_low, k_high = shared_range([[front[:, 0] for front in seed] for seed in means])
        return np.array([envelope_gap((seed[0, :, 0], seed[0, :, 1]), (seed[1, :, 0], seed[1, :, 1]), k_low, k_high)
                         for seed in means])

    return values, statistic


def point_bootstrap(points: pd.DataFrame, needed, seeds, column: str, prompts: PromptValues):
    """(values, None) of an endpoint claim: per seed and prompt A - B (minus A0 - B0)."""
    def ids(seed):
        return [int(points[(points["policy"] == p) & (points["seed"] == seed)]["eval_id"].iloc[0]) for p in needed]

    rows = []
    for s in seeds:
        v = [prompts.values(e, column) for e in ids(s)]
        rows.append(v[0] - v[1] - ((v[2] - v[3]) if len(v) == 4 else 0.0))
    return np.array(rows), None


def bootstrap_interval(claim: ClaimData) -> dict | None:
    """The crossed bootstrap's 95% percentile interval of the claim's mean (descriptive: with few
    seeds it under-covers), and the share of replicates in which the statistic was defined."""
    if claim.bootstrap is None:
        return None
    values, statistic = claim.bootstrap
    replicates = crossed_bootstrap(values, BOOTSTRAP_REPLICATES, seed=0, statistic=statistic)
    finite = replicates[np.isfinite(replicates)]
    if finite.size < 2:
        return None
    low, high = percentile_interval(finite)
    return {"low": low, "high": high, "replicates": int(replicates.size), "defined": int(finite.size)}


# ----------------------------------------------------------------------------- Markdown


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}g}"


def _plain(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _interval(low, high) -> str:
    return "n/a" if low is None else f"[{_num(low)}, {_num(high)}]"


def claim_range_text(claim: dict) -> str:
    return "" if claim.get("k_low") is None else f"KL {claim['k_low']:.3g} to {claim['k_high']:.3g}"


def claim_sentence(claim: dict) -> str:
    """One verdict sentence, every number from the claim."""
    where = claim_range_text(claim)
    what = (f"mean gap of the envelopes over log-KL from {where[3:]}" if where else claim["statistic"])
    interval = ("no interval (one seed)" if claim["ci_low"] is None else
                f"95% interval {_interval(claim['ci_low'], claim['ci_high'])}")
    p = "" if claim["p_expected"] is None else (f"; one-sided p {claim['p_expected']:.3g}, Holm over the "
                                                 f"{claim['family_size']} claims of the {claim['family']} family")
    need = ("" if claim["seeds_for_power"] is None else
            f"; {claim['seeds_for_power']} seeds would detect its smallest effect of interest "
            f"({claim['smallest_effect']:.3g}) with 80% power")
    fragile = ""
    if claim.get("fragile") is not None:
        others = ", ".join(f"{build}: {g['verdict']} ({_num(g['mean'])}, {g['n_seeds']} seeds)"
                           for build, g in claim["builds"].items())
        fragile = (f" Fragile: its verdict differs on another build ({others})." if claim["fragile"] else
                   f" The same verdict on the other builds ({others}).")
    return (f"**{claim['name']}** ({claim['family']}): {claim['verdict']}. Mean over {claim['n_seeds']} seeds "
            f"{_num(claim['mean'])} ({what}), {interval}{p}{need}.{fragile}")


def judge_disagreements(claims_: list[dict]) -> list[str]:
    """A claim the proxy supports and the held-out judge does not: a finding, in words."""
    held = {c["name"]: c for c in claims_ if c["family"] == "held-out sentiment"}
    lines = []
    for claim in claims_:
        other = held.get(claim["name"])
        if claim["family"] == "proxy" and other and claim["verdict"] == "supported" != other["verdict"]:
            lines.append(f"**{claim['name']}** is supported by the proxy reward but {other['verdict']} on the "
                         "held-out sentiment judge, which the policy never optimized: the proxy's gain is not "
                         "confirmed by an independent judge.")
    return lines


FINAL_POLICY = "slerp_2"  # theta_slerp_I of the default run: the policy WARP returns
ENDPOINT_COLUMNS = {"reward_sd": "reward (SFT sd)", "reward_mean": "raw reward", "kl_to_sft": "KL to SFT",
                    "heldout_sentiment": "held-out sentiment", "degenerate_share": "degenerate share",
                    "hacked_share": "hacked share", "hacked_vs_sft": "hacked share minus SFT's"}


# the endpoints whose hacking verdict the results state: WARP's policy, and the study whose larger
# learning rate moves furthest from SFT (notebook 06's exhibit)
HACKING_SUBJECTS = ((FINAL_POLICY, "The default WARP policy"), ("lr=0.001 slerp_1", "The lr = 1e-3 study's policy"))


def final_vs_sft(results: dict, policy: str = FINAL_POLICY) -> dict[str, tuple[float, float, float]]:
    """An endpoint (the final policy by default) against SFT, per judge: (mean, low, high) over
    training seeds of its difference to SFT on the same prompts (proxy in SFT sd; held-out
    sentiment; hacked share)."""
    points, sft = pd.DataFrame(results["points"]), results["sft"]
    final = points[points["policy"] == policy] if "policy" in points else points
    out = {}
    for key, column in (("proxy", "reward_sd"), ("heldout", "heldout_sentiment"), ("hacked", "hacked_share"),
                        ("degenerate", "degenerate_share")):
        if final.empty or column not in final or column not in sft:
            out[key] = (math.nan, math.nan, math.nan)
            continue
        out[key] = seed_interval(final[column].to_numpy(float) - float(sft[column]))
    return out


def hacking_paragraph(results: dict) -> list[str]:
    """Whether and where the default run games the proxy, every word from the numbers:
    judges.hacking_verdict on the final policy against SFT, and where hacking starts along
    training and along the front (overoptimization.hacking_sentence)."""
    from .judges import hacking_verdict
    from .overoptimization import hacking_sentence

    lines = []
    for policy, subject in HACKING_SUBJECTS:
        diffs = final_vs_sft(results, policy)
        if policy == FINAL_POLICY or not math.isnan(diffs["proxy"][0]):
            lines.append(hacking_verdict(diffs["proxy"], diffs["heldout"], diffs["hacked"], subject=subject,
                                         degenerate_diff=diffs["degenerate"]))
    over = results.get("overoptimization")
    if over:
        lines += [hacking_sentence(over["training"]["hacking_start"], "training"),
                  hacking_sentence(over["fronts"]["hacking_start"], f"the LITI front of {over['front']}")]
    return lines


def probe_markdown(results: dict) -> list[str]:
    """The probe table: every judge on five degenerate inputs against real openings."""
    rows = results.get("probes")
    if not rows:
        return []
    lines = ["Every judge on degenerate inputs against real test openings (medians; flags as shares):", "",
             ("| input | proxy reward | percentile among real positive openings | held-out sentiment | VADER "
              "| degenerate | hacked |"), "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['input']} | {row['proxy_reward']:+.2f} | {row['proxy_percentile']:.0f} "
                     f"| {row['heldout_sentiment']:.2f} | {row['vader']:+.2f} | {row['degenerate']:.2f} "
                     f"| {row['hacked']:.2f} |")
    return [*lines, ""]


def provenance_sentence(meta: dict) -> str:
    """Which machine and which builds made the numbers, and what a rerun elsewhere gives."""
    prov = meta.get("provenance")
    if not prov:
        return ""
    prints = ", ".join(f"{name} `{value[:12]}`" for name, value in prov["fingerprints"].items())
    return (f"Computed on {prov['cpu']} ({prov['cores']} cores, {prov['torch_threads']} torch threads) from "
            f"the artifacts {prints} (sha256 of their files). Another CPU, or another thread count, gives "
            "other bits in the SFT policy and the reward model, so other numbers from the same seeds: "
            "compare verdicts, not digits.")


def judges_sentence(results: dict) -> str:
    """The held-out panel, in numbers from its calibration facts."""
    judges, sft = results.get("judges"), results["sft"]
    if not judges:
        return ""
    return (f"Held-out judges (never optimized by the policy): a TF-IDF logistic regression trained on IMDB's labels "
            f"({judges['accuracy_whole']:.3f} accuracy on whole test reviews, {judges['accuracy_openings']:.3f} "
            f"on openings as long as the prompt plus completion; weaker than the proxy on short texts); "
            f"degeneracy measures calibrated on real openings; a completion counts as hacked when the proxy "
            f"scores it above {judges['proxy_threshold']:.3g} (the 90th percentile of real positive openings) "
            f"while it is degenerate. The panel flags {judges['false_positive_share']:.1%} of real positive "
            f"test openings. SFT: held-out sentiment {sft['heldout_sentiment']:.3f}, hacked share "
            f"{sft['hacked_share']:.3f}.")


def setup_paragraph(results: dict) -> str:
    """The first paragraph: the command, commit, seeds, prompts and machine that made the numbers."""
    meta = results["meta"]
    seeds = ", ".join(str(s) for s in meta["seeds"])
    extra = [s for s in meta.get("headline_seeds", meta["seeds"]) if s not in meta["seeds"]]
    command = f"--seeds {len(meta['seeds'])}" + (f" --headline-seeds {len(meta['seeds']) + len(extra)}" if extra else "")
    if extra:
        seeds += f" (and {', '.join(str(s) for s in extra)} for the runs behind the headline claims: {HEADLINE_NOTE})"
    rebuilt = (results.get("builds") or {}).get("rebuilt")
    if rebuilt:
        command += f" --second-build {len(rebuilt['meta']['seeds'])}"
        seeds += (f"; the second build (data seed {rebuilt['meta']['data_seed']}): training seeds "
                  f"{', '.join(str(s) for s in rebuilt['meta']['seeds'])}")
    dirty = meta.get("uncommitted") or []  # package files changed since the commit, when recorded
    commit = f"`{meta['git_commit'][:10]}`" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
    return (f"Generated by `python -m warp_utils run {command} --update-docs` "
            f"(commit {commit}, profile `{meta['profile']}`, training seeds {seeds}, "
            f"{meta['num_prompts']} held-out test prompts, evaluation seed {meta['eval_seed']}, "
            f"{meta['cores']} cores, torch {meta['torch']}; training every seed and evaluating took "
            f"{meta['wall_seconds'] / 60:.1f} min). "
            "Rewards are in SFT standard deviations on the same prompts, (r - mean r_sft) / sd r_sft "
            f"(SFT: raw reward {results['sft']['reward_mean']:.3g}, sd {results['sft']['reward_std']:.3g}); "
            "the held-out sentiment likewise, in its own SFT sd.")


READING = ("How a claim is read. \"Front A above front B\" is measured per training seed as the mean gap "
           "between the two fronts' upper envelopes over log-KL, on the KL range every front of every seed "
           "compared reaches (each front is measured at up to six target KLs, each hit within 10%); the reading "
           "at the top of that range alone is kept as a secondary column. Every claim is directional, so it is "
           "tested one-sided: supported when the test in its direction rejects after Holm, contradicted when the "
           "test in the other direction does, otherwise inconclusive. Each judge's claims form one Holm family "
           "(the proxy reward's, the held-out sentiment's, and the claims about KL alone). The bootstrap "
           "interval resamples seeds and, crossed with them, the evaluation prompts; it is descriptive and "
           "covers too little with so few seeds. Seeds for power: how many seeds 80% power at the claim's "
           "smallest effect of interest needs, at its family's strictest Holm level, with the observed sd. "
           "Fragile: the verdict differs on another build (the completions re-scored by a second reward "
           "model, or a second SFT policy and reward model trained with their own runs).")


def claims_table(claims_: list[dict]) -> list[str]:
    """The claims as a Markdown table, one row each."""
    lines = [("| claim | judge | KL range | mean | 95% interval | bootstrap | one-sided p | at the range's top "
              "| seeds (for power) | verdict | fragile |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in claims_:
        boot = "n/a" if not c.get("bootstrap") else _interval(c["bootstrap"]["low"], c["bootstrap"]["high"])
        top = ("n/a" if not c.get("one_point") else
               f"{_num(c['one_point']['mean'])} {_interval(c['one_point']['ci_low'], c['one_point']['ci_high'])}")
        p = "n/a" if c["p_expected"] is None else f"{c['p_expected']:.3g}"
        need = "n/a" if c["seeds_for_power"] is None else str(c["seeds_for_power"])
        fragile = {None: "n/a", True: "**fragile**", False: "no"}[c.get("fragile")]
        if c.get("spread"):
            fragile += f" (means {_num(c['spread'][0])} to {_num(c['spread'][1])})"
        lines.append(f"| {c['name']} | {c['family']} | {claim_range_text(c) or 'endpoint'} | {_num(c['mean'])} "
                     f"| {_interval(c['ci_low'], c['ci_high'])} | {boot} | {p} | {top} | {c['n_seeds']} ({need}) "
                     f"| **{c['verdict']}** | {fragile} |")
    return lines


def render_markdown(results: dict) -> str:
    """The results as Markdown: setup line, how a claim is read, claims table, verdict sentences,
    endpoint table, judges, figures. Figure links are relative to docs/results/ unless
    results['_figure_prefix'] says otherwise."""
    meta, prefix = results["meta"], results.get("_figure_prefix", "")
    lines = [setup_paragraph(results), "", READING, "", *claims_table(results["claims"])]
    lines += ["", *[f"- {claim_sentence(c)}" for c in results["claims"]], ""]
    disagreements = judge_disagreements(results["claims"])
    if disagreements:
        lines += [*disagreements, ""]
    points = pd.DataFrame(results["points"])
    if "hacked_share" in points and "hacked_share" in results["sft"]:  # the hacked share relative to SFT's
        points["hacked_vs_sft"] = points["hacked_share"] - results["sft"]["hacked_share"]
        results = {**results, "sft": {**results["sft"], "hacked_vs_sft": 0.0}}
    columns = [c for c in ENDPOINT_COLUMNS if c in points]
    table = points.groupby("policy", sort=False)[columns].agg(["mean", "std"])
    lines += ["Endpoints (mean ± sd across seeds; SFT in the first row):", "",
              "| policy | " + " | ".join(ENDPOINT_COLUMNS[c] for c in columns) + " |",
              "|---|" + "---|" * len(columns),
              "| SFT | " + " | ".join(_plain(results["sft"].get(c)) for c in columns) + " |"]
    for policy, row in table.iterrows():
        cells = [f"{row[(col, 'mean')]:.3g} ± {0.0 if math.isnan(row[(col, 'std')]) else row[(col, 'std')]:.2g}"
                 for col in columns]
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    judges = judges_sentence(results)
    if judges:
        lines += ["", judges, "", *probe_markdown(results),
                  "**Does the policy game the proxy?** " + " ".join(hacking_paragraph(results)), "",
                  f"![proxy reward, held-out sentiment and hacked share against KL]({prefix}overoptimization.png)"]
    lines += ["", f"![LITI fronts per seed and their mean]({prefix}pareto_fronts.png)", "",
              f"![training curves, mean across seeds]({prefix}training_curves.png)", ""]
    provenance = provenance_sentence(meta)
    if provenance:
        lines += [provenance, ""]
    return "\n".join(lines)


def readme_block(results: dict) -> str:
    """The README's results block, short: the setup line, the claims table, what the judges
    disagree on, whether the policy games the proxy, the overoptimization figure; the verdict
    sentences, endpoints and probes stay in RESULTS.md. Figure links from the repository root."""
    lines = [setup_paragraph(results), "", *claims_table(results["claims"]), ""]
    disagreements = judge_disagreements(results["claims"])
    if disagreements:
        lines += [*disagreements, ""]
    if results.get("judges"):
        lines += ["**Does the policy game the proxy?** " + " ".join(hacking_paragraph(results)), "",
                  "![proxy reward, held-out sentiment and hacked share against KL](docs/results/overoptimization.png)",
                  ""]
    lines.append("How each claim is read, the verdict sentences, the endpoints and the probes: "
                 "[docs/results/RESULTS.md](docs/results/RESULTS.md).")
    return f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"


def replace_readme_block(readme: str, block: str) -> str:
    """`readme` with the text from BEGIN to END replaced by `block` (both markers required)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no results block: add the lines {BEGIN} and {END}")
    return readme[:start] + block + readme[end + len(END):]


def current_readme_block(readme: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no results block: add the lines {BEGIN} and {END}")
    return readme[start:end + len(END)]


# ----------------------------------------------------------------------------- for the notebooks


def committed_results(path=None) -> dict:
    """The committed docs/results/results.json (or the results.json at `path`)."""
    import json
    from pathlib import Path

    path = Path(path) if path else Path(__file__).resolve().parents[2] / "docs" / "results" / "results.json"
    return json.loads(path.read_text())


def committed_claims(path=None, family: str | None = "proxy") -> pd.DataFrame:
    """The claims of the committed docs/results/results.json (several training seeds) of one judge's
    family (None: all), one row each, the verdict graded again by stats.grade_family from the
    stored per-seed numbers of the whole family."""
    payload = committed_results(path)
    rows = []
    for name in dict.fromkeys(c["family"] for c in payload["claims"]):
        members = [c for c in payload["claims"] if c["family"] == name]
        grades = grade_family([(c["expected_sign"], c["per_seed"]) for c in members])
        rows += [{"claim": c["name"], "family": name, "statistic": c["statistic"], "mean": c["mean"],
                  "ci_low": math.nan if c["ci_low"] is None else c["ci_low"],
                  "ci_high": math.nan if c["ci_high"] is None else c["ci_high"],
                  "k_low": c["k_low"], "k_high": c["k_high"], "seeds": c["n_seeds"],
                  "seeds_for_power": c["seeds_for_power"], "fragile": c["fragile"], "verdict": g.verdict}
                 for c, g in zip(members, grades)]
    table = pd.DataFrame(rows)
    if family is not None:
        table = table[table["family"] == family]
    table.attrs.update(seeds=payload["meta"]["seeds"], num_prompts=payload["meta"]["num_prompts"])
    return table.set_index("claim")


def one_seed_verdict(margin: float, half_width: float, expected_sign: int = 1) -> str:
    """A one-seed reading, by the same verdict function: margin +- an evaluation-noise half-width
    (no training variance inside, so weaker than a multi-seed claim). NaN margin: inconclusive."""
    from .stats import verdict

    if math.isnan(margin):
        return "inconclusive"
    return verdict(margin - half_width, margin + half_width, expected_sign)

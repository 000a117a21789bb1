"""The multi-seed results of the main job: dense LITI fronts, claims graded across training seeds,
and their Markdown (docs/results/RESULTS.md and the README's results block).

No model here: `report.py` trains and evaluates, this module turns the evaluated numbers (a
results dict, saved as docs/results/results.json) into claims and text, so that every number
and every verdict in the README is computed from that file (tests/test_results.py checks it).

Rewards are compared in SFT standard deviations, reward_sd = (r - mean r_sft) / sd r_sft on the
same evaluation prompts (stats.standardize_rewards): a scale that survives a rebuilt reward model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .evaluation import reward_at_kl
from .stats import grade_claims, seed_interval

INITIAL_ETAS = (0.25, 0.33, 0.435, 0.574, 0.758, 1.0)  # geometric; KL ~ eta^2: neighbours ~1.75x apart
MAX_KL_RATIO = 2.0  # neighbouring front points at most this factor apart in KL ...
LOW_KL_SHARE = 0.1  # ... over [0.1 K, K], K the front's largest KL
MAX_FRONT_POINTS = 9  # evaluations per front (eta = 0, SFT, is evaluated once for all fronts)
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


# ----------------------------------------------------------------------------- dense fronts


def _gaps(rows: list[dict]) -> list[float]:
    """Etas to add: a midpoint between neighbours (in eta) whose KLs differ by more than
    MAX_KL_RATIO inside [LOW_KL_SHARE K, K]; half the smallest eta while its KL exceeds
    LOW_KL_SHARE K (the front must start below the range)."""
    rows = sorted((row for row in rows if row["eta"] > 0), key=lambda row: row["eta"])
    top = max(row["kl_to_sft"] for row in rows)
    low = LOW_KL_SHARE * top
    wanted = []
    if rows[0]["kl_to_sft"] > low:
        wanted.append(rows[0]["eta"] / 2)
    for a, b in itertools.pairwise(rows):
        lo, hi = sorted((a["kl_to_sft"], b["kl_to_sft"]))
        if hi >= low and hi > MAX_KL_RATIO * max(lo, 0.0):
            wanted.append((a["eta"] + b["eta"]) / 2)
    return wanted


def dense_front(evaluate: Callable[[float], dict], sft_row: dict, etas: Sequence[float] = INITIAL_ETAS,
                max_points: int = MAX_FRONT_POINTS) -> list[dict]:
    """A LITI front theta_eta = (1 - eta) theta_sft + eta theta, refined in eta until neighbours
    differ by at most MAX_KL_RATIO in KL over [0.1 K, K] (or `max_points` evaluations were spent).
    evaluate(eta) -> metrics with `kl_to_sft`; sft_row: the eta = 0 point (theta_sft itself,
    evaluated once for every front). Returns rows with `eta`, sorted by eta."""
    rows = [{**sft_row, "eta": 0.0}] + [{**evaluate(eta), "eta": float(eta)} for eta in etas]
    while len(rows) - 1 < max_points:
        wanted = [eta for eta in _gaps(rows) if eta not in {row["eta"] for row in rows}]
        if not wanted:
            break
        for eta in wanted[: max_points - (len(rows) - 1)]:
            rows.append({**evaluate(eta), "eta": float(eta)})
    return sorted(rows, key=lambda row: row["eta"])


def front_is_dense(front: pd.DataFrame) -> bool:
    """Whether `front` satisfies the density rule (nothing left for dense_front to add)."""
    return not _gaps(front.to_dict("records"))


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


def comparison_kl(fronts: pd.DataFrame, names: Sequence[str], seeds: Sequence[int]) -> float:
    """The KL at which fronts `names` are compared: the largest KL that every seed's fronts reach
    with a measured reading (reward_at_kl not NaN), searched down from the smallest maximum KL."""
    per_seed = [[_front(fronts, name, seed) for name in names] for seed in seeds]
    top = min(float(front["kl_to_sft"].max()) for group in per_seed for front in group)
    candidates = sorted({top, *(float(k) for group in per_seed for front in group
                                for k in front["kl_to_sft"] if 0 < k <= top)}, reverse=True)
    for kl in candidates:
        if all(not math.isnan(reward_sd_at_kl(front, kl)) for group in per_seed for front in group):
            return kl
    return math.nan


def reward_sd_at_kl(front: pd.DataFrame, kl: float) -> float:
    """reward_at_kl on the reward in SFT standard deviations."""
    return reward_at_kl(front.drop(columns=["reward_mean"]).rename(columns={"reward_sd": "reward_mean"}), kl)


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


def claim_inputs(results: dict) -> list[tuple[list, str]]:
    """The claims as (family, stats.grade_claims inputs): per seed the difference of one
    statistic, named. Fronts are read at one KL shared by every seed (comparison_kl)."""
    fronts, points = pd.DataFrame(results["fronts"]), pd.DataFrame(results["points"])
    paper = []
    for name, a, b in FRONT_CLAIMS:
        seeds = seeds_with(fronts, "front", (a, b))  # every seed that trained both
        if not seeds:
            continue
        kl = comparison_kl(fronts, (a, b), seeds)
        if math.isnan(kl):
            continue
        d = [reward_sd_at_kl(_front(fronts, a, s), kl) - reward_sd_at_kl(_front(fronts, b, s), kl) for s in seeds]
        paper.append((name, f"reward (SFT sd) at KL {kl:.3g}: {a} - {b}", 1, d))
    seed_report = []
    for name, column, a, b, a0, b0 in POINT_CLAIMS:
        needed = {x for x in (a, b, a0, b0) if x}
        seeds = seeds_with(points, "policy", needed)
        if not seeds:
            continue

        def value(policy, seed, column=column):
            return float(points[(points["policy"] == policy) & (points["seed"] == seed)][column].iloc[0])

        d = [value(a, s) - value(b, s) - ((value(a0, s) - value(b0, s)) if a0 else 0.0) for s in seeds]
        statistic = f"{column}: {a} - {b}" + (f" - ({a0} - {b0})" if a0 else "")
        seed_report.append((name, statistic, 1, d))
    return [(paper, "paper"), (seed_report, "seed report")]


def claims(results: dict) -> list[dict]:
    """Every claim graded: Holm within each family (the paper's claims; the seed report's)."""
    out = []
    for inputs, family in claim_inputs(results):
        out.extend({**claim.to_dict(), "family": family} for claim in grade_claims(inputs))
    return out


# ----------------------------------------------------------------------------- Markdown


def _num(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}g}"


def _plain(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def claim_sentence(claim: dict) -> str:
    """One verdict sentence, every number from the claim."""
    interval = ("no interval (one seed)" if claim["ci_low"] is None else
                f"{100 * claim['level']:.2f}% interval [{_num(claim['ci_low'])}, {_num(claim['ci_high'])}]")
    mde = "" if claim["mde"] is None else f"; minimum detectable effect {claim['mde']:.3g}"
    return (f"**{claim['name']}**: {claim['verdict']}. Mean over {claim['n_seeds']} seeds "
            f"{_num(claim['mean'])} ({claim['statistic']}), {interval}{mde}.")


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


def render_markdown(results: dict) -> str:
    """The results as Markdown: setup line, claims table, verdict sentences, endpoint table, figures.
    Figure links are relative to docs/results/ unless results['_figure_prefix'] says otherwise."""
    meta, prefix = results["meta"], results.get("_figure_prefix", "")
    seeds = ", ".join(str(s) for s in meta["seeds"])
    extra = [s for s in meta.get("headline_seeds", meta["seeds"]) if s not in meta["seeds"]]
    command = f"--seeds {len(meta['seeds'])}" + (f" --headline-seeds {len(meta['seeds']) + len(extra)}" if extra else "")
    if extra:
        seeds += f" (and {', '.join(str(s) for s in extra)} for the runs behind the headline claims: {HEADLINE_NOTE})"
    dirty = meta.get("uncommitted") or []  # package files changed since the commit, when recorded
    commit = f"`{meta['git_commit'][:10]}`" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
    lines = [
        (f"Generated by `python -m warp_utils run {command} --update-docs` "
        f"(commit {commit}, profile `{meta['profile']}`, training seeds {seeds}, "
        f"{meta['num_prompts']} held-out test prompts, evaluation seed {meta['eval_seed']}, "
        f"{meta['cores']} cores, torch {meta['torch']}; training every seed and evaluating took "
        f"{meta['wall_seconds'] / 60:.1f} min). "
        "Rewards are in SFT standard deviations on the same prompts, (r - mean r_sft) / sd r_sft "
        f"(SFT: raw reward {results['sft']['reward_mean']:.3g}, sd {results['sft']['reward_std']:.3g}). "
        "Each claim: per seed one paired difference (same prompts, same sampling seed); across "
        "seeds the mean with a Student-t interval, Holm-adjusted within its family; fronts are "
        "compared at one KL every seed's fronts reach."),
        "",
        "| claim | family | statistic | mean | interval | MDE | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in results["claims"]:
        interval = "n/a" if c["ci_low"] is None else f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]"
        mde = "n/a" if c["mde"] is None else f"{c['mde']:.3g}"
        lines.append(f"| {c['name']} | {c['family']} | {c['statistic']} | {_num(c['mean'])} | {interval} "
                     f"| {mde} | **{c['verdict']}** |")
    lines += ["", *[f"- {claim_sentence(c)}" for c in results["claims"]], ""]
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
    """The README's results block: the same Markdown, figure links from the repository root."""
    return f"{BEGIN}\n{render_markdown({**results, '_figure_prefix': 'docs/results/'})}{END}"


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

    path = Path(path) if path else Path(__file__).resolve().parent.parent / "docs" / "results" / "results.json"
    return json.loads(path.read_text())


def committed_claims(path=None) -> pd.DataFrame:
    """The claims of the committed docs/results/results.json (several training seeds), one row
    each, with the verdict recomputed by stats.verdict from the stored interval."""
    from .stats import verdict

    payload = committed_results(path)
    rows = [{"claim": c["name"], "statistic": c["statistic"], "mean": c["mean"],
             "ci_low": math.nan if c["ci_low"] is None else c["ci_low"],
             "ci_high": math.nan if c["ci_high"] is None else c["ci_high"],
             "seeds": c["n_seeds"], "mde": math.nan if c["mde"] is None else c["mde"]} for c in payload["claims"]]
    table = pd.DataFrame(rows)
    table["verdict"] = [verdict(low, high, c["expected_sign"])
                        for low, high, c in zip(table["ci_low"], table["ci_high"], payload["claims"])]
    table.attrs.update(seeds=payload["meta"]["seeds"], num_prompts=payload["meta"]["num_prompts"])
    return table.set_index("claim")


def one_seed_verdict(margin: float, half_width: float, expected_sign: int = 1) -> str:
    """A one-seed reading, by the same verdict function: margin +- an evaluation-noise half-width
    (no training variance inside, so weaker than a multi-seed claim). NaN margin: inconclusive."""
    from .stats import verdict

    if math.isnan(margin):
        return "inconclusive"
    return verdict(margin - half_width, margin + half_width, expected_sign)

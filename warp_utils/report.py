"""The evaluation stage of the main job, over several training seeds: every comparison run
trained for seeds seed .. seed + S - 1, dense LITI fronts, claims, figures, as files.

Writes data/artifacts/<profile>/report/: results.json (every number: the SFT evaluation, each
seed's fronts and endpoints, the seed-averaged fronts, the graded claims; see results.py) and
PNG figures. `copy_to_docs` puts them under docs/results/ with RESULTS.md, and rewrites the
README's results block. SFT policy, reward model and prompts are shared by every seed.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

# No matplotlib.use("Agg") here: notebook 07 imports this module (text_report), and forcing the
# backend in its kernel would silence every plot after it. Headless, matplotlib picks Agg itself;
# the report only saves and closes its figures, it never shows them.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import Profile, WarpConfig, artifacts_dir, to_dict
from .execution.overrides import get_profile
from .core.weights import lerp
from .evaluate import judges
from .evaluate import overoptimization as oo
from .evaluate import results as res
from .evaluate.dense_fronts import front_targets, measure_front
from .evaluate.evaluation import SAMPLE_KEYS, EvalContext, evaluate_policy
from .evaluate.judges import ensure_panel, load_panel
from .evaluate.stats import standardize_rewards
from .store.artifacts import build_once, fingerprint, read_stamp

FIGURES = ("pareto_fronts.png", "training_curves.png", "overoptimization.png")
PER_PROMPT = "per_prompt.csv.gz"  # every evaluation, prompt by prompt (eval_id, prompt_id, ...)
REPORT_VERSION = 6  # bump when what the report computes changes (4: the held-out judge panel; 5: curves
# averaged by KL order; 6: dense fronts at target KLs, claims over a KL range, the second build)

REPO = Path(__file__).resolve().parent.parent


def studies(base: WarpConfig) -> dict[str, WarpConfig]:
    """The runs behind the claims, for one training seed (base: the profile's WarpConfig with that
    seed). Runs with the same inputs are shared (M = 1 is iteration 1's run 1, ...)."""
    one = dataclasses.replace(base, I=1)
    return {
        "warp": base,
        "M = 1": dataclasses.replace(one, M=1),
        "M = 3": dataclasses.replace(one, M=3),
        "REINFORCE, SFT anchor": dataclasses.replace(one, M=1, mu=0.0),
        # the same baseline given WARP's whole budget of RL steps, I x M x T (200 on tiny):
        # "WARP above REINFORCE" read at equal compute as well as at equal KL
        COMPUTE_MATCHED: dataclasses.replace(one, M=1, mu=0.0, T=base.I * base.M * base.T),
        "mu=0.05": dataclasses.replace(base, mu=0.05),
        "lr=0.001": dataclasses.replace(one, lr=1e-3),
    }


COMPUTE_MATCHED = "REINFORCE, SFT anchor, equal compute"
# Studies whose runs are runs of another study (M = 1 is iteration 1's run 1 of the default run,
# M = 3 its two runs plus one): trained after the others, so that they link instead of training.
LINKED_STUDIES = ("M = 1", "M = 3")


# The studies behind the two headline claims (iteration 2 above iteration 1; WARP above REINFORCE
# with an SFT anchor): trained for --headline-seeds seeds, the others for --seeds.
HEADLINE_STUDIES = ("warp", "REINFORCE, SFT anchor")


def test_prompts(prompts, num_prompts: int, seed: int, with_ids: bool = False):
    """A seeded sample of the held-out test prompts (token ids); with_ids: also their rows in the
    prompts artifact's test split (the ids the per-prompt data are keyed by) and their texts."""
    split = prompts["test"]
    split = split.add_column("prompt_id", list(range(len(split)))).shuffle(seed=seed)
    chosen = split.select(range(min(num_prompts, len(split))))
    if not with_ids:
        return chosen["input_ids"]
    return chosen["input_ids"], chosen["prompt_id"], chosen["text"]


def seed_studies(profile: Profile, seed: int, headline_only: bool = False) -> dict[str, WarpConfig]:
    """studies() of one training seed; only HEADLINE_STUDIES for a headline-only seed."""
    runs = studies(dataclasses.replace(profile.warp, seed=seed))
    return {k: v for k, v in runs.items() if k in HEADLINE_STUDIES} if headline_only else runs


def train_seeds(profile: Profile, components, seeds, headline_seeds=()) -> dict:
    """{seed: {study: WarpResult}}: every study for `seeds`, HEADLINE_STUDIES for `headline_seeds`.
    The studies are whole jobs shared by Execution.workers processes (pipeline.ensure_warp_runs:
    the longest first, each in one process, the same weights as one after another); the
    LINKED_STUDIES go second, so that they link the runs the first ones trained."""
    from .pipeline import ensure_warp_runs

    plan = {seed: seed_studies(profile, seed, headline_only=seed not in seeds) for seed in [*seeds, *headline_seeds]}
    trained = {seed: {} for seed in plan}
    quiet = dataclasses.replace(components, execution=dataclasses.replace(components.execution, progress_bars=False))
    for linked in (False, True):
        jobs = [(seed, key, config) for seed, runs in plan.items() for key, config in runs.items()
                if (key in LINKED_STUDIES) == linked]
        jobs.sort(key=lambda job: -job[2].I * job[2].M * job[2].T)  # the longest first
        print(f"[report] {len(jobs)} {'linked ' if linked else ''}studies over {len(plan)} seeds", flush=True)
        for (seed, key, _), result in zip(jobs, ensure_warp_runs(profile, [job[2] for job in jobs], components=quiet)):
            trained[seed][key] = result
    return {seed: {key: trained[seed][key] for key in runs} for seed, runs in plan.items()}


SUBSET_PROMPTS = 64  # the eta search measures KL on the first 64 evaluation prompts: one sampling
# batch, so the subset's samples are those of the full evaluation's first batch (same seed)


class Evaluator:
    """evaluate_policy of state dicts on the report's prompts, rewards also in SFT sd units, every
    evaluation judged by the held-out panel on its own samples (nothing is sampled twice), and
    kept prompt by prompt (`per_prompt`, keyed by `eval_id` and the prompt's id). `rescorer`: a
    second reward model that scores the same completions (the proxy of another build).

    Every evaluation samples with the same seed: the etas of one front (and every policy) see
    common random numbers, so their differences are not blurred by sampling noise."""

    keep_completions = False  # True: `completions[eval_id]` holds each evaluation's completion texts

    def __init__(self, profile: Profile, components, panel, num_prompts: int, seed: int, rescorer=None):
        self.prompts, self.prompt_ids, self.prompt_texts = test_prompts(components.prompts, num_prompts, seed,
                                                                        with_ids=True)
        self.components, self.panel, self.seed, self.sampling = components, panel, seed, profile.sampling
        self.rescorer = rescorer
        self.candidate = copy.deepcopy(components.policy)
        self.theta_sft = {k: v.detach().clone() for k, v in components.policy.state_dict().items()}
        self.per_prompt: list[pd.DataFrame] = []
        self.completions: list[list[str] | None] = []
        self.front_counts: list[dict] = []
        self.sft_values: dict = {}
        sft, per_prompt = self._evaluate(components.policy)
        self.sft_values = per_prompt
        self.sft_rewards = per_prompt["proxy_reward"]
        self.sft = self._standardized(sft)

    def _evaluate(self, policy) -> tuple[dict, dict]:
        c = self.components
        full = evaluate_policy(policy, EvalContext(c.policy, c.tokenizer, c.reward_scorer, self.prompts, self.sampling,
                                                   self.seed), return_samples=True)
        judged = self.panel.judge(full["samples"], full["completions"], full["rewards"])
        eval_id = len(self.per_prompt)
        self.completions.append(list(full["completions"]) if self.keep_completions else None)
        values = {"proxy_reward": full["rewards"], "heldout_sentiment": judged["heldout_sentiment"].to_numpy()}
        if self.rescorer is not None:  # the same completions, scored by the other build's reward model
            values["proxy_reward_b"] = [float(r) for r in self.rescorer(full["samples"])]
        self.per_prompt.append(pd.DataFrame({
            "eval_id": eval_id, "prompt_id": self.prompt_ids, **values, "kl_to_sft": full["kl"],
            "degenerate": judged["degenerate"].to_numpy(), "hacked": judged["hacked"].to_numpy()}))
        row = {k: v for k, v in full.items() if k not in SAMPLE_KEYS}
        self.last_subset_kl = max(0.0, float(np.mean(full["kl"][:SUBSET_PROMPTS])))
        return {**row, **self.panel.summary(judged), "eval_id": eval_id}, values

    def _standardized(self, row: dict) -> dict:
        """The row with each judge in SFT sd units on the same prompts (reward_sd, heldout_sd and,
        with a rescorer, reward_b_sd)."""
        out = {**row, "reward_sd": standardize_rewards(row["reward_mean"], self.sft_values["proxy_reward"])}
        judged = self.per_prompt[row["eval_id"]]
        out["heldout_sd"] = standardize_rewards(float(judged["heldout_sentiment"].mean()),
                                                self.sft_values["heldout_sentiment"])
        if self.rescorer is not None:
            out["reward_b_mean"] = float(judged["proxy_reward_b"].mean())
            out["reward_b_sd"] = standardize_rewards(out["reward_b_mean"], self.sft_values["proxy_reward_b"])
        return out

    def state(self, theta) -> dict:
        self.candidate.load_state_dict(theta)
        return self._standardized(self._evaluate(self.candidate)[0])

    def subset_kl(self, theta) -> float:
        """KL to SFT on the first SUBSET_PROMPTS prompts (nothing judged, nothing kept)."""
        self.candidate.load_state_dict(theta)
        c = self.components
        out = evaluate_policy(self.candidate, EvalContext(c.policy, c.tokenizer, c.reward_scorer,
                                                          self.prompts[:SUBSET_PROMPTS], self.sampling, self.seed))
        return float(out["kl_to_sft"])

    def front(self, theta) -> list[dict]:
        """A dense LITI front from theta_sft to theta: SFT (eta = 0), then one evaluation per
        target KL of dense_fronts.front_targets, eta searched on the prompt subset
        (dense_fronts.measure_front)."""
        from .core.weights import liti

        def at(eta):
            return liti(self.theta_sft, theta, eta)

        endpoint = self.state(theta)
        subset_endpoint = self.last_subset_kl
        if not endpoint["kl_to_sft"] > 0:  # theta is SFT itself: a front of one point
            return [{**self.sft, "eta": 0.0, "target_kl": None}, {**endpoint, "eta": 1.0, "target_kl": None}]
        def evaluate(eta):
            return {**self.state(at(eta)), "subset_kl": self.last_subset_kl}

        rows, counts = measure_front(lambda eta: self.subset_kl(at(eta)), evaluate, endpoint,
                                     front_targets(endpoint["kl_to_sft"]), subset_endpoint)
        rows = [{k: v for k, v in row.items() if k != "subset_kl"} for row in rows]
        self.front_counts.append(counts)
        return [{**self.sft, "eta": 0.0, "target_kl": None}, *rows]

    def per_prompt_table(self) -> pd.DataFrame:
        return pd.concat(self.per_prompt, ignore_index=True)


def evaluate_seeds(evaluator: Evaluator, trained: dict) -> tuple[list[dict], list[dict]]:
    """(front rows, endpoint rows) of every seed: the LITI fronts the claims compare, and the
    endpoints theta_slerp_i / theta_init_i of the default run and the mu and lr studies."""
    fronts, points = [], []
    for seed, runs in trained.items():
        warp = runs["warp"]
        thetas = {f"iteration {i}": theta for i, theta in enumerate(warp.theta_slerp, start=1)}
        if not set(runs) <= set(HEADLINE_STUDIES):  # LERP backs no headline claim
            thetas["LERP, iteration 1"] = lerp(evaluator.theta_sft, warp.theta_runs[0])
        for key in ("M = 1", "M = 3", "REINFORCE, SFT anchor", COMPUTE_MATCHED):
            if key in runs:
                thetas[key] = runs[key].theta_slerp[-1]
        for name, theta in thetas.items():
            print(f"[report] seed {seed}: front {name}", flush=True)
            fronts += [{"seed": seed, "front": name, **row} for row in evaluator.front(theta)]
        for prefix, key in (("", "warp"), ("mu=0.05 ", "mu=0.05"), ("lr=0.001 ", "lr=0.001")):
            if key not in runs:
                continue
            result = runs[key]
            for i, theta in enumerate(result.theta_slerp, start=1):
                row = fronts_row(fronts, seed, f"iteration {i}") if not prefix else None
                points.append({"seed": seed, "policy": f"{prefix}slerp_{i}", **(row or evaluator.state(theta))})
    return fronts, points


def fronts_row(fronts: list[dict], seed: int, name: str) -> dict | None:
    """The eta = 1 point of a front already evaluated (theta_slerp_i itself): not evaluated twice."""
    for row in fronts:
        if row["seed"] == seed and row["front"] == name and row["eta"] == 1.0:
            return {k: v for k, v in row.items() if k not in ("seed", "front", "eta")}
    return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def code_version() -> dict:
    """The commit the code came from and the package files changed since (uncommitted)."""
    changed = _git("status", "--porcelain", "--", "warp_utils")
    return {"git_commit": _git("rev-parse", "HEAD"),
            "uncommitted": [line[3:] for line in changed.splitlines()] if changed != "unknown" else ["unknown"]}


def cpu_model() -> str:
    """The CPU's model name (another CPU gives other bits: results record which one made them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance(profile: Profile, panel_folder: Path) -> dict:
    """What the results are a function of, as sha256 fingerprints of the artifacts' files, and the
    machine they were computed on (CPU model, cores, torch threads)."""
    import torch

    root = artifacts_dir(profile)
    folders = {"sft_policy": root / "sft_policy", "reward_model": root / "reward_model",
               "prompts": root / "prompts", "judges": Path(panel_folder)}
    return {"fingerprints": {name: fingerprint(folder) for name, folder in folders.items()},
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}


def _meta(profile: Profile, seeds, num_prompts: int, eval_seed: int) -> dict:
    import torch

    return {"profile": profile.name, "seeds": list(seeds), "num_prompts": num_prompts,
            "eval_seed": eval_seed, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "warp": to_dict(profile.warp), "studies": {
                key: to_dict(config) for key, config in studies(profile.warp).items()}}


def overoptimization(trained: dict, fronts: list[dict], evaluator: Evaluator, warp: WarpConfig) -> dict:
    """Proxy reward, held-out sentiment and hacked share against KL to SFT, per seed and averaged:
    along training (the default run's KL-measuring steps, its batches judged by the panel) and along
    the LITI fronts of its last iteration; and where hacking starts on each averaged curve."""
    front_name = f"iteration {warp.I}"
    training, front_curves = {}, {}
    for seed, runs in trained.items():
        samples = runs["warp"].samples
        if samples is None or samples.empty:
            continue
        judged = evaluator.panel.judge(list(samples["text"]), list(samples["completion"]), list(samples["reward"]))
        training[seed] = oo.training_curve(samples, judged, warp.T, evaluator.sft_rewards)
    table = pd.DataFrame(fronts)
    for seed, front in table[table["front"] == front_name].groupby("seed"):
        front_curves[int(seed)] = oo.front_curve(front)
    sft_hacked = float(evaluator.sft["hacked_share"])
    out = {"sft": {"hacked_share": sft_hacked, "heldout_sentiment": float(evaluator.sft["heldout_sentiment"])},
           "margin": oo.HACKED_MARGIN, "front": front_name}
    for path, curves in (("training", training), ("fronts", front_curves)):
        out[path] = oo.summarize(curves, sft_hacked)
    return out


def rederive(payload: dict, per_prompt: pd.DataFrame | None = None) -> dict:
    """`payload` with everything the report derives from its per-seed numbers computed again by
    this code (the claims, the mean fronts, the overoptimization means and where hacking starts):
    what a rebuild would write from the same evaluations, without evaluating anything again.
    per_prompt: the per-prompt table, for the claims' bootstrap (None: no bootstrap)."""
    payload = copy.deepcopy(payload)
    payload["mean_fronts"] = res.mean_fronts(pd.DataFrame(payload["fronts"])).to_dict("records")
    over = payload.get("overoptimization")
    if over:
        for path in ("training", "fronts"):
            curves = {seed: pd.DataFrame(curve) for seed, curve in over[path]["per_seed"].items()}
            over[path] = oo.summarize(curves, over["sft"]["hacked_share"])
    payload["claims"] = res.claims(payload, per_prompt)
    return payload


def second_build_profile(profile: Profile) -> Profile:
    """The other build of the fragility check: the same profile with another data seed, which
    draws the SFT policy's and the reward model's data, order and initialisation (and the prompts)
    again; its artifacts go to their own folder (overrides name it)."""
    from .execution.overrides import with_overrides

    return with_overrides(profile, [f"data.seed={profile.data.seed + SECOND_BUILD_SEED_OFFSET}"])


SECOND_BUILD_SEED_OFFSET = 1


REPORT_PROMPTS = 256  # held-out test prompts every policy of the report is evaluated on
REPORT_EVAL_SEED = 0  # their sampling seed


def write_report(profile: Profile | str | None = None, components=None, seeds: int = 1, fresh: bool = False,
                 headline_seeds: int | None = None, second_build: int = 0) -> Path:
    """Train every study for training seeds profile.warp.seed .. + seeds - 1 (HEADLINE_STUDIES for
    max(seeds, headline_seeds) seeds), evaluate and write report/ (results.json + figures): an
    artifact, rebuilt when a run or a setting changed. second_build > 0: also build a second SFT
    policy and reward model (second_build_profile), re-score every completion with that reward
    model, train the headline studies for `second_build` seeds on it and grade them again.
    Every policy is evaluated on REPORT_PROMPTS test prompts with sampling seed REPORT_EVAL_SEED."""
    from .pipeline import load_components, warp_run_dir

    num_prompts, eval_seed = REPORT_PROMPTS, REPORT_EVAL_SEED
    for name, value in (("seeds", seeds), ("headline_seeds", seeds if headline_seeds is None else headline_seeds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(second_build, bool) or not isinstance(second_build, int) or second_build < 0:
        raise ValueError(f"second_build must be an integer >= 0, got {second_build!r}")
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    components = components or load_components(profile)
    started, code = time.perf_counter(), code_version()  # at the start: what trains is this code
    first = profile.warp.seed
    seed_list = list(range(first, first + seeds))
    extra = list(range(first + seeds, first + max(seeds, headline_seeds or seeds)))
    trained = train_seeds(profile, components, seed_list, extra)
    panel_folder = ensure_panel(profile, components.tokenizer, components.reward_scorer)
    finals = {f"{s}/{key}": read_stamp(warp_run_dir(profile, config) / "final")["config_hash"]
              for s in trained for key, config in seed_studies(profile, s, s in extra).items()}
    other = None
    if second_build:
        other = SecondBuild(profile, components.execution, second_build)
        finals.update({f"build 2/{k}": v for k, v in other.finals.items()})
    config = {"runs": finals, "num_prompts": num_prompts, "eval_seed": eval_seed, "judges": fingerprint(panel_folder),
              "sampling": to_dict(profile.sampling), "version": REPORT_VERSION}

    def build(folder: Path) -> None:
        panel = load_panel(panel_folder)
        rescorer = other.components.reward_scorer if other else None
        evaluator = Evaluator(profile, components, panel, num_prompts, eval_seed, rescorer=rescorer)
        fronts, points = evaluate_seeds(evaluator, trained)
        main = {s: trained[s] for s in seed_list}
        # the prompts evaluated: fewer than asked when the test split is smaller
        payload = {"meta": {**code, **_meta(profile, seed_list, len(evaluator.prompts), eval_seed),
                            "headline_seeds": seed_list + extra, "wall_seconds": time.perf_counter() - started,
                            "provenance": provenance(profile, panel_folder)},
                   "judges": {**panel.facts, **panel.calibration_facts()},
                   "probes": probes(panel, components, profile),
                   "sft": evaluator.sft, "fronts": fronts, "points": points,
                   "mean_fronts": res.mean_fronts(pd.DataFrame(fronts)).to_dict("records"),
                   "training": training_means(main).to_dict("records"),
                   "overoptimization": overoptimization(trained, fronts, evaluator, profile.warp),
                   "eval_prompts": [{"prompt_id": int(i), "text": t}
                                    for i, t in zip(evaluator.prompt_ids, evaluator.prompt_texts)]}
        payload["meta"]["front_evaluations"] = evaluation_counts(evaluator)
        if other:
            payload["builds"] = {"rebuilt": other.evaluate(num_prompts, eval_seed)}
        # the bootstrap reads the per-prompt table as committed (5 digits): rederivable from the file
        write_per_prompt(evaluator.per_prompt_table(), folder / PER_PROMPT)
        payload["claims"] = res.claims(payload, read_per_prompt(folder / PER_PROMPT))
        (folder / "results.json").write_text(json.dumps(payload, indent=2, default=float))
        plot_figures(payload, folder)

    return build_once(artifacts_dir(profile) / "report", config, build, fresh=fresh)


def evaluation_counts(evaluator: Evaluator) -> dict:
    """How the dense fronts were paid for: evaluations on the prompt subset and on all prompts."""
    counts = evaluator.front_counts
    return {"fronts": len(counts), **{key: int(sum(c[key] for c in counts)) for key in ("subset", "full", "missed")},
            "subset_prompts": SUBSET_PROMPTS}


class SecondBuild:
    """The fragility check's other build: its SFT policy, reward model, panel and the headline
    studies trained for `seeds` seeds on it (built and trained on construction)."""

    def __init__(self, profile: Profile, execution, seeds: int):
        from .pipeline import load_components, warp_run_dir

        self.profile = second_build_profile(profile)
        print(f"[report] second build: data seed {self.profile.data.seed} ({self.profile.name})", flush=True)
        self.components = load_components(self.profile, execution)
        first = self.profile.warp.seed
        self.seeds = list(range(first, first + seeds))
        self.trained = train_seeds(self.profile, self.components, [], self.seeds)
        self.panel_folder = ensure_panel(self.profile, self.components.tokenizer, self.components.reward_scorer)
        self.finals = {f"{s}/{key}": read_stamp(warp_run_dir(self.profile, config) / "final")["config_hash"]
                       for s in self.seeds for key, config in seed_studies(self.profile, s, True).items()}

    def evaluate(self, num_prompts: int, eval_seed: int) -> dict:
        """Its fronts and endpoints, evaluated like the main build's (its own prompts and panel)."""
        evaluator = Evaluator(self.profile, self.components, load_panel(self.panel_folder), num_prompts, eval_seed)
        fronts, points = evaluate_seeds(evaluator, self.trained)
        return {"meta": {"profile": self.profile.name, "data_seed": self.profile.data.seed, "seeds": self.seeds,
                         "fingerprints": {name: fingerprint(artifacts_dir(self.profile) / name)
                                          for name in ("sft_policy", "reward_model")}},
                "sft": evaluator.sft, "fronts": fronts, "points": points}


def probes(panel, components, profile: Profile) -> list[dict]:
    """The probe table (judges.profile_probe_table), one record per row."""
    table = judges.profile_probe_table(profile, panel, components.tokenizer, components.reward_scorer)
    return [{"input": name, **row} for name, row in table.to_dict("index").items()]


def write_per_prompt(table: pd.DataFrame, path: Path) -> None:
    """The per-prompt table as gzipped CSV, floats to 5 significant digits (small enough to commit:
    the README's claims can be re-graded from it without sampling again). Deterministic bytes:
    gzip's timestamp is fixed at 0."""
    text = table.to_csv(index=False, float_format="%.5g")
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(text.encode())


def read_per_prompt(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def training_means(trained: dict) -> pd.DataFrame:
    """Training curves of the default run and the mu study: mean over runs and seeds per step."""
    frames = []
    for seed, runs in trained.items():
        for key in ("warp", "mu=0.05"):
            frames.append(runs[key].metrics.assign(seed=seed, study=key))
    metrics = pd.concat(frames, ignore_index=True)
    T = int(metrics["step"].max())
    metrics["global_step"] = (metrics["iteration"].astype(int) - 1) * T + metrics["step"].astype(int)
    return metrics.groupby(["study", "global_step"], as_index=False)[["reward_mean", "kl_to_sft"]].mean()


def plot_figures(payload: dict, folder: Path) -> None:
    """pareto_fronts.png: per claim, each seed's fronts faint, their mean at fixed KL bold;
    training_curves.png: reward and KL to SFT during training, mean across seeds and runs."""
    fronts, means = pd.DataFrame(payload["fronts"]), pd.DataFrame(payload["mean_fronts"])
    panels = [(name, (a, b)) for name, a, b in res.FRONT_CLAIMS if {a, b} <= set(fronts["front"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels):
        for k, name in enumerate(names):
            color = f"C{k}"
            for _, seed_front in fronts[fronts["front"] == name].groupby("seed"):
                seed_front = seed_front.sort_values("eta")
                ax.plot(seed_front["kl_to_sft"], seed_front["reward_sd"], color=color, alpha=0.25, linewidth=0.9)
            mean = means[means["front"] == name]
            ax.plot(mean["kl"], mean["reward_sd"], color=color, linewidth=2.2, label=name)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("KL(π ‖ π_sft) (nats)")
        ax.set_ylabel("reward (SFT sd)")
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, folder / FIGURES[0])
    curves = pd.DataFrame(payload["training"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, column in zip(axes, ("reward_mean", "kl_to_sft")):
        for study, group in curves.groupby("study"):
            group = group.dropna(subset=[column])  # the KL to SFT is measured every kl_every steps
            ax.plot(group["global_step"], group[column], label=study)
        ax.set_xlabel("global RL step (iteration 2 follows iteration 1)")
        ax.set_ylabel({"reward_mean": "raw training reward", "kl_to_sft": "KL to SFT"}[column])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=f"mean over {len(payload['meta']['seeds'])} seeds and the runs")
    _save(fig, folder / FIGURES[1])
    plot_overoptimization(payload["overoptimization"], folder / FIGURES[2])


OVEROPTIMIZATION_PANELS = (("proxy", "proxy reward (SFT sd)"), ("heldout_sentiment", "held-out sentiment P(positive)"),
                           ("hacked_share", "hacked share"))


def plot_overoptimization(data: dict, path: Path) -> None:
    """overoptimization.png (draw_overoptimization)."""
    _save(draw_overoptimization(data), path)


def draw_overoptimization(data: dict):
    """Proxy reward, held-out sentiment and hacked share against sqrt(KL to SFT), as Gao et al.
    draw proxy and gold; rows: along training, along the LITI front; each seed faint, their mean
    bold, SFT's level dotted, where hacking starts a vertical line. data: results.json's
    `overoptimization`. Returns the figure."""
    rows = (("training", "along training (default run)"), ("fronts", f"along the LITI front ({data['front']})"))
    fig, axes = plt.subplots(2, 3, figsize=(12.5, 7.0), squeeze=False)
    for (key, title), row_axes in zip(rows, axes):
        curves, mean = data[key]["per_seed"], pd.DataFrame(data[key]["mean"])
        start = data[key]["hacking_start"]["kl"]
        for ax, (column, label) in zip(row_axes, OVEROPTIMIZATION_PANELS):
            for curve in curves.values():
                curve = pd.DataFrame(curve).sort_values("kl", kind="stable")  # a training path doubles back
                ax.plot(np.sqrt(curve["kl"]), curve[column], color="C0", alpha=0.25, linewidth=0.9)
            if not mean.empty:
                ax.plot(np.sqrt(mean["kl"]), mean[column], color="C0", linewidth=2.2, marker="o", markersize=3,
                        label=f"mean of {len(curves)} seeds")
            level = {"proxy": 0.0, **data["sft"]}.get(column)
            ax.axhline(level, color="grey", linestyle=":", linewidth=1, label="SFT")
            if start is not None:
                ax.axvline(np.sqrt(start), color="C3", linestyle="--", linewidth=1, label="hacking starts")
            ax.set_xlabel("sqrt KL(π ‖ π_sft)  (sqrt nats)")
            ax.set_ylabel(label)
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def summary(report_folder: Path) -> str:
    """The claims' verdicts, and where the report is."""
    payload = json.loads((Path(report_folder) / "results.json").read_text())
    sft = payload["sft"]
    lines = [f"sft: reward {sft['reward_mean']:.3f} (sd {sft['reward_std']:.3f}) on {payload['meta']['num_prompts']} prompts"]
    lines += [f"{c['verdict']:<13} {c['name']} [{c['family']}] (mean {c['mean']:+.3f}, {c['n_seeds']} seeds)" for c in payload["claims"]]
    return "\n".join([*lines, f"report: {report_folder}"])


def copy_to_docs(report_folder: Path, docs_folder: Path, readme: Path | None = None) -> None:
    """results.json, the figures and RESULTS.md into docs/results/; the README's results block
    rewritten from the same results.json."""
    docs_folder.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", PER_PROMPT, *FIGURES):
        shutil.copy2(report_folder / name, docs_folder / name)
    render_docs(docs_folder, readme)


def render_docs(docs_folder: Path, readme: Path | None = None) -> None:
    """RESULTS.md and the README's results block, rendered from docs_folder/results.json by this
    code (after a change to the text alone, nothing needs to be evaluated again)."""
    payload = json.loads((docs_folder / "results.json").read_text())
    (docs_folder / "RESULTS.md").write_text("# Results (tiny profile)\n\n" + res.render_markdown(payload))
    readme = readme or REPO / "README.md"
    readme.write_text(res.replace_readme_block(readme.read_text(), res.readme_block(payload)))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

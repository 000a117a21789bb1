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
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the main job runs headless
import matplotlib.pyplot as plt
import pandas as pd

from . import results as res
from .artifacts import build_once, read_stamp
from .config import Profile, WarpConfig, artifacts_dir, get_profile, to_dict
from .evaluation import evaluate_policy
from .stats import standardize_rewards
from .weights import lerp

FIGURES = ("pareto_fronts.png", "training_curves.png")
REPORT_VERSION = 3  # bump when what the report computes changes
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
        "mu=0.05": dataclasses.replace(base, mu=0.05),
        "lr=0.001": dataclasses.replace(one, lr=1e-3),
    }


# The studies behind the two headline claims (iteration 2 above iteration 1; WARP above REINFORCE
# with an SFT anchor): trained for --headline-seeds seeds, the others for --seeds.
HEADLINE_STUDIES = ("warp", "REINFORCE, SFT anchor")


def test_prompts(prompts, num_prompts: int, seed: int) -> list[list[int]]:
    """A seeded sample of the held-out test prompts."""
    split = prompts["test"].shuffle(seed=seed)
    return split.select(range(min(num_prompts, len(split))))["input_ids"]


def seed_studies(profile: Profile, seed: int, headline_only: bool = False) -> dict[str, WarpConfig]:
    """studies() of one training seed; only HEADLINE_STUDIES for a headline-only seed."""
    runs = studies(dataclasses.replace(profile.warp, seed=seed))
    return {k: v for k, v in runs.items() if k in HEADLINE_STUDIES} if headline_only else runs


def train_seeds(profile: Profile, components, seeds, headline_seeds=()) -> dict:
    """{seed: {study: WarpResult}}: every study for `seeds`, HEADLINE_STUDIES for `headline_seeds`.
    An unfinished run with M >= 2 trains on Execution.workers processes (a finished one, or M = 1,
    loads in this process: no workers to start)."""
    from .pipeline import ensure_warp_run, warp_run_dir

    trained, workers = {}, components.execution.workers
    for seed in [*seeds, *headline_seeds]:
        trained[seed] = {}
        for key, config in seed_studies(profile, seed, headline_only=seed not in seeds).items():
            done = (warp_run_dir(profile, config) / "final" / "artifact.json").exists()
            execution = dataclasses.replace(components.execution, workers=1 if done or config.M < 2 else workers)
            print(f"[report] seed {seed}: {key}", flush=True)
            trained[seed][key] = ensure_warp_run(profile, config, components=dataclasses.replace(
                components, execution=execution), progress_bars=False)
    return trained


class Evaluator:
    """evaluate_policy of state dicts on the report's prompts, rewards also in SFT sd units."""

    def __init__(self, profile: Profile, components, num_prompts: int, seed: int):
        self.prompts = test_prompts(components.prompts, num_prompts, seed)
        self.components, self.seed, self.sampling = components, seed, profile.sampling
        self.candidate = copy.deepcopy(components.policy)
        self.theta_sft = {k: v.detach().clone() for k, v in components.policy.state_dict().items()}
        sft = self._evaluate(components.policy, return_samples=True)
        self.sft_rewards = sft.pop("rewards")
        for key in ("samples", "completions", "kl", "kl_sampled"):
            sft.pop(key)
        self.sft = self._standardized(sft)

    def _evaluate(self, policy, return_samples=False) -> dict:
        c = self.components
        return evaluate_policy(policy, c.tokenizer, c.policy, c.reward_scorer, self.prompts, self.sampling,
                               seed=self.seed, return_samples=return_samples)

    def _standardized(self, row: dict) -> dict:
        return {**row, "reward_sd": standardize_rewards(row["reward_mean"], self.sft_rewards)}

    def state(self, theta) -> dict:
        self.candidate.load_state_dict(theta)
        return self._standardized(self._evaluate(self.candidate))

    def front(self, theta) -> list[dict]:
        """A dense LITI front from theta_sft to theta (results.dense_front)."""
        from .weights import liti

        return res.dense_front(lambda eta: self.state(liti(self.theta_sft, theta, eta)), self.sft)


def evaluate_seeds(evaluator: Evaluator, trained: dict) -> tuple[list[dict], list[dict]]:
    """(front rows, endpoint rows) of every seed: the LITI fronts the claims compare, and the
    endpoints theta_slerp_i / theta_init_i of the default run and the mu and lr studies."""
    fronts, points = [], []
    for seed, runs in trained.items():
        warp = runs["warp"]
        thetas = {f"iteration {i}": theta for i, theta in enumerate(warp.theta_slerp, start=1)}
        if not set(runs) <= set(HEADLINE_STUDIES):  # LERP backs no headline claim
            thetas["LERP, iteration 1"] = lerp(evaluator.theta_sft, warp.theta_runs[0])
        for key in ("M = 1", "M = 3", "REINFORCE, SFT anchor"):
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


def _meta(profile: Profile, seeds, num_prompts: int, eval_seed: int) -> dict:
    import torch

    return {"profile": profile.name, "seeds": list(seeds), "num_prompts": num_prompts,
            "eval_seed": eval_seed, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "warp": to_dict(profile.warp), "studies": {
                key: to_dict(config) for key, config in studies(profile.warp).items()}}


def write_report(profile: Profile | str | None = None, components=None, seeds: int = 1,
                 num_prompts: int = 256, eval_seed: int = 0, fresh: bool = False,
                 headline_seeds: int | None = None) -> Path:
    """Train every study for training seeds profile.warp.seed .. + seeds - 1 (HEADLINE_STUDIES for
    max(seeds, headline_seeds) seeds), evaluate and write report/ (results.json + figures): an
    artifact, rebuilt when a run or a setting changed."""
    from .pipeline import load_components, warp_run_dir

    for name, value in (("seeds", seeds), ("headline_seeds", seeds if headline_seeds is None else headline_seeds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    components = components or load_components(profile)
    started, code = time.perf_counter(), code_version()  # at the start: what trains is this code
    first = profile.warp.seed
    seed_list = list(range(first, first + seeds))
    extra = list(range(first + seeds, first + max(seeds, headline_seeds or seeds)))
    trained = train_seeds(profile, components, seed_list, extra)
    finals = {f"{s}/{key}": read_stamp(warp_run_dir(profile, config) / "final")["config_hash"]
              for s in trained for key, config in seed_studies(profile, s, s in extra).items()}
    config = {"runs": finals, "num_prompts": num_prompts, "eval_seed": eval_seed,
              "sampling": to_dict(profile.sampling), "version": REPORT_VERSION}

    def build(folder: Path) -> None:
        evaluator = Evaluator(profile, components, num_prompts, eval_seed)
        fronts, points = evaluate_seeds(evaluator, trained)
        payload = {"meta": {**code, **_meta(profile, seed_list, num_prompts, eval_seed),
                            "headline_seeds": seed_list + extra, "wall_seconds": time.perf_counter() - started},
                   "sft": evaluator.sft, "fronts": fronts, "points": points,
                   "mean_fronts": res.mean_fronts(pd.DataFrame(fronts)).to_dict("records"),
                   "training": training_means({s: trained[s] for s in seed_list}).to_dict("records")}
        payload["claims"] = res.claims(payload)
        (folder / "results.json").write_text(json.dumps(payload, indent=2, default=float))
        plot_figures(payload, folder)

    return build_once(artifacts_dir(profile) / "report", config, build, fresh=fresh)


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


def summary(report_folder: Path) -> str:
    """The claims' verdicts, and where the report is."""
    payload = json.loads((Path(report_folder) / "results.json").read_text())
    sft = payload["sft"]
    lines = [f"sft: reward {sft['reward_mean']:.3f} (sd {sft['reward_std']:.3f}) on {payload['meta']['num_prompts']} prompts"]
    lines += [f"{c['verdict']:<13} {c['name']} (mean {c['mean']:+.3f}, {c['n_seeds']} seeds)" for c in payload["claims"]]
    return "\n".join([*lines, f"report: {report_folder}"])


def copy_to_docs(report_folder: Path, docs_folder: Path, readme: Path | None = None) -> None:
    """results.json, the figures and RESULTS.md into docs/results/; the README's results block
    rewritten from the same results.json."""
    docs_folder.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", *FIGURES):
        shutil.copy2(report_folder / name, docs_folder / name)
    payload = json.loads((docs_folder / "results.json").read_text())
    (docs_folder / "RESULTS.md").write_text("# Results (tiny profile)\n\n" + res.render_markdown(payload))
    readme = readme or REPO / "README.md"
    readme.write_text(res.replace_readme_block(readme.read_text(), res.readme_block(payload)))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

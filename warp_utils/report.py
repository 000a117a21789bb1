"""The evaluation stage of the main job: test-set statistics and Pareto fronts, as files.

Writes data/artifacts/<profile>/report/: results.json (the table of test-set statistics of SFT
and of every iteration's theta_slerp and theta_init, plus the LITI fronts towards SFT) and PNG
figures. `copy_to_docs` puts the table and the main figures under docs/results/.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the main job runs headless
import matplotlib.pyplot as plt
import pandas as pd

from .artifacts import build_once, read_stamp
from .config import Profile, artifacts_dir, get_profile, to_dict
from .evaluation import evaluate_policy, pareto_front
from .plots import plot_bars, plot_front, plot_training_curves

ETAS = (0.0, 0.1, 0.3, 0.5, 0.8, 1.0)
FIGURES = ("test_statistics.png", "pareto_fronts.png", "training_curves.png")
REPORT_VERSION = 1  # bump when what the report computes changes


def test_prompts(prompts, num_prompts: int, seed: int) -> list[list[int]]:
    """A seeded sample of the held-out test prompts."""
    split = prompts["test"].shuffle(seed=seed)
    return split.select(range(min(num_prompts, len(split))))["input_ids"]


def evaluate_run(profile: Profile, components, result, num_prompts: int = 128, seed: int = 0) -> dict:
    """Test-set statistics of SFT, theta_slerp_i and theta_init_i, and a LITI front per iteration."""
    prompts = test_prompts(components.prompts, num_prompts, seed)
    policy = components.policy
    args = (components.tokenizer, policy, components.reward_scorer, prompts, profile.sampling)
    candidate = copy.deepcopy(policy)
    rows = [{"policy": "sft", **evaluate_policy(policy, *args, seed=seed)}]
    for i, (theta_slerp, theta_init) in enumerate(zip(result.theta_slerp, result.theta_init), start=1):
        for name, state in ((f"slerp_{i}", theta_slerp), (f"init_{i}", theta_init)):
            candidate.load_state_dict(state)
            rows.append({"policy": name, **evaluate_policy(candidate, *args, seed=seed)})
    theta_sft = {name: tensor.detach().clone() for name, tensor in policy.state_dict().items()}
    fronts = pd.concat([
        pareto_front(theta_sft, theta_slerp, ETAS, policy, *args, seed=seed, label=f"iteration {i}")
        for i, theta_slerp in enumerate(result.theta_slerp, start=1)
    ], ignore_index=True)
    return {"table": pd.DataFrame(rows), "fronts": fronts}


def write_report(profile: Profile | str | None = None, components=None, result=None,
                 num_prompts: int = 128, seed: int = 0, fresh: bool = False) -> Path:
    """Evaluate the profile's default WARP run and write report/ (results.json + figures), an
    artifact like the others: rebuilt when the run, the settings or a file changed."""
    from .pipeline import ensure_warp_run, load_components, warp_run_dir

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    components = components or load_components(profile)
    result = result or ensure_warp_run(profile, components=components)
    final = read_stamp(warp_run_dir(profile, profile.warp) / "final")["config_hash"]
    config = {"warp_final": final, "num_prompts": num_prompts, "seed": seed, "etas": ETAS,
              "sampling": to_dict(profile.sampling), "version": REPORT_VERSION}
    return build_once(artifacts_dir(profile) / "report", config,
                      lambda folder: _write(folder, profile, components, result, num_prompts, seed))


def _write(folder: Path, profile: Profile, components, result, num_prompts: int, seed: int) -> None:
    evaluation = evaluate_run(profile, components, result, num_prompts, seed)
    table, fronts = evaluation["table"], evaluation["fronts"]
    payload = {"profile": profile.name, "num_prompts": num_prompts, "seed": seed,
               "table": table.to_dict("records"), "fronts": fronts.to_dict("records")}
    (folder / "results.json").write_text(json.dumps(payload, indent=2, default=float))

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    plot_bars(table, ["reward_mean"], ax=axes[0])
    plot_bars(table, ["kl_to_sft"], ax=axes[1])
    _save(fig, folder / FIGURES[0])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    plot_front(fronts, ax=ax)
    _save(fig, folder / FIGURES[1])
    fig, axes = plt.subplots(1, 2, figsize=(15, 4))  # wide: the curve titles are long
    plot_training_curves(result.metrics, "reward_mean", ax=axes[0])
    plot_training_curves(result.metrics, "kl_to_sft", ax=axes[1])
    _save(fig, folder / FIGURES[2])


def summary(report_folder: Path) -> str:
    """Reward and KL to SFT of SFT and of the final policy, and where the report is."""
    table = {row["policy"]: row for row in json.loads((Path(report_folder) / "results.json").read_text())["table"]}
    final = [name for name in table if name.startswith("slerp_")][-1]
    lines = [f"{'policy':<10}{'reward':>10}{'KL to SFT':>12}"]
    for name in ("sft", final):
        lines.append(f"{name:<10}{table[name]['reward_mean']:>10.3f}{table[name]['kl_to_sft']:>12.3f}")
    return "\n".join([*lines, f"report: {report_folder}"])


def copy_to_docs(report_folder: Path, docs_folder: Path) -> None:
    """results.json and the main figures into docs/results/ (committed, shown in the README)."""
    docs_folder.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", *FIGURES):
        shutil.copy2(report_folder / name, docs_folder / name)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


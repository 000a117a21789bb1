"""The report of one WARP run on readable text (the smol profile, whose policy writes English):
the final policy against SFT on the same prompts, by the proxy reward it was trained on and by the
held-out judges it never saw, along a LITI front, with the completions themselves.

Writes data/artifacts/<profile>/report/text_report.json. One training seed, so the intervals are
over prompts, not seeds: each prompt's completion by the final policy minus SFT's (both sampled
with the same seed), a paired t-interval. It says whether RL moved this run's text, not whether
another seed would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import Profile, artifacts_dir, shown_path, to_dict
from .core.weights import liti
from .evaluate.judges import ensure_panel, hacking_verdict, load_panel
from .evaluate.stats import seed_interval
from .report import REPORT_EVAL_SEED, Evaluator
from .store.artifacts import build_once, fingerprint, read_stamp

TEXT_PROMPTS = 64  # held-out test prompts: one sampling batch per evaluation
ETAS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the LITI front from SFT (0) to the last SLERP (1)
# the per-prompt values compared, final - SFT: the two judges, and the panel's flags (0/1 per
# completion: reads as gamed praise, reads as degenerate text)
PAIRED = {"proxy_reward": "proxy reward (trained on)", "heldout_sentiment": "held-out sentiment (never seen)",
          "hacked": "hacked share", "degenerate": "degenerate share"}
TEXT_REPORT_VERSION = 1
REPORT_FILE = "text_report.json"


class TextEvaluator(Evaluator):
    """The report's Evaluator that also keeps each evaluation's completions (texts)."""

    keep_completions = True


def paired(final: np.ndarray, sft: np.ndarray) -> dict:
    """Mean of final - SFT over prompts, its 95% t-interval, and its direction: up / down when the
    interval excludes 0, inconclusive when it does not."""
    mean, low, high = seed_interval(np.asarray(final, float) - np.asarray(sft, float))
    direction = "up" if low > 0 else "down" if high < 0 else "inconclusive"
    return {"mean": mean, "low": low, "high": high, "direction": direction}


def write_text_report(profile: Profile, components, result, run_folder: Path, fresh: bool = False) -> Path:
    """Evaluate SFT and the LITI front of `result` (a WarpResult: its last SLERP at eta = 1) on
    TEXT_PROMPTS test prompts, judged by the proxy and the held-out panel; report/ of the profile."""
    panel_folder = ensure_panel(profile, components.tokenizer, components.reward_scorer)
    config = {"run": read_stamp(run_folder / "final")["config_hash"], "num_prompts": TEXT_PROMPTS,
              "etas": list(ETAS), "eval_seed": REPORT_EVAL_SEED, "judges": fingerprint(panel_folder),
              "sampling": to_dict(profile.sampling), "version": TEXT_REPORT_VERSION}

    def build(folder: Path) -> None:
        evaluator = TextEvaluator(profile, components, load_panel(panel_folder), TEXT_PROMPTS, REPORT_EVAL_SEED)
        front = [{**evaluator.sft, "eta": 0.0}]
        for eta in ETAS[1:]:
            print(f"[report] LITI eta = {eta}", flush=True)
            front.append({**evaluator.state(liti(evaluator.theta_sft, result.final, eta)), "eta": eta})
        table = evaluator.per_prompt_table()
        sft, final = (table[table["eval_id"] == row["eval_id"]] for row in (front[0], front[-1]))
        payload = {
            "meta": {"profile": profile.name, "num_prompts": len(evaluator.prompts), "eval_seed": REPORT_EVAL_SEED,
                     "training_seed": profile.warp.seed, "warp": to_dict(profile.warp)},
            "final_vs_sft": {name: {"judge": label, **paired(final[name].to_numpy(float), sft[name].to_numpy(float))}
                             for name, label in PAIRED.items()},
            "front": front,
            "prompts": list(evaluator.prompt_texts),
            "completions": {str(row["eta"]): evaluator.completions[row["eval_id"]] for row in front},
            "per_prompt": table.to_dict("list"),
        }
        (folder / REPORT_FILE).write_text(json.dumps(payload, indent=1, default=float))

    return build_once(artifacts_dir(profile) / "report", config, build, fresh=fresh)


def finding(payload: dict) -> str:
    """Whether the final policy became more positive or gamed the proxy, in words, from the paired
    intervals (judges.hacking_verdict: the proxy up but not the held-out judge, or the hacked share
    up by more than its threshold, is gaming)."""
    diffs = {name: tuple(payload["final_vs_sft"][name][key] for key in ("mean", "low", "high")) for name in PAIRED}
    return hacking_verdict(diffs["proxy_reward"], diffs["heldout_sentiment"], diffs["hacked"],
                           subject="The final policy", degenerate_diff=diffs["degenerate"])


def verdict(report_folder: Path) -> str:
    """The run's outcome in words, from text_report.json: each judge's direction and interval, and
    the finding."""
    payload = json.loads((Path(report_folder) / REPORT_FILE).read_text())
    n = payload["meta"]["num_prompts"]
    lines = []
    for name in ("proxy_reward", "heldout_sentiment"):
        judge = payload["final_vs_sft"][name]
        words = {"up": "above SFT", "down": "below SFT", "inconclusive": "inconclusive against SFT"}[judge["direction"]]
        lines.append(f"{judge['judge']}: final policy {words}, mean {judge['mean']:+.3f} "
                     f"[{judge['low']:+.3f}, {judge['high']:+.3f}] (paired over {n} prompts)")
    return "\n".join([*lines, finding(payload), f"report: {shown_path(report_folder)}"])

import dataclasses
import json

import pytest

from warp_utils.execution.overrides import get_profile
from warp_utils.pipeline import run_name, warp_run_dir


def test_default_config_trains_into_warp_and_others_into_warp_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    profile = get_profile("tiny")
    assert warp_run_dir(profile, profile.warp) == tmp_path / "artifacts" / "tiny" / "warp"
    study = dataclasses.replace(profile.warp, mu=0.05, I=1)
    assert run_name(profile.warp, study) == "I=1_mu=0.05"
    assert warp_run_dir(profile, study) == tmp_path / "artifacts" / "tiny" / "warp_runs" / "I=1_mu=0.05"
    named = warp_run_dir(profile, profile.warp, name="baseline")
    assert named == tmp_path / "artifacts" / "tiny" / "warp_runs" / "baseline"  # never over warp/
    with pytest.raises(ValueError, match="name"):
        warp_run_dir(profile, study, name="../warp")


# ----------------------------------------------------------------------------- the CLI end to end

SMOKE = [  # the tiny profile shrunk so that the whole pipeline runs in seconds on fake IMDB
    "policy.vocab_size=300", "policy.n_layer=1", "policy.n_embd=32", "policy.n_head=2", "policy.n_positions=64",
    "policy.tokenizer_reviews=80", "policy.sft_tokens=2000", "policy.block_size=32", "policy.sft_batch_size=4",
    "policy.sft_warmup_steps=2",
    "reward.vocab_size=300", "reward.dim=32", "reward.n_heads=2", "reward.hidden_dim=64",
    "reward.tokenizer_reviews=60", "reward.num_pairs=30", "reward.num_eval_pairs=20", "reward.max_length=48",
    "reward.batch_size=8", "reward.warmup_steps=2",
    "data.num_train_prompts=30", "data.num_test_prompts=12", "sampling.max_new_tokens=4",
    "warp.I=1", "warp.M=2", "warp.T=2", "warp.batch_size=4",
]


def cli(*args, env):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "warp_utils", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def smoke_args():
    return [item for assignment in SMOKE for item in ("--set", assignment)]


def test_run_end_to_end_reuses_detects_damage_and_summarises(fake_imdb, tmp_path):
    env = {"WARP_IMDB_DIR": str(fake_imdb), "WARP_DATA_ROOT": str(tmp_path / "data")}
    first = cli("run", "--seeds", "1", "--headline-seeds", "2", "--second-build", "2", "--workers", "2",
                *smoke_args(), env=env)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert "waiting for another process" not in first.stdout  # nothing raced: no wait to report
    name = next(line.split(": ")[1] for line in first.stdout.splitlines() if line.startswith("profile: "))
    assert name.startswith("tiny-set-")
    root = tmp_path / "data" / "artifacts" / name
    assert {p.name for p in root.iterdir()} == {"sft_policy", "reward_model", "prompts", "judges", "warp", "warp_runs",
                                                "report"}
    assert not (tmp_path / "data" / "artifacts" / "tiny").exists()  # a smoke run never touches the default
    assert "report: " + str(root / "report") in first.stdout and "sft" in first.stdout  # the summary
    assert "[held-out sentiment] (mean" in first.stdout  # each verdict line names its judge's family
    # the second training seed trained and evaluated only the headline claims' runs
    payload = json.loads((root / "report" / "results.json").read_text())
    first_seed = payload["meta"]["seeds"][0]
    assert payload["meta"]["seeds"] == [first_seed] and payload["meta"]["headline_seeds"] == [first_seed, first_seed + 1]
    fronts = {seed: {row["front"] for row in payload["fronts"] if row["seed"] == seed} for seed in (first_seed, first_seed + 1)}
    iterations = {name for name in fronts[first_seed] if name.startswith("iteration ")}
    assert fronts[first_seed + 1] == iterations | {"REINFORCE, SFT anchor"} < fronts[first_seed]
    assert "REINFORCE, SFT anchor, equal compute" in fronts[first_seed]  # the compute-matched baseline
    check_judged_results(payload, root)

    (root / "reward_model" / "model.safetensors").unlink()  # damage: detected, rebuilt, said once
    second = cli("run", "--seeds", "1", "--headline-seeds", "2", *smoke_args(), env=env)
    assert second.returncode == 0, second.stderr
    assert "rebuilding reward_model: model.safetensors is missing" in second.stdout
    # the reward model is rebuilt bitwise (seeded), so every WARP run and the report are reused
    assert "rebuilding run_" not in second.stdout and "[sft_policy] done" in second.stdout


def check_judged_results(payload, root):
    """Every evaluated policy carries the held-out panel, recomputable from the per-prompt data;
    provenance, probes and the overoptimization curves are recorded."""
    import pandas as pd

    from warp_utils.report import PER_PROMPT, read_per_prompt

    per_prompt = read_per_prompt(root / "report" / PER_PROMPT)
    assert set(per_prompt.groupby("eval_id").size()) == {payload["meta"]["num_prompts"]}
    assert sorted(per_prompt.groupby("eval_id")["prompt_id"].apply(list).iloc[0]) == sorted(
        p["prompt_id"] for p in payload["eval_prompts"])
    by_eval = per_prompt.groupby("eval_id").mean(numeric_only=True)
    for row in [payload["sft"], *payload["fronts"], *payload["points"]]:
        mean = by_eval.loc[row["eval_id"]]
        assert mean["proxy_reward"] == pytest.approx(row["reward_mean"], abs=1e-4)
        assert mean["hacked"] == pytest.approx(row["hacked_share"]) and mean["degenerate"] == pytest.approx(row["degenerate_share"])
        assert mean["heldout_sentiment"] == pytest.approx(row["heldout_sentiment"], abs=1e-4)
    assert len(set(per_prompt["eval_id"])) == len({row["eval_id"] for row in [payload["sft"], *payload["fronts"], *payload["points"]]})
    provenance = payload["meta"]["provenance"]
    assert set(provenance["fingerprints"]) == {"sft_policy", "reward_model", "prompts", "judges"}
    assert all(len(value) == 64 for value in provenance["fingerprints"].values()) and provenance["cpu"]
    assert [p["input"] for p in payload["probes"]][:5] == ["praise spam", "repeated token", "lone praise word",
                                                           "negative review + praise", "gibberish"]
    over = payload["overoptimization"]
    for path in ("training", "fronts"):
        assert set(over[path]["per_seed"]) == {str(s) for s in payload["meta"]["headline_seeds"]}
        assert "kl" in over[path]["hacking_start"]
    from warp_utils.report import rederive

    assert json.loads(json.dumps(rederive(payload, per_prompt), default=float)) == payload  # pure functions of it
    steps = pd.DataFrame(over["training"]["per_seed"][str(payload["meta"]["seeds"][0])])["global_step"]
    assert steps.tolist() == sorted(set(steps)) and len(steps) >= 2


def test_run_without_imdb_offline_exits_2_with_one_line_and_builds_nothing(tmp_path):
    env = {"WARP_IMDB_DIR": "", "WARP_DATA_ROOT": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1"}
    done = cli("run", "--seeds", "1", "--headline-seeds", "1", *smoke_args(), env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error:") and len(done.stderr.strip().splitlines()) == 1
    assert "WARP_IMDB_DIR" in done.stderr
    leftovers = [p for p in (tmp_path / "data").rglob("*") if p.is_file() or not any(p.iterdir())] \
        if (tmp_path / "data").exists() else []
    assert leftovers == []  # no half-built or empty folder


def test_large_models_share_the_cores_among_the_processes_training_side_by_side(monkeypatch):
    """Two workers of a 135M policy at 2 threads each would put 4 busy threads on 2 cores."""
    import torch

    from warp_utils.execution.runtime import SMALL_MODEL_PARAMS, Components, Execution, thread_count
    from warp_utils.pipeline import worker_execution

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert thread_count(SMALL_MODEL_PARAMS) == 4 and thread_count(SMALL_MODEL_PARAMS, processes=2) == 2
    assert thread_count(SMALL_MODEL_PARAMS, processes=8) == 1 and thread_count(1000, processes=1) == 1
    big = torch.nn.Linear(1, SMALL_MODEL_PARAMS)  # parameters counted, never run
    components = Components(big, None, None, [[1]], execution=Execution(workers=2))
    assert worker_execution(components).threads == 2 and worker_execution(components).workers == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_execution(components).threads == 3  # an explicit setting wins

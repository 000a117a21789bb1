"""`run` on the smol profile, end to end on fake IMDB with the tiny random Llama of the GGUF fixture
in SmolLM2's place: one WARP run and its text report (text_report.py), whose intervals and verdict
recompute from the per-prompt values it stores."""

import json

import numpy as np
import pytest
from scipy import stats as sps
from test_pipeline import SMOKE, cli

pytest.importorskip("gguf")

from warp_utils.inputs import gguf_writer  # noqa: E402
from warp_utils.text_report import ETAS, REPORT_FILE, finding, paired  # noqa: E402

# the smoke settings, with the Llama as the policy (its own sections: no GPT-2 fields)
SMOL_SMOKE = [s for s in SMOKE if not s.startswith("policy.")] + ["warp.lr=0.01"]


def smol_args(gguf_path):
    return [item for assignment in [f"policy.pretrained=gguf:{gguf_path}", *SMOL_SMOKE] for item in ("--set", assignment)]


def test_paired_interval_is_the_t_interval_of_the_differences():
    rng = np.random.default_rng(0)
    sft, final = rng.normal(size=30), rng.normal(size=30) + 0.8
    out = paired(final, sft)
    d = final - sft
    low, high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert out["mean"] == pytest.approx(d.mean()) and (out["low"], out["high"]) == pytest.approx((low, high))
    assert out["direction"] == "up"
    assert paired(sft, final)["direction"] == "down"
    assert paired(sft + rng.normal(scale=1e-3, size=30), sft)["direction"] in ("up", "down", "inconclusive")
    assert paired(np.array([1.0, -1.0, 1.0, -1.0]), np.zeros(4))["direction"] == "inconclusive"


def test_smol_run_trains_one_run_and_writes_its_text_report(fake_imdb, tmp_path):
    gguf_path = gguf_writer.write_llama_gguf(gguf_writer.tiny_llama(seed=0), tmp_path / "tiny.gguf")
    env = {"WARP_IMDB_DIR": str(fake_imdb), "WARP_DATA_ROOT": str(tmp_path / "data")}
    done = cli("run", "--profile", "smol", "--seeds", "1", *smol_args(gguf_path), env=env)
    assert done.returncode == 0, done.stderr
    name = next(line.split(": ")[1] for line in done.stdout.splitlines() if line.startswith("profile: "))
    root = tmp_path / "data" / "artifacts" / name
    assert name.startswith("smol-set-") and (root / "warp").is_dir() and not (root / "warp_runs").exists()
    payload = json.loads((root / "report" / REPORT_FILE).read_text())
    assert [row["eta"] for row in payload["front"]] == list(ETAS)
    n = payload["meta"]["num_prompts"]
    assert n == 12 and all(len(texts) == n for texts in payload["completions"].values())
    table = {key: np.asarray(values) for key, values in payload["per_prompt"].items()}
    first, last = payload["front"][0]["eval_id"], payload["front"][-1]["eval_id"]
    for judge, graded in payload["final_vs_sft"].items():  # both judges and the panel's flags
        expected = paired(table[judge][table["eval_id"] == last], table[judge][table["eval_id"] == first])
        assert graded["mean"] == pytest.approx(expected["mean"]) and graded["direction"] == expected["direction"]
    for judge in ("proxy_reward", "heldout_sentiment"):
        direction = payload["final_vs_sft"][judge]["direction"]
        words = {"up": "above SFT", "down": "below SFT", "inconclusive": "inconclusive against SFT"}[direction]
        assert f"{payload['final_vs_sft'][judge]['judge']}: final policy {words}" in done.stdout
    assert finding(payload) in done.stdout
    assert payload["front"][0]["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)  # eta = 0 is SFT itself
    assert payload["front"][-1]["kl_to_sft"] > 0  # the run moved the policy


def test_smol_rejects_the_studies_flags_in_one_line(tmp_path):
    done = cli("run", "--profile", "smol", "--seeds", "3", "--second-build", "2", env={"WARP_DATA_ROOT": str(tmp_path / "d")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: profile smol trains one run and writes its text report: --seeds, --second-build do not apply"]
    assert not (tmp_path / "d").exists()


def test_the_finding_follows_the_paired_intervals():
    """Gaming when the proxy rises and the held-out judge does not; both judges when both rise."""
    def payload(proxy, heldout, hacked=(0.0, -0.1, 0.1), degenerate=(0.0, -0.1, 0.1)):
        rows = {"proxy_reward": proxy, "heldout_sentiment": heldout, "hacked": hacked, "degenerate": degenerate}
        return {"final_vs_sft": {k: dict(zip(("mean", "low", "high"), v)) for k, v in rows.items()}}

    assert "games the proxy" in finding(payload((1.0, 0.5, 1.5), (0.1, -0.2, 0.4)))
    assert "improves on both judges" in finding(payload((1.0, 0.5, 1.5), (0.4, 0.2, 0.6)))
    assert "inconclusive" in finding(payload((0.1, -0.5, 0.7), (0.4, 0.2, 0.6)))
    assert "games the proxy" in finding(payload((1.0, 0.5, 1.5), (0.4, 0.2, 0.6), hacked=(0.3, 0.2, 0.4)))

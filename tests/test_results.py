"""warp_utils.results on synthetic evaluations (fronts with known shapes, so the differences at a
KL are known exactly) and the committed README block against docs/results/results.json."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from warp_utils import results as res
from warp_utils.stats import grade_claims, verdict

REPO = Path(__file__).resolve().parent.parent
SFT = {"reward_mean": 0.0, "reward_sd": 0.0, "kl_to_sft": 0.0}


def kl_ratios_in_range(rows):
    """Brute force: the KL ratio of every pair of eta-neighbours touching [0.1 K, K]."""
    rows = sorted((r for r in rows if r["eta"] > 0), key=lambda r: r["eta"])
    top = max(r["kl_to_sft"] for r in rows)
    ratios = [max(a["kl_to_sft"], b["kl_to_sft"]) / min(a["kl_to_sft"], b["kl_to_sft"])
              for a, b in itertools.pairwise(rows) if max(a["kl_to_sft"], b["kl_to_sft"]) >= 0.1 * top]
    return ratios, rows[0]["kl_to_sft"] / top


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0, 5.0])
def test_dense_front_refines_eta_until_neighbours_are_2x_apart_in_kl(power):
    calls = []

    def evaluate(eta):
        calls.append(eta)
        return {"reward_mean": eta, "reward_sd": eta, "kl_to_sft": 3.0 * eta ** power}

    rows = res.dense_front(evaluate, SFT, max_points=40)
    ratios, lowest_share = kl_ratios_in_range(rows)
    assert max(ratios) <= 2.0 + 1e-12 and lowest_share <= 0.1
    assert 0.0 not in calls and len(calls) == len(set(calls))  # SFT (eta 0) is never evaluated
    assert rows[0] == {**SFT, "eta": 0.0} and [r["eta"] for r in rows] == sorted(r["eta"] for r in rows)
    assert res.front_is_dense(pd.DataFrame(rows))
    if power == 2.0:  # KL ~ eta^2: the initial grid is already dense, nothing added
        assert calls == list(res.INITIAL_ETAS)


def test_dense_front_stops_at_its_budget():
    calls = []
    rows = res.dense_front(lambda eta: calls.append(eta) or {"kl_to_sft": eta ** 12, "reward_sd": 0.0},
                           SFT, max_points=7)
    assert len(calls) == 7 and len(rows) == 8
    assert not res.front_is_dense(pd.DataFrame(rows))


def synthetic_fronts(slopes: dict, kl_max: dict, seeds=(1, 2, 3)):
    """Fronts reward_sd = slope[front][seed] * kl, dense in KL up to kl_max[front]."""
    rows = []
    for name, by_seed in slopes.items():
        for seed in seeds:
            for k, kl in enumerate([0.0, *np.geomspace(0.05, kl_max[name], 9)]):
                rows.append({"seed": seed, "front": name, "eta": k / 9, "kl_to_sft": float(kl),
                             "reward_sd": by_seed[seed] * float(kl), "reward_mean": 0.0})
    return rows


def test_front_claims_read_every_seed_at_one_common_kl():
    slopes = {"iteration 2": {1: 1.0, 2: 1.2, 3: 0.9}, "iteration 1": {1: 0.5, 2: 0.55, 3: 0.52}}
    fronts = synthetic_fronts(slopes, {"iteration 2": 4.0, "iteration 1": 2.0})
    points = [{"seed": s, "policy": "slerp_1", "kl_to_sft": 1.0, "reward_sd": 0.0} for s in (1, 2, 3)]
    (paper, _), (seed_report, _) = res.claim_inputs({"fronts": fronts, "points": points})
    assert seed_report == []  # no mu / lr points: those claims are left out, not invented
    [(name, statistic, sign, d)] = paper
    assert name == res.FRONT_CLAIMS[0][0] and sign == 1
    assert res.comparison_kl(pd.DataFrame(fronts), ("iteration 2", "iteration 1"), (1, 2, 3)) == pytest.approx(2.0)
    assert d == pytest.approx([(slopes["iteration 2"][s] - slopes["iteration 1"][s]) * 2.0 for s in (1, 2, 3)])
    assert "KL 2" in statistic and "iteration 2 - iteration 1" in statistic


def test_no_common_measured_kl_gives_no_claim():
    fronts = synthetic_fronts({"iteration 2": {1: 1.0}, "iteration 1": {1: 0.5}},
                              {"iteration 2": 4.0, "iteration 1": 2.0}, seeds=(1,))
    for row in fronts:  # iteration 2 measured only at 0 and at KL 4: a gap no reading bridges
        if row["front"] == "iteration 2" and 0 < row["kl_to_sft"] < 4.0:
            row["kl_to_sft"] = 4.0
    assert math.isnan(res.comparison_kl(pd.DataFrame(fronts), ("iteration 2", "iteration 1"), (1,)))


def test_point_claims_and_the_iteration_2_gap():
    points = []
    for s in (1, 2, 3):
        for policy, kl, reward in (("slerp_1", 1.0, 0.2), ("slerp_2", 2.0, 0.5), ("mu=0.05 slerp_1", 1.1 + s / 100, 0.3),
                                   ("mu=0.05 slerp_2", 3.0 + s / 10, 0.6 + s / 100)):
            points.append({"seed": s, "policy": policy, "kl_to_sft": kl, "reward_sd": reward})
    fronts = synthetic_fronts({"iteration 1": {1: 1, 2: 1, 3: 1}}, {"iteration 1": 1.0})
    (_, _), (claims, _) = res.claim_inputs({"fronts": fronts, "points": points})
    by_name = {name: d for name, _, _, d in claims}
    assert by_name[res.POINT_CLAIMS[0][0]] == pytest.approx([1.0 + s / 10 for s in (1, 2, 3)])
    assert by_name[res.POINT_CLAIMS[1][0]] == pytest.approx([0.1 + s / 100 for s in (1, 2, 3)])
    assert by_name[res.POINT_CLAIMS[2][0]] == pytest.approx([(1.0 + s / 10) - (0.1 + s / 100) for s in (1, 2, 3)])


def test_mean_fronts_average_the_seeds_at_fixed_kl():
    slopes = {"iteration 1": {1: 1.0, 2: 2.0, 3: 4.5}}
    mean = res.mean_fronts(pd.DataFrame(synthetic_fronts(slopes, {"iteration 1": 2.0})))
    assert len(mean) == res.MEAN_FRONT_POINTS and mean["kl"].iloc[0] == pytest.approx(0.2)
    assert mean["reward_sd"].to_numpy() == pytest.approx(2.5 * mean["kl"].to_numpy())
    assert mean["reward_sd_low"].to_numpy() == pytest.approx(mean["kl"].to_numpy())


def results_payload(seeds=(42, 43, 44)):
    slopes = {"iteration 2": {s: 1.0 + s / 100 for s in seeds}, "iteration 1": {s: 0.5 for s in seeds},
              "LERP, iteration 1": {s: 0.5 + (s % 2) / 10 for s in seeds}}
    fronts = synthetic_fronts(slopes, {"iteration 2": 4.0, "iteration 1": 2.0, "LERP, iteration 1": 1.5}, seeds)
    points = [{"seed": s, "policy": p, "kl_to_sft": 1.0 + i, "reward_sd": 0.1 * i, "reward_mean": 0.1 * i}
              for s in seeds for i, p in enumerate(("slerp_1", "slerp_2"))]
    payload = {"meta": {"git_commit": "0123456789abcdef", "profile": "tiny", "seeds": list(seeds),
                        "num_prompts": 256, "eval_seed": 0, "cores": 2, "torch": "2.x", "wall_seconds": 600.0},
               "sft": {"reward_mean": -0.5, "reward_std": 1.5}, "fronts": fronts, "points": points}
    payload["claims"] = res.claims(payload)
    return payload


def test_claims_are_graded_by_the_verdict_function_with_holm():
    payload = results_payload()
    inputs = res.claim_inputs(payload)[0][0]
    expected = grade_claims(inputs)
    assert [c["name"] for c in payload["claims"]] == [name for name, *_ in inputs]
    for claim, graded in zip(payload["claims"], expected):
        assert claim["mean"] == pytest.approx(graded.mean) and claim["ci_low"] == pytest.approx(graded.ci_low)
        assert claim["verdict"] == verdict(claim["ci_low"], claim["ci_high"], claim["expected_sign"])
        assert claim["family"] == "paper" and claim["level"] == pytest.approx(graded.level)
    assert sorted(c["level"] for c in payload["claims"]) == pytest.approx([0.95, 0.975])  # Holm, 2 claims
    assert payload["claims"][0]["verdict"] == "supported"  # iteration 2's slope is 2x on every seed


def test_markdown_shows_every_claim_from_the_numbers():
    payload = results_payload()
    text = res.render_markdown(payload)
    for claim in payload["claims"]:
        assert claim["name"] in text and claim["statistic"] in text
        assert f"{claim['mean']:+.3g}" in text and f"**{claim['verdict']}**" in text
    assert "training seeds 42, 43, 44" in text and "256 held-out test prompts" in text
    assert "uncommitted" not in text
    payload["meta"]["uncommitted"] = ["warp_utils/reward.py"]
    assert "`0123456789` plus uncommitted changes to warp_utils/reward.py" in res.render_markdown(payload)
    payload["claims"][0]["verdict"] = "contradicted"
    assert res.render_markdown(payload) != text


def test_headline_claims_use_every_seed_that_trained_both_fronts():
    # seeds 1-3 trained every study; seeds 4-5 only the headline runs (iterations 1 and 2 of the
    # default run), as `run --seeds 3 --headline-seeds 5` does
    all_seeds = (1, 2, 3, 4, 5)
    slopes = {"iteration 2": {s: 1.0 + s / 10 for s in all_seeds}, "iteration 1": {s: 0.5 for s in all_seeds},
              "LERP, iteration 1": {s: 0.4 for s in all_seeds}}
    fronts = [row for row in synthetic_fronts(slopes, {"iteration 2": 4.0, "iteration 1": 2.0, "LERP, iteration 1": 2.0},
                                              all_seeds)
              if not (row["front"] == "LERP, iteration 1" and row["seed"] > 3)]
    (paper, _), _ = res.claim_inputs({"fronts": fronts, "points": []})
    by_name = {name: d for name, _, _, d in paper}
    assert by_name[res.FRONT_CLAIMS[0][0]] == pytest.approx([(0.5 + s / 10) * 2.0 for s in all_seeds])  # 5 seeds
    assert by_name[res.FRONT_CLAIMS[1][0]] == pytest.approx([0.1 * 2.0] * 3)  # SLERP vs LERP: 3 seeds
    mean = res.mean_fronts(pd.DataFrame(fronts)).groupby("front")["n_seeds"].max()
    assert (mean["iteration 2"], mean["LERP, iteration 1"]) == (5, 3)
    assert res.seeds_with(pd.DataFrame(fronts), "front", ["iteration 1", "LERP, iteration 1"]) == [1, 2, 3]


def test_markdown_names_the_headline_seeds_and_the_command():
    payload = results_payload()
    payload["meta"]["headline_seeds"] = [42, 43, 44, 45, 46]
    text = res.render_markdown(payload)
    assert "run --seeds 3 --headline-seeds 5 --update-docs" in text
    assert "training seeds 42, 43, 44 (and 45, 46 for the runs behind the headline claims" in text


def test_readme_block_replacement_keeps_the_rest():
    readme = f"# title\n\n## Results\n\n{res.BEGIN}\nold\n{res.END}\n\n## Next\ntext\n"
    block = res.readme_block(results_payload())
    updated = res.replace_readme_block(readme, block)
    assert updated.startswith("# title\n\n## Results\n\n") and updated.endswith("\n\n## Next\ntext\n")
    assert res.current_readme_block(updated) == block and "docs/results/pareto_fronts.png" in block
    with pytest.raises(ValueError, match="results block"):
        res.replace_readme_block("# no markers\n", block)


def test_committed_readme_block_is_what_results_json_renders_to():
    payload = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    readme = (REPO / "README.md").read_text()
    assert res.current_readme_block(readme) == res.readme_block(payload)
    assert (REPO / "docs" / "results" / "RESULTS.md").read_text().endswith(res.render_markdown(payload))
    assert payload["claims"] == res.claims(payload)  # the verdicts are what the code computes


@pytest.mark.parametrize("flag, value, message", [("--seeds", "0", "--seeds must be an integer >= 1, got '0'"),
                                                  ("--seeds", "three", "--seeds must be int, got 'three'"),
                                                  ("--headline-seeds", "0", "--headline-seeds must be an integer >= 1")])
def test_bad_seeds_exit_2_with_one_line_before_any_work(flag, value, message, capsys, tmp_path, monkeypatch):
    from warp_utils.cli import main

    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    assert main(["run", flag, value]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing built


def judged_payload(heldout_shift, hacked_shift):
    """Final-policy points on 3 seeds: proxy up by ~1 SFT sd, held-out and hacked share moved by the shifts."""
    sft = {"reward_sd": 0.0, "reward_mean": 0.0, "kl_to_sft": 0.0, "heldout_sentiment": 0.5, "hacked_share": 0.02}
    points = [{"seed": s, "policy": "slerp_2", "reward_sd": 1.0 + 0.1 * k, "reward_mean": 1.0, "kl_to_sft": 2.0,
               "heldout_sentiment": 0.5 + heldout_shift + 0.01 * k, "hacked_share": 0.02 + hacked_shift + 0.01 * k}
              for k, s in enumerate((42, 43, 44))]
    return {"sft": sft, "points": points}


def test_final_vs_sft_is_the_seed_interval_of_each_judge():
    diffs = res.final_vs_sft(judged_payload(-0.1, 0.3))
    assert diffs["proxy"][0] == pytest.approx(1.1) and diffs["heldout"][0] == pytest.approx(-0.09)
    assert diffs["hacked"][0] == pytest.approx(0.31)
    assert diffs["proxy"][1] < 1.1 < diffs["proxy"][2]  # a t-interval over 3 seeds around the mean
    empty = res.final_vs_sft({"sft": {}, "points": [{"seed": 1, "policy": "slerp_1", "reward_sd": 1.0}]})
    assert all(math.isnan(v) for diff in empty.values() for v in diff)


def test_the_hacking_paragraph_follows_the_numbers():
    games = res.hacking_paragraph(judged_payload(-0.1, 0.3))
    assert games[0].startswith("The default WARP policy games the proxy") and len(games) == 1  # no lr point
    honest = res.hacking_paragraph(judged_payload(0.2, 0.0))
    assert honest[0].startswith("The default WARP policy improves on both judges")
    with_lr = judged_payload(0.2, 0.0)
    with_lr["points"] += [{**row, "policy": "lr=0.001 slerp_1", "hacked_share": 0.7 + row["hacked_share"]}
                          for row in with_lr["points"]]
    assert res.hacking_paragraph(with_lr)[1].startswith("The lr = 1e-3 study's policy games the proxy")
    payload = judged_payload(0.2, 0.0)
    payload["overoptimization"] = {"front": "iteration 2",
                                   "training": {"hacking_start": {"kl": 3.5, "reason": "held-out sentiment peaks"}},
                                   "fronts": {"hacking_start": {"kl": None, "reason": "not within KL <= 2"}}}
    _, training, front = res.hacking_paragraph(payload)
    assert training == "Along training, hacking starts at KL 3.5 nats (held-out sentiment peaks)."
    assert front == "Along the LITI front of iteration 2, no sign of hacking: not within KL <= 2."


def test_provenance_sentence_names_the_machine_and_the_artifacts():
    meta = {"provenance": {"fingerprints": {"sft_policy": "a" * 64, "judges": "b" * 64}, "cpu": "Some CPU",
                           "cores": 2, "torch_threads": 1}}
    text = res.provenance_sentence(meta)
    assert "Some CPU (2 cores, 1 torch threads)" in text and "sft_policy `aaaaaaaaaaaa`" in text
    assert "other bits" in text
    assert res.provenance_sentence({}) == ""

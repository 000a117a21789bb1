"""warp_utils.evaluate.results on synthetic evaluations (fronts with known shapes, so the differences at a
KL are known exactly) and the committed README block against docs/results/results.json."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from warp_utils.evaluate import results as res

REPO = Path(__file__).resolve().parent.parent


JUDGE_COLUMNS = ("reward_sd", "heldout_sd")


def log_linear_fronts(lines: dict, kl_ranges: dict, seeds=(1, 2, 3), points=6):
    """Fronts whose value is a + b log(kl) (each judge column alike, the held-out one halved),
    measured at `points` KLs geometric over kl_ranges[front] plus SFT at KL 0: the envelope
    interpolated in log-KL is the line itself, so gaps have closed forms."""
    rows = []
    for name, by_seed in lines.items():
        low, high = kl_ranges[name]
        for seed in seeds:
            a, b = by_seed[seed]
            rows.append({"seed": seed, "front": name, "eta": 0.0, "kl_to_sft": 0.0, "reward_sd": 0.0,
                         "heldout_sd": 0.0, "target_kl": None})
            for k, kl in enumerate(np.geomspace(low, high, points)):
                value = a + b * math.log(kl)
                rows.append({"seed": seed, "front": name, "eta": (k + 1) / points, "kl_to_sft": float(kl),
                             "reward_sd": value, "heldout_sd": value / 2, "target_kl": float(kl)})
    return rows


def closed_form_gap(line_a, line_b, k_low, k_high):
    """Mean over log k in [k_low, k_high] of (a_A - a_B) + (b_A - b_B) log k."""
    return (line_a[0] - line_b[0]) + (line_a[1] - line_b[1]) * (math.log(k_low) + math.log(k_high)) / 2


def test_front_claim_is_the_envelope_gap_over_the_shared_range_on_each_judge():
    lines = {"iteration 2": {1: (2.0, 0.5), 2: (2.2, 0.4), 3: (1.9, 0.6)},  # above SFT's 0 from KL 0.1 on
             "iteration 1": {1: (1.5, 0.3), 2: (1.6, 0.35), 3: (1.55, 0.2)}}
    fronts = log_linear_fronts(lines, {"iteration 2": (0.12, 4.0), "iteration 1": (0.1, 2.5)})
    data = res.claim_data({"fronts": fronts, "points": []})
    assert [(c.name, c.family) for c in data] == [(res.FRONT_CLAIMS[0][0], "proxy"),
                                                   (res.FRONT_CLAIMS[0][0], "held-out sentiment")]
    proxy, held = data
    assert (proxy.k_low, proxy.k_high) == pytest.approx((0.12, 2.5))  # largest first KL, smallest last
    expected = [closed_form_gap(lines["iteration 2"][s], lines["iteration 1"][s], 0.12, 2.5) for s in (1, 2, 3)]
    assert proxy.per_seed == pytest.approx(expected, rel=1e-12)
    assert held.per_seed == pytest.approx([e / 2 for e in expected], rel=1e-12)
    at_top = [(lines["iteration 2"][s][0] - lines["iteration 1"][s][0]) + (lines["iteration 2"][s][1]
              - lines["iteration 1"][s][1]) * math.log(2.5) for s in (1, 2, 3)]
    # the one-point reading: the envelopes at K_high, interpolated in log-KL (exact on these lines)
    assert proxy.one_point["kl"] == pytest.approx(2.5)
    assert proxy.one_point["mean"] == pytest.approx(np.mean(at_top), rel=1e-12)
    assert proxy.effect == res.FRONT_EFFECT and proxy.kind == "front"


def test_a_declared_range_replaces_the_measured_one(monkeypatch):
    lines = {"iteration 2": {s: (2.0, 0.5) for s in (1, 2)}, "iteration 1": {s: (1.5, 0.25) for s in (1, 2)}}
    fronts = log_linear_fronts(lines, {"iteration 2": (0.1, 4.0), "iteration 1": (0.1, 4.0)}, seeds=(1, 2))
    monkeypatch.setitem(res.CLAIM_RANGES, res.FRONT_CLAIMS[0][0], (0.5, 1.0))
    proxy = res.claim_data({"fronts": fronts, "points": []})[0]
    assert (proxy.k_low, proxy.k_high) == (0.5, 1.0)
    assert proxy.per_seed == pytest.approx([closed_form_gap((2.0, 0.5), (1.5, 0.25), 0.5, 1.0)] * 2)


def test_point_claims_per_judge_and_the_kl_family():
    points = []
    for s in (1, 2, 3):
        for policy, kl, reward in (("slerp_1", 1.0, 0.2), ("slerp_2", 2.0, 0.5), ("mu=0.05 slerp_1", 1.1 + s / 100, 0.3),
                                   ("mu=0.05 slerp_2", 3.0 + s / 10, 0.6 + s / 100)):
            points.append({"seed": s, "policy": policy, "kl_to_sft": kl, "reward_sd": reward, "heldout_sd": -reward})
    data = res.claim_data({"fronts": [], "points": points})
    by_key = {(c.name, c.family): c for c in data}
    assert {c.family for c in data} == {"proxy", "held-out sentiment", "KL"}
    kl_claim = by_key[(res.POINT_CLAIMS[0][0], "KL")]
    assert kl_claim.per_seed == pytest.approx([1.0 + s / 10 for s in (1, 2, 3)])
    assert kl_claim.effect == pytest.approx(res.KL_RELATIVE_EFFECT * 2.0)  # 10% of B's mean KL
    assert by_key[(res.POINT_CLAIMS[1][0], "proxy")].per_seed == pytest.approx([0.1 + s / 100 for s in (1, 2, 3)])
    assert by_key[(res.POINT_CLAIMS[1][0], "held-out sentiment")].per_seed == pytest.approx(
        [-(0.1 + s / 100) for s in (1, 2, 3)])
    assert by_key[(res.POINT_CLAIMS[2][0], "KL")].per_seed == pytest.approx(
        [(1.0 + s / 10) - (0.1 + s / 100) for s in (1, 2, 3)])


def test_mean_fronts_average_the_seeds_at_fixed_kl():
    rows = []
    for seed, slope in ((1, 1.0), (2, 2.0), (3, 4.5)):
        for k, kl in enumerate([0.0, *np.geomspace(0.05, 2.0, 9)]):
            rows.append({"seed": seed, "front": "iteration 1", "eta": k / 9, "kl_to_sft": float(kl),
                         "reward_sd": slope * float(kl), "reward_mean": 0.0})
    mean = res.mean_fronts(pd.DataFrame(rows))
    assert len(mean) == res.MEAN_FRONT_POINTS and mean["kl"].iloc[0] == pytest.approx(0.2)
    assert mean["reward_sd"].to_numpy() == pytest.approx(2.5 * mean["kl"].to_numpy())
    assert mean["reward_sd_low"].to_numpy() == pytest.approx(mean["kl"].to_numpy())


def results_payload(seeds=(42, 43, 44), builds=None):
    lines = {"iteration 2": {s: (2.0 + s / 100, 0.5) for s in seeds}, "iteration 1": {s: (1.5, 0.5) for s in seeds},
             "LERP, iteration 1": {s: (1.5 + (s % 2) / 10, 0.5) for s in seeds}}
    fronts = log_linear_fronts(lines, {"iteration 2": (0.1, 4.0), "iteration 1": (0.1, 2.0),
                                       "LERP, iteration 1": (0.1, 1.5)}, seeds)
    points = [{"seed": s, "policy": p, "kl_to_sft": 1.0 + i, "reward_sd": 0.1 * i, "reward_mean": 0.1 * i,
               "heldout_sd": 0.0} for s in seeds for i, p in enumerate(("slerp_1", "slerp_2"))]
    payload = {"meta": {"git_commit": "0123456789abcdef", "profile": "tiny", "seeds": list(seeds),
                        "num_prompts": 256, "eval_seed": 0, "cores": 2, "torch": "2.x", "wall_seconds": 600.0},
               "sft": {"reward_mean": -0.5, "reward_std": 1.5}, "fronts": fronts, "points": points}
    if builds:
        payload["builds"] = builds
    payload["claims"] = res.claims(payload)
    return payload


def test_claims_are_graded_one_sided_with_holm_within_each_judge():
    from warp_utils.evaluate.stats import ALPHA, grade_family, seeds_for_power

    payload = results_payload()
    for family in ("proxy", "held-out sentiment"):
        members = [c for c in payload["claims"] if c["family"] == family]
        assert [c["name"] for c in members] == [res.FRONT_CLAIMS[0][0], res.FRONT_CLAIMS[1][0]]
        grades = grade_family([(c["expected_sign"], c["per_seed"]) for c in members])
        assert [c["verdict"] for c in members] == [g.verdict for g in grades]
        assert [c["p_expected"] for c in members] == pytest.approx([g.p_expected for g in grades])
        for c in members:
            assert c["family_size"] == 2 and c["smallest_effect"] == res.FRONT_EFFECT
            assert c["seeds_for_power"] == seeds_for_power(c["sd"], res.FRONT_EFFECT, 1 - ALPHA / 2)
            assert c["k_low"] == pytest.approx(0.1) and c["one_point"] is not None and c["fragile"] is None
    assert payload["claims"][0]["verdict"] == "supported"  # iteration 2's line is above on every seed
    json.dumps(payload["claims"], allow_nan=False)  # strict JSON: no NaN


def test_a_verdict_that_differs_on_another_build_is_fragile():
    main = results_payload()
    flipped = results_payload()  # the other build: iteration 2 below iteration 1
    for row in flipped["fronts"]:
        if row["front"] == "iteration 2":
            row["reward_sd"], row["heldout_sd"] = -row["reward_sd"] - 1, row["heldout_sd"]
    other = {"meta": {"seeds": [42, 43, 44]}, "sft": flipped["sft"], "fronts": flipped["fronts"],
             "points": flipped["points"]}
    payload = results_payload(builds={"rebuilt": other})
    headline = {(c["name"], c["family"]): c for c in payload["claims"] if c["name"] == res.FRONT_CLAIMS[0][0]}
    proxy, held = headline[(res.FRONT_CLAIMS[0][0], "proxy")], headline[(res.FRONT_CLAIMS[0][0], "held-out sentiment")]
    assert proxy["fragile"] is True and proxy["builds"]["rebuilt"]["verdict"] == "contradicted"
    assert proxy["spread"] == pytest.approx([proxy["builds"]["rebuilt"]["mean"], proxy["mean"]])
    assert held["fragile"] is False  # the held-out judge's fronts are the same in both builds
    slerp = next(c for c in payload["claims"] if c["name"] == res.FRONT_CLAIMS[1][0])
    assert slerp["fragile"] is None  # not a headline claim: graded on one build only
    assert [c["verdict"] for c in main["claims"]] == [c["verdict"] for c in payload["claims"]]
    assert "Fragile" in res.claim_sentence(proxy) and "Fragile" not in res.claim_sentence(held)


def test_a_proxy_claim_the_held_out_judge_does_not_support_is_stated():
    payload = results_payload()
    claims = [dict(c) for c in payload["claims"]]
    assert res.judge_disagreements(claims) == []  # both judges agree here
    for c in claims:
        if c["family"] == "held-out sentiment" and c["name"] == res.FRONT_CLAIMS[0][0]:
            c["verdict"] = "inconclusive"
    [line] = res.judge_disagreements(claims)
    assert res.FRONT_CLAIMS[0][0] in line and "inconclusive on the held-out" in line


def test_the_crossed_bootstrap_reads_the_per_prompt_table():
    """Per-prompt values equal to their evaluation's mean plus SFT's value on the prompt: relative to
    SFT the prompts add no variance, so every replicate is a mean of resampled per-seed gaps,
    inside [min, max] of the per-seed gaps (fails if a value is not read relative to SFT's)."""
    payload = results_payload()
    sft_row = {"eval_id": 0}
    rows, eval_id = [], 1
    for row in payload["fronts"]:
        row["eval_id"] = 0 if row["kl_to_sft"] == 0 else eval_id
        if row["kl_to_sft"] > 0:
            for prompt in range(8):
                rows.append({"eval_id": eval_id, "prompt_id": prompt, "kl_to_sft": row["kl_to_sft"],
                             "proxy_reward": row["reward_sd"], "heldout_sentiment": row["heldout_sd"]})
            eval_id += 1
    sft = np.array([(-1) ** prompt * math.sqrt(7 / 8) for prompt in range(8)])  # mean 0, sd 1
    for prompt in range(8):  # each value is read relative to SFT's on the same prompt
        rows = [{**row, "proxy_reward": row["proxy_reward"] + sft[prompt],
                 "heldout_sentiment": row["heldout_sentiment"] + sft[prompt]} if row["prompt_id"] == prompt else row
                for row in rows]
        rows.append({"eval_id": 0, "prompt_id": prompt, "kl_to_sft": 0.0, "proxy_reward": sft[prompt],
                     "heldout_sentiment": sft[prompt]})
    payload["sft"].update(sft_row)
    payload["points"] = []
    graded = res.claims(payload, pd.DataFrame(rows))
    for c in graded:
        boot = c["bootstrap"]
        assert boot["defined"] == boot["replicates"] == res.BOOTSTRAP_REPLICATES
        assert min(c["per_seed"]) - 1e-9 <= boot["low"] <= boot["high"] <= max(c["per_seed"]) + 1e-9


def test_markdown_shows_every_claim_from_the_numbers():
    payload = results_payload()
    text = res.render_markdown(payload)
    for claim in payload["claims"]:
        assert claim["name"] in text and (res.claim_range_text(claim) or claim["statistic"]) in text
        assert f"{claim['mean']:+.3g}" in text and f"**{claim['verdict']}**" in text
    assert "training seeds 42, 43, 44" in text and "256 held-out test prompts" in text
    assert "uncommitted" not in text
    payload["meta"]["uncommitted"] = ["warp_utils/inputs/reward.py"]
    assert "`0123456789` plus uncommitted changes to warp_utils/inputs/reward.py" in res.render_markdown(payload)
    payload["claims"][0]["verdict"] = "contradicted"
    assert res.render_markdown(payload) != text


def test_headline_claims_use_every_seed_that_trained_both_fronts():
    # seeds 1-3 trained every study; seeds 4-5 only the headline runs (iterations 1 and 2 of the
    # default run), as `run --seeds 3 --headline-seeds 5` does
    all_seeds = (1, 2, 3, 4, 5)
    lines = {"iteration 2": {s: (2.0 + s / 10, 0.5) for s in all_seeds}, "iteration 1": {s: (1.5, 0.5) for s in all_seeds},
             "LERP, iteration 1": {s: (1.4, 0.5) for s in all_seeds}}
    fronts = [row for row in log_linear_fronts(lines, {name: (0.1, 2.0) for name in lines}, all_seeds)
              if not (row["front"] == "LERP, iteration 1" and row["seed"] > 3)]
    by_name = {c.name: c for c in res.claim_data({"fronts": fronts, "points": []}) if c.family == "proxy"}
    assert by_name[res.FRONT_CLAIMS[0][0]].per_seed == pytest.approx([0.5 + s / 10 for s in all_seeds])  # 5 seeds
    assert by_name[res.FRONT_CLAIMS[1][0]].per_seed == pytest.approx([0.1] * 3)  # SLERP vs LERP: 3 seeds
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
    assert res.current_readme_block(updated) == block and "(docs/results/RESULTS.md)" in block
    assert "pareto_fronts.png" not in block and res.READING not in block  # short: the rest is in RESULTS.md
    assert all(f"| {c['name']} | {c['family']} |" in block for c in results_payload()["claims"])
    with pytest.raises(ValueError, match="results block"):
        res.replace_readme_block("# no markers\n", block)


def test_committed_readme_block_is_what_results_json_renders_to():
    payload = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    readme = (REPO / "README.md").read_text()
    assert res.current_readme_block(readme) == res.readme_block(payload)
    assert (REPO / "docs" / "results" / "RESULTS.md").read_text().endswith(res.render_markdown(payload))
    per_prompt = pd.read_csv(REPO / "docs" / "results" / "per_prompt.csv.gz")
    assert payload["claims"] == res.claims(payload, per_prompt)  # the verdicts are what the code computes


def test_committed_results_are_dense_and_sized_as_declared():
    """The committed run: 10 training seeds behind the two headline claims, 5 behind every other,
    every front point within 10% of its target KL, and every claim carrying its whole reading."""
    from warp_utils.evaluate.dense_fronts import KL_TOLERANCE

    payload = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    rows = [*payload["fronts"], *payload["builds"]["rebuilt"]["fronts"]]
    targeted = [row for row in rows if row["target_kl"] is not None]
    assert len(targeted) == sum(row["eta"] > 0 for row in rows)  # every point but SFT has a target
    assert all(abs(row["kl_to_sft"] - row["target_kl"]) <= KL_TOLERANCE * row["target_kl"] for row in targeted)
    fields = {"k_low", "k_high", "mean", "ci_low", "ci_high", "p_expected", "p_opposite", "family", "family_size",
              "expected_sign", "one_point", "smallest_effect", "seeds_for_power", "bootstrap", "fragile", "builds",
              "spread"}
    for claim in payload["claims"]:
        assert fields <= set(claim)
        assert claim["n_seeds"] == (10 if claim["name"] in res.HEADLINE_CLAIMS else 5), claim["name"]
        assert claim["bootstrap"] is not None and claim["seeds_for_power"] is not None
        if claim["kind"] == "front":
            assert claim["k_low"] < claim["k_high"] and claim["one_point"]["kl"] == claim["k_high"]
        if claim["name"] in res.HEADLINE_CLAIMS and claim["family"] != "KL":
            assert set(claim["builds"]) >= {"rebuilt"} and claim["fragile"] in (True, False)
    assert len(payload["builds"]["rebuilt"]["meta"]["seeds"]) == 5
    families = {c["family"] for c in payload["claims"]}
    assert families == {"proxy", "held-out sentiment", "KL"}


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

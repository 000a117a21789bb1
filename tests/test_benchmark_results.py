"""benchmarks/README.md's figures are rendered from the committed result files, never typed."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"  # the generated blocks live there, not in README.md


def load_benchmark(name):
    """A script of benchmarks/ as a module (its folder on sys.path, as when it runs)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def notebooks_bench():
    return load_benchmark("notebooks")


@pytest.fixture(scope="module")
def ci_bench():
    return load_benchmark("ci")


def synthetic(seconds):
    return {"date": "2026-01-01", "cores": 2, "torch": "x", "load_average_at_start": 0.1,
            "total_seconds": sum(seconds),
            "notebooks": [{"notebook": f"0{k}_n.ipynb", "seconds": s,
                           "slowest_cells": [{"index": 3, "seconds": s - 1, "what": f"cell {k}"}]}
                          for k, s in enumerate(seconds)]}


def test_readme_notebook_times_are_the_render_of_the_committed_result(notebooks_bench):
    result = json.loads(notebooks_bench.RESULT.read_text())
    assert notebooks_bench.README == BENCHMARKS_README
    assert notebooks_bench.readme_block(BENCHMARKS_README.read_text()) == notebooks_bench.render(
        result, notebooks_bench.load_pairs(), notebooks_bench.load_nbval())
    assert [entry["notebook"] for entry in result["notebooks"]] == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem not in notebooks_bench.SEPARATELY_MEASURED)
    assert result["total_seconds"] == pytest.approx(sum(entry["seconds"] for entry in result["notebooks"]), abs=0.2)


def test_render_sums_the_notebooks_one_after_another_without_a_verdict(notebooks_bench):
    # issue 10's target is on nbval, which runs the notebooks in two lanes: its verdict is the nbval sentence's
    assert notebooks_bench.render(synthetic([100.0, 150.0])).endswith(
        "In all 250 s = 4.2 min one after another (nbval runs them in two lanes side by side: below).")
    over = notebooks_bench.render(synthetic([200.0, 160.0]))
    assert "00 200 s (slowest cell 199 s: `cell 0`)" in over and "In all 360 s = 6.0 min" in over and "met" not in over


def test_the_phase_table_splits_each_notebook_into_phases_that_add_up(notebooks_bench):
    result = synthetic([100.0, 50.0])
    result["notebooks"][0]["cells"] = [{"index": 1, "seconds": 25.0, "what": "import torch"},
                                       {"index": 2, "seconds": 60.0, "what": "sft = ensure_sft_policy(p)"},
                                       {"index": 3, "seconds": 3.0, "what": "from x import evaluate"},  # not opening
                                       {"index": 4, "seconds": 2.0, "what": "plt.plot(y)"}]
    result["notebooks"][1]["cells"] = [{"index": 1, "seconds": 45.5, "what": "plt.plot(x)"}]
    assert notebooks_bench.phases(result["notebooks"][0]) == (60.0, 25.0, 5.0, 10.0)
    assert notebooks_bench.phases(result["notebooks"][1]) == (0.0, 0.0, 45.5, pytest.approx(4.5))
    table = notebooks_bench.render(result).split("\n\n")[1].splitlines()
    assert table[2] == "| 00 | 100 | 60 | 25 | 5 | 10 |" and table[3] == "| 01 | 50 | 0 | 0 | 46 | 4 |"
    assert table[4] == "| all | 150 | 60 | 25 | 50 | 14 |"
    floor = notebooks_bench.render(result).split("\n\n")[2]
    assert floor.startswith("Building and training, imports and kernel starts alone: 100 s, 33% of")
    assert floor.endswith("(50 s).")
    assert "\n\n" not in notebooks_bench.render(synthetic([10.0]))  # results without cells: no table


def test_a_cell_is_named_by_its_ensure_call_else_its_first_line(notebooks_bench):
    assert notebooks_bench.what("import x\n# build\nsft = ensure_sft_policy(p)\nprint(1)") == "sft = ensure_sft_policy(p)"
    assert notebooks_bench.what("# a comment\n\nresult = train(x)\n") == "result = train(x)"


def test_update_readme_rewrites_only_the_block(notebooks_bench, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{notebooks_bench.BEGIN}\nold figures\n{notebooks_bench.END}\nafter\n")
    monkeypatch.setattr(notebooks_bench, "README", readme)
    monkeypatch.setattr(notebooks_bench, "load_pairs", lambda: None)
    monkeypatch.setattr(notebooks_bench, "load_nbval", lambda: None)
    notebooks_bench.update_readme(synthetic([10.0]))
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n")
    assert notebooks_bench.readme_block(text) == notebooks_bench.render(synthetic([10.0]))


def test_the_paired_runs_are_rendered_pair_by_pair_with_their_median(notebooks_bench, tmp_path, monkeypatch):
    monkeypatch.setattr(notebooks_bench, "PAIRS", tmp_path / "pairs.json")
    files = []
    for k, seconds in enumerate(([80.0, 20.0], [100.0, 25.0], [90.0, 30.0], [100.0, 20.0], [70.0, 20.0], [60.0, 40.0])):
        files.append(tmp_path / f"{k}.json")
        files[-1].write_text(json.dumps(synthetic(seconds)))
    pairs = notebooks_bench.write_pairs(files, "abc", "def")
    assert notebooks_bench.load_pairs() == pairs and len(pairs["pairs"]) == 3
    text = notebooks_bench.render(synthetic([10.0]), pairs).split("\n\n")[-1]
    assert "the course (abc) against the one before it (def)" in text
    assert "100 s against 125 s; 120 s against 120 s; 90 s against 100 s; ratios 0.800, 1.000, 0.900" in text
    assert text.endswith("median 0.900; per notebook, median after/before in s: 00 80/100, 01 20/25.")
    with pytest.raises(ValueError, match="two by two"):
        notebooks_bench.write_pairs(files[:3], "abc", "def")
    with pytest.raises(ValueError, match="no result file"):
        notebooks_bench.write_pairs([*files[:1], tmp_path / "absent.json"], "abc", "def")


CI_LOG = """install: 130 s
============================= test session starts ==============================
...
=========== 3 failed, 575 passed, 2 skipped in 517.23s (0:08:37) ===========
total: 661 s
"""


def test_the_ci_log_is_parsed_into_the_figures_the_readme_states(ci_bench):
    parsed = ci_bench.parse_log(CI_LOG)
    assert parsed == {"install_seconds": 130, "pytest_seconds": 517.23, "total_seconds": 661,
                      "outcome": {"failed": 3, "passed": 575, "skipped": 2}}
    with pytest.raises(ValueError, match="summary"):
        ci_bench.parse_log("install: 130 s\n")
    quiet = "x.py ....\n137 passed, 2 warnings in 314.88s (0:05:14)\n"  # -q: no `=` rule
    assert ci_bench.pytest_summary(quiet) == ({"passed": 137, "warnings": 2}, 314.88)
    assert ci_bench.pytest_summary("collected 3 items in 0.5s\n") is None


def test_the_ci_sentence_says_red_and_over_the_limit_from_the_figures(ci_bench):
    result = {"date": "2026-01-01", "commit": "abc1234", "cores": 2, "load_average_at_start": 0.1,
              "returncode": 0, "wall_seconds": 700.0, **ci_bench.parse_log(CI_LOG.replace("3 failed, ", ""))}
    assert "green, 575 passed, 2 skipped in 517 s, 661 s in all (install 130 s), within" in ci_bench.render(result)
    late = dict(result, returncode=1, total_seconds=1021)
    assert "RED (exit 1)" in ci_bench.render(late) and "1021 s in all" in ci_bench.render(late)
    assert "OVER the 17-minute limit" in ci_bench.render(late)
    assert "within the 17-minute limit" in ci_bench.render(dict(result, total_seconds=1020))


def test_readme_ci_time_is_the_render_of_the_committed_result(ci_bench):
    result = json.loads(ci_bench.RESULT.read_text())
    assert ci_bench.README == BENCHMARKS_README
    assert ci_bench.readme_block(BENCHMARKS_README.read_text()) == ci_bench.render(result)
    assert result["outcome"].get("passed", 0) > 0


@pytest.fixture(scope="module")
def measured_table():
    return load_benchmark("measured_table")


def synthetic_step(seconds_1, seconds_2):
    def threads(total, gen):
        return {"step_seconds": total, "matmul_peak_gflops": 130.0, "not_matmul": 0.7, "generated_tokens_per_second": 1.0,
                "between_phases": 0.0, "phases": {"generation": {"wall": gen, "cpu": gen, "gflop": 1.0},
                                                  "backward": {"wall": total - gen, "cpu": total - gen, "gflop": 2.0},
                                                  "EMA": {"wall": 0.001 * total, "cpu": 0.0, "gflop": 0.0}}}
    return {"parameters": 10, "batch": 64, "prompt_tokens": 10, "max_new_tokens": 24, "generated_tokens": 1400,
            "reps": 3, "threads": {"1": threads(seconds_1, 0.25 * seconds_1), "2": threads(seconds_2, 0.5 * seconds_2)}}


def synthetic_trl(size, project_rates, trl_rates):
    rounds = [{"project": {"threads": 1, "seconds_per_step": 1400 / p, "tokens_per_second": p},
               "trl": {"threads": 1, "seconds_per_step": 1536 / t, "tokens_per_second": t}, "ratio": p / t}
              for p, t in zip(project_rates, trl_rates)]
    return {"date": "2026-01-01", "trl": "1.16.0", "size": size, "batch": 64, "prompts": 32, "max_new_tokens": 24,
            "steps": 5, "kl_every": 5, "rounds": rounds, "overall_ratio": sum(project_rates) / sum(trl_rates)}


def test_the_step_rows_are_computed_from_the_phases_and_rounds(measured_table):
    rl_step = {"date": "2026-01-01", "sizes": {"tiny": synthetic_step(0.4, 0.3)}}
    trl = {"vs_trl_tiny.json": synthetic_trl("tiny", [3000.0, 2000.0], [1000.0, 1000.0])}
    text = measured_table.render(rl_step, trl)
    tiny_step = next(line for line in text.splitlines() if line.startswith("| RL step, tiny"))
    assert "backward 75%, generation 25%;" in tiny_step and "EMA" not in tiny_step  # under 2%: left out
    assert "0.4 s on 1 thread, 0.3 s on 2 threads" in tiny_step
    tiny_trl = next(line for line in text.splitlines() if line.startswith("| vs `trl"))
    assert "**2.50x**" in tiny_trl and "(3.00, 2.00 in 2 alternating" in tiny_trl and "target 2.0x: met" in tiny_trl
    assert ("Not measured yet: `sft.py`, `rl_step.py --size gpt2-small`, `rl_step.py --size smol`, "
            "`vs_trl.py --size gpt2-small`, `vs_trl.py --size smol`, `smol_sampler.py`, `workers.py`.") in text
    slow = measured_table.render(None, {"vs_trl_gpt2_small.json": synthetic_trl("gpt2-small", [10.0], [9.0])})
    assert "**1.11x**" in slow and "target 1.2x: NOT met" in slow


def test_the_smol_step_row_reads_the_step_at_the_kl_cadence_against_its_target(measured_table):
    """The smol step is judged at train_warp's cadence: ((k - 1) x without KL + with KL) / k."""
    step = synthetic_step(12.0, 9.0)
    for n, without in (("1", 10.0), ("2", 8.0)):
        at = ((5 - 1) * without + step["threads"][n]["step_seconds"]) / 5
        step["threads"][n].update(step_seconds_without_kl=without, kl_every=5, step_seconds_at_kl_every=at)
    row = next(line for line in measured_table.render({"date": "2026-01-01", "sizes": {"smol": step}}, {}).splitlines()
               if line.startswith("| RL step, smol"))
    assert "8.2 s per step when it is measured every 5 steps; target 10 s: met" in row
    step["threads"]["2"]["step_seconds_at_kl_every"] = 10.5
    step["threads"]["1"]["step_seconds_at_kl_every"] = 11.0
    row = measured_table.render({"date": "2026-01-01", "sizes": {"smol": step}}, {})
    assert "10.5 s per step when it is measured every 5 steps; target 10 s: NOT met" in row


def test_readme_measured_rows_are_the_render_of_the_committed_results(measured_table):
    rl_step, trl, sft, workers, sampler = measured_table.load()
    assert measured_table.README == BENCHMARKS_README
    assert measured_table.readme_block(BENCHMARKS_README.read_text()) == measured_table.render(rl_step, trl, sft, workers,
                                                                                               sampler)
    assert rl_step is not None and set(rl_step["sizes"]) == {"tiny", "gpt2-small", "smol"}
    assert set(trl) == {"vs_trl_tiny.json", "vs_trl_gpt2_small.json", "vs_trl_smol.json"} and sft and workers and sampler
    assert "Not measured yet" not in measured_table.readme_block(BENCHMARKS_README.read_text())


def test_the_sft_and_workers_rows_state_the_target_from_the_figures(measured_table):
    rows = [{"variant": v, "round": 1, "threads": 2} for v in ("now", "before")]
    sft = {"rows": rows, "best_seconds": {"now": 55.0, "before": 110.0}, "heldout_loss": {"now": 5.87, "before": 5.86}}
    assert "target 60 s within 0.03 nats/token: met | 55.0 s (before: 110.0 s)" in measured_table.sft_row(sft)
    worse = dict(sft, heldout_loss={"now": 5.90, "before": 5.86})
    assert "NOT met" in measured_table.sft_row(worse)
    assert "NOT met" in measured_table.sft_row(dict(sft, best_seconds={"now": 61.0, "before": 110.0}))
    workers = {"config": {"rounds": 2, "I": 2, "M": 2, "T": 50},
               "best": {"1": {"command_s": 90.0}, "2": {"command_s": 60.0}},
               "speedup": {"command_s": 1.5, "warp_stage_s": 1.6, "compute_s": 1.8}}
    row = measured_table.workers_row(workers)
    assert "**1.50x**" in row and "**1.80x**" in row and "| 90.0 s vs 60.0 s |" in row


def test_the_cpu_sampler_interpolates_busy_time_between_samples(notebooks_bench):
    sampler = notebooks_bench.CpuSampler()
    sampler.tick = 100
    sampler.samples = [(10.0, 1000), (11.0, 1150), (12.0, 1350)]  # 1.5 then 2.0 cores busy
    assert sampler.core_seconds(10.0, 12.0) == pytest.approx(3.5)
    assert sampler.core_seconds(10.5, 11.5) == pytest.approx(0.75 + 1.0)
    assert sampler.core_seconds(9.0, 11.0) is None  # before the first sample: unknown, not zero


def test_the_core_sentence_bounds_any_schedule_by_core_seconds_over_cores(notebooks_bench):
    result = synthetic([100.0, 50.0])
    result["notebooks"][0].update(core_seconds=180.0, cells=[{"index": 1, "seconds": 90.0, "core_seconds": 175.0,
                                                               "what": "x = ensure_sft_policy(p)"}])
    result["notebooks"][1].update(core_seconds=60.0, cells=[{"index": 1, "seconds": 40.0, "core_seconds": 40.0,
                                                              "what": "import torch"}])
    sentence = notebooks_bench.render(result).split("\n\n")[-1]
    assert "`ensure_` cells 175 core-s over 90 s (1.94 cores busy)" in sentence
    assert "opening imports 40 core-s over 40 s (1.00 cores busy)" in sentence
    assert "kernel starts 25 core-s over 20 s" in sentence
    assert "In all 240 core-seconds" in sentence and "less than 120 s (40% of the target)" in sentence


def test_the_nbval_sentence_gives_the_verdict_of_the_real_command(notebooks_bench):
    nbval = {"date": "2026-01-01", "load_average_at_start": 0.1, "command": "python -m pytest notebooks/",
             "returncode": 0, "wall_seconds": 290.4, "outcome": {"passed": 250}}
    assert notebooks_bench.nbval_sentence(nbval).endswith("green, 250 passed, 290 s = 4.8 min; issue 10's target "
                                                          "of 5 min for nbval of all notebooks: met.")
    assert "NOT met, 20 s over" in notebooks_bench.nbval_sentence(dict(nbval, wall_seconds=320.0))
    failed = notebooks_bench.nbval_sentence(dict(nbval, returncode=1, outcome={"failed": 1, "passed": 249}))
    assert "RED (exit 1), 1 failed, 249 passed" in failed and "NOT met: the run failed" in failed
    assert notebooks_bench.nbval_sentence(nbval) in notebooks_bench.render(synthetic([10.0]), None, nbval)


def test_the_nbval_sentence_adds_the_two_thread_run_and_its_ratio(notebooks_bench):
    nbval = {"date": "2026-01-01", "load_average_at_start": 0.1, "command": "python -m pytest notebooks/",
             "returncode": 0, "wall_seconds": 250.0, "outcome": {"passed": 250}}
    sentence = notebooks_bench.nbval_sentence(nbval, dict(nbval, wall_seconds=450.0, date="2026-01-02"))
    assert sentence.startswith(notebooks_bench.nbval_sentence(nbval))
    assert sentence.endswith("(both lanes' kernels on two threads, 2026-01-02, load average 0.1 at the start; "
                             "[results](results/nbval_lanes_two_threads.json)): 450 s (1.80x).")


@pytest.fixture(scope="module")
def main_command():
    return load_benchmark("main_command")


def test_the_main_command_sentence_gives_the_budget_verdict_from_the_figures(main_command):
    result = {"date": "2026-01-01", "command": "python -m warp_utils run --workers 2", "seconds": 840.0,
              "stages": {"sft_policy": 60.0, "report": 500.4}, "load_average_at_start": 0.2, "cpu": "cpu X",
              "cores": 2, "budget_seconds": 900}
    text = main_command.render(result)
    assert "**14.0 min** (within the 15-minute budget)" in text and "report 500 s" in text and "cpu X" in text
    assert "(OVER the 15-minute budget)" in main_command.render({**result, "seconds": 901.0})


def test_the_peak_memory_is_that_of_the_whole_process_tree_stage_by_stage(main_command, tmp_path):
    """A child that holds 300 MB and a grandchild that holds 200 MB at once, in a stage it names
    by printing `[warp]` after a `[prompts]` stage of nothing: the warp peak counts both."""
    import subprocess
    import sys
    import tempfile

    hold = "x = bytearray({}); import time; time.sleep(2)"
    code = ("import subprocess, sys, time; print('[prompts] ...', flush=True); time.sleep(1); "
            "print('[warp] ...', flush=True); "
            f"p = subprocess.Popen([sys.executable, '-c', {hold.format(200_000_000)!r}]); "
            + hold.format(300_000_000) + "; p.wait()")
    trace = []
    with tempfile.TemporaryFile("w+") as out, open(f"/proc/self/fd/{out.fileno()}") as reader:
        peaks = main_command.peak_tree_memory(subprocess.Popen([sys.executable, "-c", code], stdout=out),
                                              main_command.stage_of(reader), every=0.1, trace=trace)
    assert peaks["warp"] > 500_000_000 and peaks["prompts"] < 200_000_000
    # the trace holds every sample: its largest warp sample is the warp peak, in time order
    assert max(total for _, stage, total in trace if stage == "warp") == peaks["warp"]
    assert [at for at, _, _ in trace] == sorted(at for at, _, _ in trace)
    main_command.write_trace(tmp_path / "trace.csv", trace, trace[0][0])
    lines = (tmp_path / "trace.csv").read_text().splitlines()
    assert lines[0] == "seconds,stage,pss_gb" and len(lines) == len(trace) + 1
    assert lines[1].startswith("0.0,")
    result = {"date": "2026-01-01", "command": "python -m warp_utils run", "seconds": 60.0, "stages": {},
              "load_average_at_start": 0.2, "cpu": "cpu X", "cores": 2, "budget_seconds": 1800, "peak_memory_gb": 5.04,
              "peak_memory_by_stage_gb": {"prompts": 1.0, "warp": 5.04}, "memory_budget_gb": 12}
    assert ("Peak memory of the command's processes together (proportional set sizes, summed): 5.0 GB "
            "(prompts 1.0 GB, warp 5.0 GB); the WARP stage within its 12 GB budget.") in main_command.render(result)
    result["peak_memory_by_stage_gb"]["warp"] = 12.3
    assert "the WARP stage OVER its 12 GB budget" in main_command.render(result)
    assert "(within the 30-minute budget)" in main_command.render(result)  # the time's verdict is its own


@pytest.mark.parametrize("mode", ["main", "committed", "smol"])
def test_benchmarks_readme_main_command_is_the_render_of_the_committed_result(main_command, mode):
    name, block_name, budget, _ = main_command.MODES[mode]
    result_file = BENCHMARKS_README.parent / "results" / name
    if not result_file.is_file():
        pytest.skip(f"no {mode} run measurement committed yet")
    assert main_command.README == BENCHMARKS_README
    result = json.loads(result_file.read_text())
    assert result["budget_seconds"] == budget
    text = main_command.README.read_text()
    block = main_command.readme_blocks.block(text, f"<!-- {block_name}:begin -->", f"<!-- {block_name}:end -->")
    assert block == main_command.render(result)


def test_the_learner_readme_says_the_smol_runs_time_from_its_result(main_command):
    result = {"date": "2026-01-01", "seconds": 1500.0, "peak_memory_gb": 7.6}
    assert main_command.learner_sentence(result).startswith(
        "Measured here (2 CPU cores, 2026-01-01): about 25 minutes from nothing built, 8 GB of memory at most.")
    result_file = BENCHMARKS_README.parent / "results" / "smol_run.json"
    if not result_file.is_file():
        pytest.skip("no smol run measurement committed yet")
    block = main_command.readme_blocks.block(main_command.LEARNER_README.read_text(), main_command.SMOL_BEGIN,
                                             main_command.SMOL_END)
    assert block == main_command.learner_sentence(json.loads(result_file.read_text()))


def test_the_sampler_row_judges_agreement_and_logits_against_their_targets(measured_table):
    result = {"date": "2026-01-01", "prompts": 16, "new_tokens": 32, "threads": 2, "token_agreement": 0.995,
              "max_logit_difference": 3.2e-5, "generate_seconds": 5.0, "lean_seconds": 4.0}
    row = next(line for line in measured_table.render(None, {}, sampler=result).splitlines() if "lean Llama" in line)
    assert "99.5% of sampled tokens equal; largest logit difference 3.2e-05" in row and ": met" in row
    for change in ({"token_agreement": 0.98}, {"max_logit_difference": 2e-4}, {"max_logit_difference": None}):
        row = measured_table.render(None, {}, sampler={**result, **change})
        assert "NOT met" in row
    row = measured_table.render(None, {}, sampler={**result, "max_logit_difference": 1.1e-4, "float32_floor": 1.2e-4})
    assert "largest logit difference 1.1e-04 (`generate`'s own float32 logits are 1.2e-04 from float64's)" in row
    assert "NOT met" in row  # the floor explains, it does not move the target
    row = measured_table.render(None, {}, sampler={**result, "max_logit_difference": 1.1e-4, "float32_floor": 1.2e-4,
                                                   "generate_matmuls_logit_difference": 1.9e-6})
    assert ("largest logit difference 1.1e-04 (`generate`'s own float32 logits are 1.2e-04 from float64's; "
            "the same loop with `generate`'s matmuls: 1.9e-06)") in row
    assert "NOT met" in row  # the diagnosis explains, it does not move the target either


def test_the_learner_readme_says_the_main_commands_time_from_its_result(main_command):
    assert main_command.learner_main_sentence({"date": "2026-01-01", "seconds": 861.0}).startswith(
        "The first of the two commands took about 14 minutes here from nothing built (2 CPU cores, measured 2026-01-01)")
    result = json.loads((BENCHMARKS_README.parent / "results" / "main_command.json").read_text())
    block = main_command.readme_blocks.block(main_command.LEARNER_README.read_text(), main_command.MAIN_BEGIN,
                                             main_command.MAIN_END)
    assert block == main_command.learner_main_sentence(result)

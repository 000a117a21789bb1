"""The README's benchmark figures are rendered from the committed result files, never typed."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    assert notebooks_bench.readme_block((ROOT / "README.md").read_text()) == notebooks_bench.render(result, notebooks_bench.load_pairs())
    assert [entry["notebook"] for entry in result["notebooks"]] == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert result["total_seconds"] == pytest.approx(sum(entry["seconds"] for entry in result["notebooks"]), abs=0.2)


def test_render_states_the_target_verdict_from_the_total(notebooks_bench):
    assert notebooks_bench.render(synthetic([100.0, 150.0])).endswith("In all 250 s = 4.2 min; issue 10's target of 5 min: met.")
    over = notebooks_bench.render(synthetic([200.0, 160.0]))
    assert "00 200 s (slowest cell 199 s: `cell 0`)" in over and over.endswith("NOT met, 60 s over.")


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
    assert "course (abc) against the one before it (def)" in text
    assert "100 s against 125 s; 120 s against 120 s; 90 s against 100 s; ratios 0.800, 1.000, 0.900" in text
    assert text.endswith("median 0.900; per notebook, median after/before in s: 00 80/100, 01 20/25.")
    with pytest.raises(SystemExit, match="two by two"):
        notebooks_bench.write_pairs(files[:3], "abc", "def")


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


def test_the_ci_sentence_says_red_and_over_the_limit_from_the_figures(ci_bench):
    result = {"date": "2026-01-01", "commit": "abc1234", "cores": 2, "load_average_at_start": 0.1,
              "returncode": 0, "wall_seconds": 700.0, **ci_bench.parse_log(CI_LOG.replace("3 failed, ", ""))}
    assert "green, 575 passed, 2 skipped in 517 s, 661 s in all (install 130 s), within" in ci_bench.render(result)
    late = dict(result, returncode=1, total_seconds=901)
    assert "RED (exit 1)" in ci_bench.render(late) and "901 s in all" in ci_bench.render(late)
    assert "OVER the 15-minute limit" in ci_bench.render(late)


def test_readme_ci_time_is_the_render_of_the_committed_result(ci_bench):
    result = json.loads(ci_bench.RESULT.read_text())
    assert ci_bench.readme_block((ROOT / "README.md").read_text()) == ci_bench.render(result)
    assert result["outcome"].get("passed", 0) > 0

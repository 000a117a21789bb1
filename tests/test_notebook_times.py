"""Each notebook's run time is rendered from the notebook benchmark's result file, never typed."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("notebook_times", ROOT / "tools" / "notebook_times.py")
times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(times)


@pytest.mark.parametrize(("seconds", "said"), [(None, "not measured yet"), (8.4, "seconds"), (35.0, "under a minute"),
                                               (74.0, "about 1 min"), (95.0, "about 2 min"), (321.0, "about 5 min")])
def test_a_run_time_is_said_rounded(seconds, said):
    assert times.phrase(seconds) == said


def test_render_rewrites_only_the_marked_run_time():
    text = "# **Time**: <!-- run -->typed by hand<!-- /run --> to run; 10 min to read.\nprint(1)\n"
    assert times.render(text, 95.0) == "# **Time**: <!-- run -->about 2 min<!-- /run --> to run; 10 min to read.\nprint(1)\n"
    with pytest.raises(ValueError, match="exactly one"):
        times.render("no marker", 1.0)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.py")), ids=lambda p: p.name)
def test_every_notebook_says_its_measured_run_time(path):
    text = path.read_text()
    assert times.render(text, times.measured().get(path.stem)) == text


def test_the_separately_measured_notebooks_are_those_the_notebook_benchmark_skips(monkeypatch):
    # the script imports its neighbours (ci.py) as when it runs: its folder on sys.path, whatever
    # test ran before this one in the same process
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("notebooks_bench", ROOT / "benchmarks" / "notebooks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert set(times.SEPARATELY_MEASURED) == set(bench.SEPARATELY_MEASURED)

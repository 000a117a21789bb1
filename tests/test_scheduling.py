"""The root conftest.py's pytest-xdist rules: which tests form the course's scope or its two lanes,
and when the workers keep to one torch thread (another scope or lane shares the cores) or not (one
lane of the course runs alone)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_course_only_is_true_for_notebook_and_browser_paths_only(monkeypatch):
    conftest = root_conftest()
    monkeypatch.chdir(ROOT)
    assert conftest.course_only(["notebooks"], ROOT)
    assert conftest.course_only(["notebooks/", "-x"], ROOT)
    assert conftest.course_only(["notebooks/04_warp_training.ipynb", "tests/test_browser.py::test_x"], ROOT)
    assert not conftest.course_only([], ROOT)  # the testpaths: everything
    assert not conftest.course_only(["tests", "notebooks"], ROOT)
    assert not conftest.course_only(["notebooks", "tests/test_rl.py"], ROOT)
    assert not conftest.course_only(["."], ROOT)
    monkeypatch.chdir(ROOT / "notebooks")
    assert conftest.course_only(["."], ROOT) and conftest.course_only(["00_setup.ipynb"], ROOT)


PROBE = '''
import os
from pathlib import Path

def test_threads():  # a worker's stdout does not reach the controller: the value goes to a file
    Path(__file__).with_suffix(".omp").write_text(os.environ.get("OMP_NUM_THREADS", "unset"))
'''


def run_probe(tmp_path, *where):
    """A worker's OMP_NUM_THREADS under `pytest -n 2` with the repository's conftest, for a probe test
    placed at `where` (relative to a copy of the root conftest)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "notebooks").mkdir()
    probe = tmp_path.joinpath(*where)
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "WARP_PYTEST_COURSE_ONLY")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider",
                          str(probe.relative_to(tmp_path))], check=False, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return probe.with_suffix(".omp").read_text()


def test_workers_keep_one_thread_unless_one_lane_of_the_course_runs_alone(tmp_path):
    assert run_probe(tmp_path / "a", "tests", "test_probe.py") == "1"
    assert run_probe(tmp_path / "b", "notebooks", "test_browser.py") == "unset"


def test_course_mode_puts_notebooks_in_two_lanes_only_when_both_are_selected(monkeypatch):
    conftest = root_conftest()
    monkeypatch.chdir(ROOT)
    assert conftest.course_mode(["notebooks/"], ROOT) == "lanes"
    assert conftest.course_mode(["notebooks/00_setup.ipynb", "notebooks/05_evaluation.ipynb"], ROOT) == "lanes"
    assert conftest.course_mode(["notebooks/04_warp_training.ipynb"], ROOT) == "lane"
    assert conftest.course_mode(["notebooks/01_reward_model.ipynb", "notebooks/05_evaluation.ipynb"], ROOT) == "lane"
    assert conftest.course_mode(["tests", "notebooks"], ROOT) == ""
    assert {conftest.lane(f"notebooks/{name}::Cell 0") for name in ("00_setup.ipynb", "03b_appendix_lemmas.ipynb")} \
        == {"course-a", "course-b"}


def test_every_notebook_has_a_lane_and_the_lanes_are_the_documented_ones():
    # lane b: what needs nothing from 00's chain first (01, 03, 03a, 03b), then 05, then 07 (its own
    # profile); lane a: the chain
    conftest = root_conftest()
    lanes = {path.name: conftest.lane(f"notebooks/{path.name}::Cell 0")
             for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    assert {name for name, lane in lanes.items() if lane == "course-b"} == {
        "01_reward_model.ipynb", "03_objective_and_front.ipynb", "03a_weight_space.ipynb",
        "03b_appendix_lemmas.ipynb", "05_evaluation.ipynb", "07_real_text.ipynb"}
    assert {name[:3] for name, lane in lanes.items() if lane == "course-a"} == {"00_", "02_", "04_", "06_"}


def notebook(cells: list[str]) -> str:
    import nbformat

    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]))


def test_the_two_lanes_run_side_by_side_on_one_thread_each(tmp_path):
    """Real xdist workers and nbval kernels: a lane-a and a lane-b notebook, each waiting (up to
    60 s) for the other's first cell to have run, so they pass only when they run at the same time."""
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for mine, other in (("00_a", "01_b"), ("01_b", "00_a")):
        (folder / f"{mine}.ipynb").write_text(notebook([
            f"import os, pathlib, time\npathlib.Path('{mine}.started').write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))",
            (f"deadline = time.monotonic() + 60\nwhile not pathlib.Path('{other}.started').exists() and time.monotonic() < deadline:\n"
             f"    time.sleep(0.1)\nassert pathlib.Path('{other}.started').exists()"),
        ]))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "WARP_PYTEST_COURSE_ONLY")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-current-env", "notebooks/"], check=False, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [(folder / f"{name}.started").read_text() for name in ("00_a", "01_b")] == ["1", "1"]

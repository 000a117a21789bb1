"""The root conftest.py's pytest-xdist rules: which tests form the course's scope, and when the
workers keep to one torch thread (another scope may share the cores) or not (only the course runs)."""

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


def test_workers_keep_one_thread_unless_only_the_course_runs(tmp_path):
    assert run_probe(tmp_path / "a", "tests", "test_probe.py") == "1"
    assert run_probe(tmp_path / "b", "notebooks", "test_browser.py") == "unset"

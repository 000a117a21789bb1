"""pytest-xdist scheduling for the whole repository (here, at the root, so that it applies to
`pytest notebooks/...` as well as to `pytest`).

`pytest` (everything): the notebooks (nbval: every cell is a test, and a notebook's cells share one
kernel) and the browser tests form one scope that a single worker runs in collection order: the
notebooks build and reuse one data/ folder (00 before 04, 04 before 05 and 06), and the browser
tests that reuse their artifacts run last. Every other test module is a scope of its own, spread
over the other workers; those tests build their artifacts under tmp folders.

`pytest notebooks/` (the course only, nothing else to share the cores with): the notebooks run in
two LANES side by side, one per worker, each in collection order. A notebook that needs an
artifact the other lane is building waits for it (artifacts.build_once's lock), then loads it.
"""

import os
from pathlib import Path

import pytest

COURSE_SCOPE = "course"


COURSE_ONLY = "WARP_PYTEST_COURSE_ONLY"  # set by the controller, inherited by the workers it starts
# The second lane: the notebooks that need nothing from 00's chain first (01, 03, 03a, 03b), then
# 05, which waits for 00's SFT policy and trains or loads 04's run, then 07 (its own profile). Lane a: 00 -> 02 -> 04 -> 06
# and the browser tests. Measured: benchmarks/results/notebooks_nbval.json.
LANE_B = ("01_", "03_", "03a_", "03b_", "05_", "07_")


def pytest_configure(config):
    # Notebook 07 on a tiny random Llama instead of SmolLM2 (warp_utils.course.smol): about a
    # minute instead of the real run's tens of minutes; kernels and workers inherit it
    os.environ.setdefault("WARP_SMOL_FIXTURE", "1")
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        os.environ[COURSE_ONLY] = course_mode(config.args, config.rootpath)
        return
    # Two workers share the cores: each process and what it starts (notebook kernels, CLI
    # subprocesses, training workers) keeps to one torch thread. Measured in CI: notebook 00's
    # SFT pre-training on 2 threads beside a busy worker took 358 s, ~4x its 1-thread time; the
    # two lanes with kernels on 2 threads: benchmarks/results/nbval_lanes_two_threads.json.
    # Only a lone lane (`pytest notebooks/04_warp_training.ipynb`) uses every core, as in JupyterLab.
    if os.environ.get(COURSE_ONLY) != "lane":
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def _in_course(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.endswith((".ipynb", "test_browser.py"))


def path_args(args: list[str]) -> list[str]:
    """The command line's test paths, without options or ::node suffixes."""
    return [arg.split("::", 1)[0] for arg in args if not arg.startswith("-")]


def course_only(args: list[str], rootpath) -> bool:
    """Whether the command line selects course tests only: every path argument is a notebook,
    the notebooks/ folder (or inside it) or the browser tests. No path argument means the
    configured testpaths, i.e. everything."""
    notebooks = (Path(rootpath) / "notebooks").resolve()
    paths = path_args(args)
    if not paths:
        return False
    for path in paths:
        resolved = Path(path).resolve()
        if not (_in_course(path) or resolved == notebooks or notebooks in resolved.parents):
            return False
    return True


def lane(nodeid: str) -> str:
    name = Path(nodeid.split("::", 1)[0]).name
    return "course-b" if name.startswith(LANE_B) else "course-a"


def course_mode(args: list[str], rootpath) -> str:
    """"lanes" when the command line selects course tests only, from both lanes; "lane" when only
    one lane's; "" when anything else is selected (the course is then one scope beside the rest)."""
    if not course_only(args, rootpath):
        return ""
    notebooks = []
    for path in map(Path, path_args(args)):
        notebooks += [path] if path.suffix == ".ipynb" else sorted(path.resolve().glob("**/*.ipynb"))
    return "lanes" if len({lane(str(path)) for path in notebooks}) > 1 else "lane"


@pytest.hookimpl(optionalhook=True)  # known only when pytest-xdist is installed and enabled
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if not _in_course(nodeid):
                return super()._split_scope(nodeid)
            return lane(nodeid) if os.environ.get(COURSE_ONLY) == "lanes" else COURSE_SCOPE

    return CourseScheduling(config, log)

"""pytest-xdist scheduling for the whole repository (here, at the root, so that it applies to
`pytest notebooks/...` as well as to `pytest`).

The notebooks (nbval: every cell is a test, and a notebook's cells share one kernel) and the browser
tests form one scope that a single worker runs in collection order: the notebooks build and reuse
one data/ folder (00 before 04, 04 before 05 and 06), and the browser tests that reuse their
artifacts run last. Every other test module is a scope of its own, spread over the other workers;
those tests build their artifacts under tmp folders.
"""

import os
from pathlib import Path

import pytest

COURSE_SCOPE = "course"


COURSE_ONLY = "WARP_PYTEST_COURSE_ONLY"  # set by the controller, inherited by the workers it starts


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        os.environ[COURSE_ONLY] = "1" if course_only(config.args, config.rootpath) else ""
        return
    # Two workers share the cores: each process and what it starts (notebook kernels, CLI
    # subprocesses, training workers) keeps to one torch thread. Measured in CI: notebook 00's
    # SFT pre-training on 2 threads beside a busy worker took 358 s, ~4x its 1-thread time.
    # Not when only the course runs (`pytest notebooks/`): its one scope keeps one worker busy and
    # the other idle, so the kernels use every core, as in JupyterLab.
    if not os.environ.get(COURSE_ONLY):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def _in_course(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.endswith((".ipynb", "test_browser.py"))


def course_only(args: list[str], rootpath) -> bool:
    """Whether the command line selects course tests only: every path argument is a notebook,
    the notebooks/ folder (or inside it) or the browser tests. No path argument means the
    configured testpaths, i.e. everything."""
    notebooks = (Path(rootpath) / "notebooks").resolve()
    paths = [arg.split("::", 1)[0] for arg in args if not arg.startswith("-")]
    if not paths:
        return False
    for path in paths:
        resolved = Path(path).resolve()
        if not (_in_course(path) or resolved == notebooks or notebooks in resolved.parents):
            return False
    return True


@pytest.hookimpl(optionalhook=True)  # known only when pytest-xdist is installed and enabled
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return COURSE_SCOPE if _in_course(nodeid) else super()._split_scope(nodeid)

    return CourseScheduling(config, log)

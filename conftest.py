"""pytest-xdist scheduling for the whole repository (here, at the root, so that it applies to
`pytest notebooks/...` as well as to `pytest`).

The notebooks (nbval: every cell is a test, and a notebook's cells share one kernel) and the browser
tests form one scope that a single worker runs in collection order: the notebooks build and reuse
one data/ folder (00 before 04, 04 before 05 and 06), and the browser tests that reuse their
artifacts run last. Every other test module is a scope of its own, spread over the other workers;
those tests build their artifacts under tmp folders.
"""

COURSE_SCOPE = "course"


def _in_course(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.endswith(".ipynb") or path.endswith("test_browser.py")


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return COURSE_SCOPE if _in_course(nodeid) else super()._split_scope(nodeid)

    return CourseScheduling(config, log)

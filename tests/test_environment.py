import importlib.util

import pytest

from warp_utils.course import environment


def test_every_required_package_is_found_here():
    assert environment.missing_packages() == []
    environment.check_environment()


def test_a_missing_package_is_named_with_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(environment.importlib.util, "find_spec",
                        lambda name: None if name in ("trl", "scipy") else real(name))
    with pytest.raises(ImportError, match=r"missing packages: trl, scipy\. .*pip install -e \."):
        environment.check_environment()


def test_the_requirements_are_the_project_dependencies():
    """REQUIRED lists pyproject's run-time dependencies: a new one cannot be forgotten here."""
    import re
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    names = {re.split(r"[<>=!~ \[]", dep)[0].lower() for dep in pyproject["project"]["dependencies"]}
    assert names == {pip.lower() for pip in environment.REQUIRED.values()}

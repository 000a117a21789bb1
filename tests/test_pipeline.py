import dataclasses

import pytest

from warp_utils.config import get_profile
from warp_utils.pipeline import run_name, warp_run_dir


def test_default_config_trains_into_warp_and_others_into_warp_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    profile = get_profile("tiny")
    assert warp_run_dir(profile, profile.warp) == tmp_path / "artifacts" / "tiny" / "warp"
    study = dataclasses.replace(profile.warp, mu=0.05, I=1)
    assert run_name(profile.warp, study) == "I=1_mu=0.05"
    assert warp_run_dir(profile, study) == tmp_path / "artifacts" / "tiny" / "warp_runs" / "I=1_mu=0.05"
    named = warp_run_dir(profile, profile.warp, name="baseline")
    assert named == tmp_path / "artifacts" / "tiny" / "warp_runs" / "baseline"  # never over warp/
    with pytest.raises(ValueError, match="name"):
        warp_run_dir(profile, study, name="../warp")

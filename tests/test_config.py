import math

import pytest

from warp_utils.config import PROFILES, WarpConfig, artifacts_dir, config_hash
from warp_utils.execution.overrides import get_profile


def test_profile_selection_order(monkeypatch):
    monkeypatch.delenv("WARP_PROFILE", raising=False)
    assert get_profile().name == "tiny"  # the default, always
    monkeypatch.setenv("WARP_PROFILE", "full")
    assert get_profile().name == "full"  # the environment beats the default
    assert get_profile("tiny").name == "tiny"  # an explicit argument beats the environment


def test_unknown_profile_lists_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="full.*tiny"):
        get_profile("huge")
    monkeypatch.setenv("WARP_PROFILE", "gpu")
    with pytest.raises(ValueError, match="profile"):
        get_profile()


def test_full_profile_has_the_seed_report_settings():
    full = PROFILES["full"]
    assert full.policy.pretrained == "lvwerra/gpt2-imdb"
    assert full.reward.pretrained == "distilbert/distilbert-base-cased"
    assert (full.warp.I, full.warp.M, full.warp.T, full.warp.batch_size) == (2, 2, 100, 64)
    assert (full.warp.mu, full.warp.eta, full.warp.beta, full.warp.lr) == (0.01, 0.5, 0.1, 1e-5)
    assert full.data.prompt_tokens + full.sampling.max_new_tokens == 64
    assert full.sampling.temperature == 0.7 and full.sampling.top_k == 0


def test_artifacts_dir_comes_from_the_package_or_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv("WARP_DATA_ROOT", raising=False)
    default = artifacts_dir(get_profile("tiny"))
    assert default.parts[-3:] == ("data", "artifacts", "tiny")
    assert (default.parents[2] / "warp_utils" / "config.py").is_file()  # the repo root, not the cwd
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    assert artifacts_dir(get_profile("full")) == tmp_path / "artifacts" / "full"


def test_config_hash_changes_with_any_field():
    base = WarpConfig()
    assert config_hash(base) == config_hash(WarpConfig())
    assert config_hash(base) != config_hash(WarpConfig(mu=0.05))
    assert config_hash(base) != config_hash(WarpConfig(seed=1))


@pytest.mark.parametrize(
    "field, value",
    [("mu", -0.1), ("mu", 1.5), ("mu", math.nan), ("eta", 1.01), ("eta", -1e-9), ("beta", -0.1),
     ("beta", math.inf), ("lr", 0.0), ("lr", -1e-5), ("I", 0), ("M", 0), ("T", 0), ("batch_size", 0),
     ("T", 2.5), ("baseline", "ppo")],
)
def test_warp_config_rejects_out_of_range_values(field, value):
    with pytest.raises(ValueError, match=field):
        WarpConfig(**{field: value})


def test_warp_config_accepts_the_edges():
    WarpConfig(mu=0.0, eta=0.0, beta=0.0)  # mu = 0: the anchor stays at theta_init (KL-to-SFT)
    WarpConfig(mu=1.0, eta=1.0, I=1, M=1, T=1, batch_size=1)


def test_shown_path_is_relative_to_the_data_root(tmp_path, monkeypatch):
    from warp_utils.config import shown_path

    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path / "data"))
    assert shown_path(tmp_path / "data" / "artifacts" / "tiny" / "warp") == "artifacts/tiny/warp"
    assert shown_path(tmp_path / "elsewhere") == str((tmp_path / "elsewhere").resolve())

"""--set SECTION.FIELD=VALUE and $WARP_SET: typed, validated, isolated in their own folders."""

import dataclasses
import subprocess
import sys

import pytest

from warp_utils.core import warp
from warp_utils.store import warp_runs
from warp_utils.cli import main
from warp_utils.config import artifacts_dir
from warp_utils.execution.overrides import get_profile
from warp_utils.execution.overrides import with_overrides
from warp_utils.execution.runtime import Components, Execution


def test_each_field_is_parsed_to_its_type():
    profile = get_profile("tiny", ["warp.T=3", "reward.epochs=0.25", "warp.max_grad_norm=1",
                                   "data.num_train_prompts=None", "sampling.do_sample=false", "warp.baseline=none"])
    assert (profile.warp.T, profile.reward.epochs, profile.warp.max_grad_norm) == (3, 0.25, 1.0)
    assert type(profile.warp.T) is int and type(profile.warp.max_grad_norm) is float
    assert profile.data.num_train_prompts is None and profile.sampling.do_sample is False
    assert profile.warp.baseline == "none"  # a str field keeps the text "none"


@pytest.mark.parametrize("assignment, message", [
    ("warp.mu=1.5", "warp.mu must be in [0, 1], got 1.5"),
    ("warp.T=two", "warp.T must be int, got 'two'"),
    ("model.T=2", "unknown section 'model'"),
    ("warp.steps=2", "--set warp.steps: unknown field"),
    ("warp.T", "--set expects SECTION.FIELD=VALUE"),
    ("sampling.temperature=0", "sampling.temperature must be a finite number > 0"),
])
def test_a_bad_override_exits_2_with_one_line_naming_it(assignment, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    assert main(["run", "--set", assignment]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing built


def test_overrides_go_to_their_own_folder_named_by_the_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path))
    default = get_profile("tiny")
    smoke = get_profile("tiny", ["warp.T=2"])
    other = get_profile("tiny", ["warp.T=3"])
    assert default.name == "tiny" and smoke.name.startswith("tiny-set-")
    assert len({artifacts_dir(p) for p in (default, smoke, other)}) == 3
    assert get_profile("tiny", ["warp.T=2"]).name == smoke.name  # stable
    assert get_profile("tiny", ["warp.T=50"]).name == "tiny"  # the default value changes nothing
    assert with_overrides(smoke, ["warp.T=3"]).name == other.name  # re-derived from the base name


def test_warp_set_environment_variable_reaches_get_profile(monkeypatch):
    monkeypatch.setenv("WARP_SET", "warp.T=2 reward.epochs=0.1")
    profile = get_profile("tiny")
    assert (profile.warp.T, profile.reward.epochs) == (2, 0.1) and profile.name.startswith("tiny-set-")
    monkeypatch.setenv("WARP_SET", "warp.T=0")
    with pytest.raises(ValueError, match="warp.T must be an integer >= 1"):
        get_profile("tiny")


def test_train_flags_are_the_warp_config_fields():
    done = subprocess.run([sys.executable, "-m", "warp_utils", "train", "--help"], capture_output=True, text=True)
    for field in dataclasses.fields(warp.WarpConfig):
        assert "--" + field.name.replace("_", "-") + " " in done.stdout, field.name
    assert "EMA update rate" in done.stdout  # help from the field's comment
    assert "--no-reuse" in done.stdout and "--workers" in done.stdout


def test_ctrl_c_prints_one_line_and_exits_130(monkeypatch, capsys):
    from warp_utils import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train", interrupted)  # parser() binds the handler when main runs
    assert main(["train"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted; run the same command to resume"


def test_execution_settings_change_no_hash(tmp_path, monkeypatch):
    """Threads, progress and cadences are outside every hash: a run made with others is reused."""
    from test_warp import CORPUS, SAMPLING, config, trained_runs, vowel_reward
    from warp_utils.inputs.models import tiny_gpt2, train_policy_tokenizer
    from warp_utils.config import PolicyConfig

    tokenizer = train_policy_tokenizer(CORPUS, vocab_size=300)
    policy = tiny_gpt2(PolicyConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32), tokenizer).eval()
    prompts = [tokenizer(text)["input_ids"][:3] for text in CORPUS[:4]]
    cfg = config(I=1, M=1, T=3)
    first = Execution(checkpoint_every=1, kl_every=2, progress_bars=False, threads=1)
    warp_runs.train_warp(cfg, Components(policy, tokenizer, vowel_reward, prompts, SAMPLING, first), tmp_path)
    trained = trained_runs(monkeypatch)
    warp_runs.train_warp(cfg, Components(policy, tokenizer, vowel_reward, prompts, SAMPLING, Execution()), tmp_path)
    assert trained == []

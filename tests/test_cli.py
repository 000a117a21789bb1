import subprocess
import sys

import pytest

from warp_utils.cli import main


@pytest.mark.parametrize("flags, message", [(["--mu", "1.5"], "mu must be in [0, 1]"),
                                            (["--T", "0"], "T must be an integer >= 1"),
                                            (["--baseline", "ppo"], "baseline must be one of")])
def test_bad_train_flag_prints_the_message_and_exits_2(flags, message, capsys):
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_flag_from_the_shell_has_no_traceback():
    done = subprocess.run([sys.executable, "-m", "warp_utils", "train", "--eta", "-0.5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "eta must be in [0, 1]" in done.stderr and "Traceback" not in done.stderr


def test_components_follow_the_execution_device(monkeypatch):
    """Every model of a run lives on Execution.device (resolved: cuda when available, else cpu)."""
    import torch

    from warp_utils.execution.runtime import Components, Execution

    class Scorer:
        model = torch.nn.Linear(2, 1)

    moved = []
    policy = torch.nn.Linear(2, 2)
    monkeypatch.setattr(torch.nn.Linear, "to", lambda self, device: moved.append((self, device)) or self)
    components = Components(policy, None, Scorer(), [[1]], execution=Execution(device=None)).with_device()
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert components.execution.device == expected
    assert moved == [(policy, expected), (Scorer.model, expected)]

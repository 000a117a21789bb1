"""The full profile, exercised offline: its hub-loading path against a locally built hub cache
(tests/hub_cache.py), its values against the seed report, its failure without the hub, and the
device / mixed-precision policy (warp_utils/execution/device.py) on CPU."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_cache import POLICY_REPO, REWARD_REPO, hub_cache_fixture, repo_folder_name  # noqa: F401 (fixture)
from huggingface_hub import try_to_load_from_cache

from warp_utils.config import PROFILES
from warp_utils.execution.overrides import get_profile
from warp_utils.execution import device as devices
from warp_utils.inputs.hub import check_hub_available, hub_error_message

REPO = Path(__file__).resolve().parent.parent
SEED_REPORT = REPO.parent / "shared" / "reference" / "seed-report-ru.md"


def offline_env(hub_cache_dir, data_root) -> dict:
    """A subprocess environment as on an offline machine whose hub cache is `hub_cache_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "WARP_SET", "WARP_PROFILE"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_CACHE=str(hub_cache_dir), HF_HOME=str(Path(hub_cache_dir).parent),
               WARP_DATA_ROOT=str(data_root), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


# ----------------------------------------------------------------------------- the hub cache


@pytest.mark.parametrize("repo_id", [POLICY_REPO, REWARD_REPO])
def test_hub_cache_has_the_layout_huggingface_hub_reads(hub_cache, repo_id):
    repo = hub_cache / repo_folder_name(repo_id)
    commit = (repo / "refs" / "main").read_text()
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=hub_cache)
    assert found == str(repo / "snapshots" / commit / "config.json")
    weights = repo / "snapshots" / commit / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent == (repo / "blobs").resolve()
    import hashlib  # an LFS blob is named by the sha256 of its content

    assert weights.resolve().name == hashlib.sha256(weights.read_bytes()).hexdigest()


RESOLVE = r"""
import json, tempfile
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from warp_utils.execution.overrides import get_profile
from warp_utils.inputs.models import _download_policy, load_policy
out = {}
model = AutoModelForCausalLM.from_pretrained("lvwerra/gpt2-imdb")
tokenizer = AutoTokenizer.from_pretrained("lvwerra/gpt2-imdb")
out["policy"] = [type(model).__name__, tokenizer.eos_token, tokenizer.pad_token, len(tokenizer) == model.config.vocab_size]
config = AutoConfig.from_pretrained("distilbert/distilbert-base-cased")
tok = AutoTokenizer.from_pretrained("distilbert/distilbert-base-cased")
out["reward_base"] = [config.architectures, config.max_position_embeddings]
out["reward_tokens"] = tok.convert_ids_to_tokens(tok("Great Movie")["input_ids"])
out["reward_specials"] = [tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token, tok.mask_token]
head = AutoModelForSequenceClassification.from_pretrained("distilbert/distilbert-base-cased", num_labels=1)
out["reward_head"] = [type(head).__name__, head.config.num_labels]
with tempfile.TemporaryDirectory() as folder:  # the product's download path of the full profile
    _download_policy(get_profile("full"), folder)
    policy, policy_tokenizer = load_policy(folder)
    out["download"] = [policy.config.n_layer, policy_tokenizer.pad_token, policy_tokenizer.padding_side]
print("RESULT " + json.dumps(out))
"""


def test_full_profile_models_resolve_offline_from_the_cache(hub_cache, tmp_path):
    done = subprocess.run([sys.executable, "-c", RESOLVE], check=False, capture_output=True, text=True,
                          timeout=300, env=offline_env(hub_cache, tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert out["policy"] == ["GPT2LMHeadModel", "<|endoftext|>", None, True]  # GPT-2: no pad token
    assert out["reward_base"] == [["DistilBertForMaskedLM"], 512]  # the base checkpoint, not a classifier
    assert out["reward_tokens"][0] == "[CLS]" and out["reward_tokens"][-1] == "[SEP]"
    assert "Great" in out["reward_tokens"] or out["reward_tokens"][1].startswith("G")  # cased
    assert out["reward_specials"] == ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"]
    assert out["reward_head"] == ["DistilBertForSequenceClassification", 1]
    assert out["download"] == [2, "<|endoftext|>", "left"]  # the stand-in, pad = eos


# ----------------------------------------------------------------------------- the values


def seed_report_settings() -> dict:
    """The settings written in the seed report: its YAML training config and its RewardConfig."""
    text = SEED_REPORT.read_text()
    import yaml

    training = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.DOTALL).group(1))
    call = re.search(r"reward_config = (RewardConfig\(.*?\n\))", text, re.DOTALL).group(1)
    reward = {k.arg: ast.literal_eval(k.value) for k in ast.parse(call).body[0].value.keywords}
    return {**training, "reward": reward}


@pytest.mark.skipif(not SEED_REPORT.is_file(), reason=f"no seed report at {SEED_REPORT}")
def test_full_profile_values_are_the_seed_reports(monkeypatch):
    monkeypatch.delenv("WARP_SET", raising=False)
    report, full = seed_report_settings(), get_profile("full")
    assert full == PROFILES["full"]
    warp, generation, training = report["warp"], report["generation_config"], report["training"]
    assert (full.warp.I, full.warp.M, full.warp.T) == (warp["I"], warp["M"], warp["T"])
    assert (full.warp.mu, full.warp.eta, full.warp.beta) == (warp["mu"], warp["nu"], warp["beta"])
    assert (full.warp.lr, full.warp.batch_size, full.warp.seed) == (float(training["lr"]), training["batch_size"],
                                                                     training["seed"])
    assert full.data.prompt_tokens + full.sampling.max_new_tokens == generation["max_length"]
    assert full.data.prompt_tokens == 10  # "10 tokens of each sample" (the report's prose)
    assert (full.sampling.temperature, full.sampling.top_k, full.sampling.top_p, full.sampling.do_sample) == (
        generation["temperature"], generation["top_k"], generation["top_p"], generation["do_sample"])
    reward = report["reward"]
    assert (full.reward.epochs, full.reward.batch_size, full.reward.lr) == (
        reward["num_train_epochs"], reward["per_device_train_batch_size"], reward["learning_rate"])
    assert (full.reward.warmup_steps, full.reward.weight_decay, full.reward.max_length) == (
        reward["warmup_steps"], reward["weight_decay"], reward["max_length"])
    assert full.reward.num_pairs is None  # 12,500 pairs: every review of the smaller class


# ----------------------------------------------------------------------------- without the hub


def test_hub_error_names_the_model_and_what_to_set(tmp_path, hub_cache):
    with pytest.raises(OSError) as raised:
        check_hub_available(POLICY_REPO, "policy.pretrained", offline=True, cache=tmp_path)
    message = str(raised.value)
    for needle in (repr(POLICY_REPO), "policy.pretrained", "HF_HUB_OFFLINE", "HF_HUB_CACHE", str(tmp_path),
                   "--set policy.pretrained="):
        assert needle in message
    check_hub_available(POLICY_REPO, offline=True, cache=hub_cache)  # cached: no error
    check_hub_available(POLICY_REPO, offline=False, cache=tmp_path)  # online: the download decides
    check_hub_available(str(tmp_path), offline=True, cache=tmp_path)  # a local folder always loads
    online = hub_error_message(REWARD_REPO, OSError("404 Client Error\nmore"), "reward.pretrained", offline=False)
    assert repr(REWARD_REPO) in online and "internet" in online and online.endswith("(OSError: 404 Client Error)")


def test_full_profile_offline_without_the_cache_exits_2_naming_the_model(tmp_path):
    empty = tmp_path / "hf" / "hub"
    empty.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "warp_utils", "run", "--profile", "full"], check=False,
                          capture_output=True, text=True, timeout=120, env=offline_env(empty, tmp_path / "data"),
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert POLICY_REPO in done.stderr and "HF_HUB_CACHE" in done.stderr and "Traceback" not in done.stderr
    assert not list((tmp_path / "data").glob("artifacts/*/sft_policy"))  # no half-built folder


# ----------------------------------------------------------------------------- end to end


def _cli_has_set() -> bool:
    done = subprocess.run([sys.executable, "-m", "warp_utils", "run", "--help"], check=False, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    return "--set" in done.stdout


SMALL = ["warp.I=1", "warp.M=2", "warp.T=2", "warp.batch_size=4", "reward.num_pairs=64",
         "reward.num_eval_pairs=32", "reward.epochs=0.25", "reward.max_length=256",
         "data.num_train_prompts=200", "data.num_test_prompts=200"]


def test_full_profile_runs_end_to_end_offline_from_the_cache(hub_cache, tmp_path):
    if not _cli_has_set():
        pytest.skip("needs --set")
    sets = [arg for item in SMALL for arg in ("--set", item)]
    done = subprocess.run([sys.executable, "-m", "warp_utils", "run", "--profile", "full", *sets,
                           "--seeds", "1", "--headline-seeds", "1", "--no-progress-bars"], check=False, capture_output=True, text=True, timeout=900,
                          env=offline_env(hub_cache, tmp_path / "data"), cwd=tmp_path)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    (root,) = (tmp_path / "data" / "artifacts").glob("full-set-*")
    policy = json.loads((root / "sft_policy" / "config.json").read_text())
    assert (policy["model_type"], policy["n_layer"], policy["n_embd"]) == ("gpt2", 2, 64)  # the stand-in
    reward = json.loads((root / "reward_model" / "config.json").read_text())
    assert reward["architectures"] == ["DistilBertForSequenceClassification"] and reward["dim"] == 64
    import pandas as pd

    runs = pd.read_csv(root / "warp" / "metrics.csv").groupby(["iteration", "run"]).step.max()
    assert len(runs) == 2 and (runs == 2).all()  # M = 2 runs of T = 2 steps, from --set
    assert json.loads((root / "reward_model" / "metrics.json").read_text())["num_pairs"] == 64


# ----------------------------------------------------------------------------- device and precision


def test_device_is_cuda_when_available_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.choose_device(None) == "cpu"
    with pytest.raises(ValueError, match="'cuda'.*no CUDA GPU"):
        devices.choose_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        devices.choose_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.choose_device(None) == "cuda"
    assert devices.choose_device("cpu") == "cpu"  # --device forces one
    with pytest.raises(ValueError, match="1 GPU"):
        devices.choose_device("cuda:1")


@pytest.mark.parametrize("capability, name, scales", [((7, 5), "fp16", True), ((8, 0), "bf16", False)])
def test_precision_policy_on_gpus(monkeypatch, capability, name, scales):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    precision = devices.choose_precision("cuda", "auto")
    assert (precision.name, precision.scales_loss, precision.device_type) == (name, scales, "cuda")
    if name == "fp16":  # a T4: bf16 asked for explicitly is refused with the alternative
        with pytest.raises(ValueError, match="use 'fp16'"):
            devices.choose_precision("cuda", "bf16")


def test_precision_on_cpu_is_fp32_unless_bf16_is_asked():
    assert devices.choose_precision("cpu").dtype is None
    with pytest.raises(ValueError, match="fp16"):
        devices.choose_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="precision must be"):
        devices.choose_precision("cpu", "half")
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with devices.choose_precision("cpu").autocast():
        assert layer(x).dtype == torch.float32
    with devices.choose_precision("cpu", "bf16").autocast():
        out = layer(x)
    assert out.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32  # fp32 master weights
    torch.testing.assert_close(out.float(), layer(x), rtol=2e-2, atol=2e-2)


def test_bf16_autocast_log_probs_stay_float32_and_close():
    from transformers import GPT2Config, GPT2LMHeadModel

    from warp_utils.core.rl import next_token_log_probs

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_layer=1, n_embd=32, n_head=2, n_positions=16)).eval()
    ids = torch.randint(0, 64, (2, 6))
    mask = torch.ones_like(ids)
    exact = next_token_log_probs(model, ids, mask, 0.7)
    with devices.choose_precision("cpu", "bf16").autocast():
        mixed = next_token_log_probs(model, ids, mask, 0.7)
    assert mixed.dtype == torch.float32  # the log-softmax is promoted out of bf16
    assert (mixed - exact).abs().max() < 0.1 and not torch.equal(mixed, exact)  # bf16 was really used


def _sgd_pair():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 1)
    b = torch.nn.Linear(4, 1)
    b.load_state_dict(a.state_dict())
    return (a, torch.optim.Adam(a.parameters(), lr=0.1)), (b, torch.optim.Adam(b.parameters(), lr=0.1))


@pytest.mark.parametrize("clip", [None, 0.01])
def test_scaled_step_equals_the_plain_step(clip):
    (a, opt_a), (b, opt_b) = _sgd_pair()
    x = torch.randn(8, 4)
    devices.backward_and_step(a(x).pow(2).mean(), opt_a, torch.amp.GradScaler("cpu", enabled=False), clip)
    # A power-of-two scale is undone exactly: the same update, bit for bit.
    taken = devices.backward_and_step(b(x).pow(2).mean(), opt_b, torch.amp.GradScaler("cpu", init_scale=2.0**10), clip)
    assert taken
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
        assert p.grad is None and q.grad is None  # freed after the step, for the next forward


def test_scaled_step_skips_an_overflowing_gradient():
    (a, opt), _ = _sgd_pair()
    before = [p.detach().clone() for p in a.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    loss = a(torch.full((2, 4), float("inf"))).sum()
    assert not devices.backward_and_step(loss, opt, scaler)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before))
    assert scaler.get_scale() == 2.0**9

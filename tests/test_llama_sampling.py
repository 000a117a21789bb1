"""The lean Llama sampler against HF `generate`, token for token, on a float64 random Llama with
grouped-query attention (the architecture of SmolLM2), left-padded prompts and early EOS."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from warp_utils.config import SamplingConfig
from warp_utils.core.llama_sampling import (
    Linears,
    can_use_kernel,
    linear,
    sample_llama,
    supports_llama_layers,
)
from warp_utils.core.sampling import draw_multinomial, generation_kwargs, left_pad

EOS = 0
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [EOS, 12, 13], [14], [3, 3, 3]]


def llama(seed=0, vocab_size=48):
    """A 2-layer Llama, 4 query heads sharing 2 key-value heads, float64 (so that the loop and
    transformers' forward agree to the last bits and every draw is the same)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.3, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).double().eval()


@pytest.mark.parametrize("temperature, max_new_tokens, seed", [(0.7, 12, 0), (1.0, 12, 1), (0.5, 3, 2)])
def test_llama_loop_replays_hf_generate_token_for_token(temperature, max_new_tokens, seed):
    model = llama(seed)
    assert supports_llama_layers(model)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    ids, mask = left_pad(PROMPTS * 4, EOS)
    torch.manual_seed(seed)
    expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, EOS, EOS))
    torch.manual_seed(seed)
    got = sample_llama(model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
    assert torch.equal(got, expected)


def test_llama_loop_gives_the_logits_of_the_hf_forward_at_every_step():
    model = llama(3)
    sampling = SamplingConfig(max_new_tokens=8, temperature=0.9)
    ids, mask = left_pad(PROMPTS, EOS)
    seen = []

    def draw(probs):  # records each step's distribution, then draws as HF does
        seen.append(probs)
        return draw_multinomial(probs)

    torch.manual_seed(0)
    sequences = sample_llama(model, ids, mask, sampling, EOS, EOS, draw=draw)
    full_mask = torch.cat([mask, torch.ones_like(sequences[:, ids.shape[1]:])], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=sequences, attention_mask=full_mask, position_ids=positions).logits
    for step, probs in enumerate(seen):
        expected = torch.softmax(logits[:, ids.shape[1] - 1 + step] / 0.9, -1)
        live = torch.ones(len(PROMPTS), dtype=torch.bool)  # rows before their EOS
        done = (sequences[:, ids.shape[1]:ids.shape[1] + step] == EOS).any(-1)
        live &= ~done
        assert torch.allclose(probs[live].double(), expected[live], atol=1e-6)  # the draw is in float32


@pytest.mark.skipif(not can_use_kernel(llama().float()), reason="needs blocked_matmul's kernel")
def test_kernel_float32_loop_gives_the_logits_of_the_hf_forward():
    """float32 on a CPU: the loop's linear layers run blocked_matmul's kernel on weights laid out
    for it. Its order of sums is MKL's for a decoding step's rows, not necessarily for these 5 (so
    no token-for-token claim here: benchmarks/smol_sampler.py measures it on SmolLM2); the same
    distributions to 1e-5."""
    model = llama(4).float()
    assert len(Linears(model).packed) == 2 * 7 + 1  # q k v o gate up down per layer, and the head
    x = torch.randn(3, 5, 32)
    for module in (model.model.layers[0].self_attn.q_proj, model.lm_head):
        assert torch.allclose(Linears(model)(x, module), linear(x, module), atol=1e-5)
    assert not Linears(model.double()).packed  # float64: the kernel is float32, the plain matmul
    model.float()
    sampling = SamplingConfig(max_new_tokens=8, temperature=0.8)
    ids, mask = left_pad(PROMPTS, EOS)
    seen = []

    def draw(probs):
        seen.append(probs)
        return draw_multinomial(probs)

    torch.manual_seed(0)
    sequences = sample_llama(model, ids, mask, sampling, EOS, EOS, draw=draw)
    full_mask = torch.cat([mask, torch.ones_like(sequences[:, ids.shape[1]:])], dim=1)
    logits = model(input_ids=sequences, attention_mask=full_mask,
                   position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits
    for step, probs in enumerate(seen):
        live = ~(sequences[:, ids.shape[1]:ids.shape[1] + step] == EOS).any(-1)
        expected = torch.softmax(logits[:, ids.shape[1] - 1 + step] / 0.8, -1)
        assert torch.allclose(probs[live], expected[live], atol=1e-5)


def test_without_the_kernel_float32_runs_torch_linear(monkeypatch):
    """No compiler, another CPU, or WARP_NATIVE=0: the loop's layers are F.linear, what
    transformers computes, so the float32 draws are generate's too."""
    from warp_utils.core import blocked_matmul

    monkeypatch.setattr(blocked_matmul, "available", lambda: False)
    model = llama(5).float()
    assert not Linears(model).packed
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.9)
    ids, mask = left_pad(PROMPTS, EOS)
    torch.manual_seed(0)
    expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, EOS, EOS))
    torch.manual_seed(0)
    got = sample_llama(model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
    assert got.shape == expected.shape
    assert (got == expected).float().mean() >= 0.9


def test_llama_loop_stops_when_every_row_ended_like_hf_generate():
    model = llama(0, vocab_size=6)  # EOS is one token of 6: rows end at different steps
    sampling = SamplingConfig(max_new_tokens=40, temperature=1.0)
    ids, mask = left_pad([[1, 2, 3], [4], [5, 5, 1, 2]], EOS)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, EOS, EOS))
        torch.manual_seed(seed)
        got = sample_llama(model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
        assert torch.equal(got, expected)
        assert got.shape[1] < ids.shape[1] + 40  # stopped once every row emitted EOS


def test_llama_layers_need_plain_rotary_attention():
    model = llama(0)
    assert supports_llama_layers(model)
    model.config.attention_bias = True
    assert not supports_llama_layers(model)


def test_generate_picks_the_llama_loop_and_scoring_works_on_llama(monkeypatch):
    """generate dispatches a Llama to sample_llama; score_rollout's lm_head-after-base path gives
    the log-probs and exact KL of the reference functions (full logits) on a Llama."""
    from warp_utils.core import llama_sampling
    from warp_utils.core import sampling as sampling_module
    from warp_utils.core.scoring import exact_kl, score_rollout, sequence_logprobs

    policy, reference = llama(5), llama(6)
    calls = []
    monkeypatch.setattr(sampling_module, "sample_llama",
                        lambda *a, **k: calls.append(1) or llama_sampling.sample_llama(*a, **k))
    ids, mask = left_pad(PROMPTS, EOS)
    torch.manual_seed(0)
    rollout = sampling_module.generate(policy, ids, mask, SamplingConfig(max_new_tokens=6, temperature=0.8), EOS, EOS)
    assert calls == [1]
    scores = score_rollout(policy, rollout, 0.8, reference=reference)
    args = (rollout.input_ids, rollout.attention_mask, rollout.response_mask, 0.8)
    assert torch.allclose(scores.logprobs, sequence_logprobs(policy, *args), atol=1e-10)
    assert torch.allclose(scores.kl, exact_kl(policy, reference, *args), atol=1e-10)


def test_a_revision_of_the_llama_loop_makes_llama_runs_stale_and_no_others(monkeypatch):
    """The Llama loop's revision is part of a Llama run's config (a revised loop draws other
    tokens: the old runs must not be reused), and absent from a GPT-2 run's (whose sampler did not
    change: its runs keep the keys they were stamped with)."""
    from types import SimpleNamespace

    from transformers import GPT2Config, GPT2LMHeadModel

    from warp_utils.config import WarpConfig
    from warp_utils.core import llama_sampling
    from warp_utils.store import runstore

    def config_of(policy):
        components = SimpleNamespace(policy=policy, reward_scorer=lambda texts: None)
        inputs = runstore.shared_inputs(components, [[1, 2]])
        return runstore.run_config(WarpConfig(), SamplingConfig(), 1, 1, {}, inputs)

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=48, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    small_llama = llama(0)
    before_llama, before_gpt2 = config_of(small_llama), config_of(gpt2)
    assert before_llama["llama_sampler"] == llama_sampling.REVISION
    assert set(before_gpt2) == {"warp", "sampling", "iteration", "run", "theta_init", "theta_sft",
                                "prompts", "reward_model"}
    from warp_utils.core import sampling as sampling_module
    monkeypatch.setattr(sampling_module, "LLAMA_REVISION", llama_sampling.REVISION + 1)
    assert config_of(small_llama) != before_llama
    assert config_of(gpt2) == before_gpt2

"""The lean samplers (KV-cache loop, GPT-2 blocks loop) against HF `generate`, and the exactness of
their inverse-CDF draw."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from warp_utils.config import SamplingConfig
from warp_utils.core import gpt2_sampling
from warp_utils.core import sampling as sampling_module
from warp_utils.core.gpt2_sampling import sample_gpt2, supports_gpt2_blocks
from warp_utils.core.sampling import (
    draw_inverse_cdf,
    draw_multinomial,
    generate,
    generation_kwargs,
    left_pad,
    sample_with_cache,
    supports_lean_sampling,
)

EOS = 0


def gpt2(vocab_size=40, seed=0, init_std=0.3, n_layer=2):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=32, n_head=2, vocab_size=vocab_size, n_positions=64,
                        initializer_range=init_std, bos_token_id=EOS, eos_token_id=EOS,
                        pad_token_id=EOS)
    return GPT2LMHeadModel(config).eval()


def eos_prone(model, scale=3.0):
    """Shift every final hidden state towards EOS's output row (ln_f's bias): EOS's logit rises by
    ~scale |w_eos|, so rows finish at different steps and the loop stops early."""
    with torch.no_grad():
        w_eos = model.lm_head.weight[EOS]
        model.transformer.ln_f.bias.copy_(scale * w_eos / w_eos.norm())
    return model


PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [EOS, 12, 13], [14], [3, 3, 3]]
LOOPS = {"cache": sample_with_cache, "gpt2 blocks": sample_gpt2}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("temperature, max_new_tokens, seed", [(0.7, 12, 0), (1.0, 12, 1), (0.5, 3, 2)])
def test_lean_loop_replays_hf_generate_token_for_token(loop, temperature, max_new_tokens, seed):
    model = gpt2(seed=seed)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature)
    ids, mask = left_pad(PROMPTS * 4, EOS)
    torch.manual_seed(seed)
    expected = model.generate(input_ids=ids, attention_mask=mask, **generation_kwargs(sampling, EOS, EOS))
    torch.manual_seed(seed)
    got = LOOPS[loop](model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
    assert torch.equal(got, expected)


def test_gpt2_blocks_give_the_logits_of_the_hf_forward_at_every_step():
    """Each step's next-token logits (captured at the lm_head) equal HF's full forward on the same prefix."""
    model = gpt2(seed=4, n_layer=3)
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0)
    ids, mask = left_pad(PROMPTS, EOS)
    captured = []
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: captured.append(output))
    torch.manual_seed(0)
    sequences = sample_gpt2(model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
    hook.remove()
    for step, logits in enumerate(captured):
        prefix = sequences[:, : ids.shape[1] + step]
        full_mask = torch.cat([mask, torch.ones_like(prefix[:, ids.shape[1]:])], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            expected = model(input_ids=prefix, attention_mask=full_mask, position_ids=positions).logits[:, -1]
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_gpt2_blocks_need_plain_gpt2_attention():
    assert supports_gpt2_blocks(gpt2())
    config = gpt2().config
    config.scale_attn_by_inverse_layer_idx = True
    assert not supports_gpt2_blocks(GPT2LMHeadModel(config))
    assert not supports_gpt2_blocks(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("loop", LOOPS)
def test_lean_loop_stops_when_every_row_ended_like_hf_generate(loop):
    model = eos_prone(gpt2(seed=3))
    sampling = SamplingConfig(max_new_tokens=40, temperature=1.0)
    ids, mask = left_pad(PROMPTS, EOS)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = model.generate(input_ids=ids, attention_mask=mask,
                                  **generation_kwargs(sampling, EOS, EOS))
        torch.manual_seed(seed)
        got = LOOPS[loop](model, ids, mask, sampling, EOS, EOS, draw=draw_multinomial)
        assert torch.equal(got, expected)
        completions = got[:, ids.shape[1]:]
        assert completions.shape[1] < sampling.max_new_tokens  # stopped early: every row ended
        assert (completions == EOS).any(-1).all()
        ended = (completions == EOS).long().cumsum(-1) > 0
        assert (completions[ended] == EOS).all()  # after a row's EOS, only pad (= EOS)


def test_inverse_cdf_draw_is_the_first_token_whose_cumulative_probability_exceeds_u():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(500, 7) * 2, -1)
    probs[:, 3] = 0.0  # a token that must never be drawn
    torch.manual_seed(1)
    tokens = draw_inverse_cdf(probs)
    torch.manual_seed(1)
    u = torch.rand(500, 1, dtype=torch.float64)
    for row in range(500):  # brute force over the vocabulary
        total = probs[row].double().sum().item()
        running, expected = 0.0, None
        for k in range(7):
            running += probs[row, k].item()
            if running > u[row].item() * total:
                expected = k
                break
        assert tokens[row].item() == expected
    assert (tokens != 3).all()


def test_inverse_cdf_draw_frequencies_match_the_probabilities():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0]]).repeat(200_000, 1)
    torch.manual_seed(0)
    counts = torch.bincount(draw_inverse_cdf(probs), minlength=6).double()
    n = probs.shape[0]
    expected = probs[0].double() * n
    sigma = (n * probs[0].double() * (1 - probs[0].double())).sqrt()
    assert counts[5] == 0
    assert ((counts[:5] - expected[:5]).abs() <= 5 * sigma[:5]).all()


def test_generate_uses_the_lean_loop_for_plain_sampling_and_hf_otherwise(monkeypatch):
    model = gpt2()
    plain = SamplingConfig(max_new_tokens=4, temperature=0.7)
    top_k = SamplingConfig(max_new_tokens=4, temperature=0.7, top_k=5)
    assert supports_lean_sampling(model, plain) and not supports_lean_sampling(model, top_k)
    calls, blocks = [], []
    real, real_blocks = model.generate, gpt2_sampling.sample_gpt2
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.setattr(sampling_module, "sample_gpt2", lambda *a, **kw: blocks.append(1) or real_blocks(*a, **kw))
    ids, mask = left_pad(PROMPTS, EOS)
    generate(model, ids, mask, plain, EOS, EOS)
    assert calls == [] and blocks == [1]  # GPT-2, plain sampling: the blocks loop
    rollout = generate(model, ids, mask, top_k, EOS, EOS)
    assert len(calls) == 1 and rollout.input_ids.shape[0] == len(PROMPTS)
    with pytest.raises(ValueError, match="lean"):
        generate(model, ids, mask, top_k, EOS, EOS, lean=True)


def test_lean_generate_draws_from_the_tempered_distribution_of_each_prefix():
    # 1 new token from one prompt, many rows: the empirical distribution is softmax(logits / T).
    model = gpt2(vocab_size=6, init_std=1.0)
    sampling = SamplingConfig(max_new_tokens=1, temperature=0.7)
    ids = torch.tensor([[2, 4, 1]]).repeat(10_000, 1)
    torch.manual_seed(0)
    rollout = generate(model, ids, torch.ones_like(ids), sampling, EOS, EOS)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([[2, 4, 1]])).logits[0, -1].double() / 0.7, -1)
    n = ids.shape[0]
    counts = torch.bincount(rollout.completion_ids[:, 0], minlength=6).double()
    sigma = (n * probs * (1 - probs)).sqrt()
    assert ((counts - n * probs).abs() <= 5 * sigma + 1).all()

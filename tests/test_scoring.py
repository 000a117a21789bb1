"""The scoring primitive (chunked log-probs and exact KL of a rollout) against the plain definitions."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from warp_utils.core import scoring
from warp_utils.core.sampling import Rollout, left_pad, response_mask_from_completion
from warp_utils.core.scoring import exact_kl, score_rollout, sequence_logprobs

EOS = 0


def gpt2(seed, vocab_size=30, dtype=torch.float64):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=vocab_size, n_positions=32,
                        initializer_range=0.4, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS)
    return GPT2LMHeadModel(config).to(dtype).eval()


def rollout():
    """Left-padded prompts, completions of 5 tokens, one ending early (EOS then filler)."""
    prompt_ids, prompt_mask = left_pad([[3, 4, 5], [6], [EOS, 7]], EOS)
    completion = torch.tensor([[8, 9, 10, 11, 12], [13, EOS, 14, 15, 16], [17, 18, 19, 20, EOS]])
    completion_mask = response_mask_from_completion(completion, EOS)
    return Rollout(torch.cat([prompt_ids, completion], 1), torch.cat([prompt_mask, completion_mask], 1),
                   torch.cat([torch.zeros_like(prompt_mask), completion_mask], 1), prompt_ids.shape[1])


@pytest.mark.parametrize("chunk_size", [1, 2, 3, None])
def test_chunked_scores_equal_the_unchunked_definitions(chunk_size):
    policy, reference, batch = gpt2(1), gpt2(2), rollout()
    args = (batch.input_ids, batch.attention_mask, batch.response_mask)
    with torch.no_grad():
        scores = score_rollout(policy, batch, 0.7, reference=reference, chunk_size=chunk_size)
        logprobs = sequence_logprobs(policy, *args, temperature=0.7)
        ref_logprobs = sequence_logprobs(reference, *args, temperature=0.7)
        kl = exact_kl(policy, reference, *args, temperature=0.7)
    torch.testing.assert_close(scores.logprobs, logprobs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scores.ref_logprobs, ref_logprobs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scores.kl, kl, rtol=1e-12, atol=1e-12)
    assert (kl > 1e-3).all()  # the models differ: not 0 = 0


def test_chunks_bound_the_logits_held_at_once(monkeypatch):
    policy, reference, batch = gpt2(1), gpt2(2), rollout()
    widths = []
    for model in (policy, reference):
        real = model.lm_head.forward
        model.lm_head.forward = lambda h, real=real: widths.append(h.shape[1]) or real(h)
    with torch.no_grad():
        score_rollout(policy, batch, 1.0, reference=reference, chunk_size=2)
    assert widths == [2, 2, 2, 2, 1, 1]  # 5 completion positions, 2 at a time, per model
    monkeypatch.setattr(scoring, "CHUNK_ELEMENTS", 3 * 2 * 30)  # B 3, V 30: 2 positions a chunk
    assert scoring.chunk_length(3, 30) == 2


def test_policy_gradient_through_chunked_logprobs_equals_the_unchunked_one():
    batch = rollout()
    grads = []
    for score in (lambda m: score_rollout(m, batch, 0.7, chunk_size=2).logprobs,
                  lambda m: sequence_logprobs(m, batch.input_ids, batch.attention_mask,
                                              batch.response_mask, temperature=0.7)):
        policy = gpt2(1)
        weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        (weights * score(policy)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-10, atol=1e-12)


def test_scores_without_reference_and_identical_reference():
    policy, batch = gpt2(1), rollout()
    with torch.no_grad():
        alone = score_rollout(policy, batch, 0.7)
        itself = score_rollout(policy, batch, 0.7, reference=policy)
    assert alone.ref_logprobs is None and alone.kl is None
    assert torch.equal(itself.kl, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(itself.logprobs, itself.ref_logprobs)
    with pytest.raises(ValueError, match="temperature"):
        score_rollout(policy, batch, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_logsumexp_is_bitwise_torchs(dtype):
    torch.manual_seed(0)
    logits = torch.randn(4, 7, 300, dtype=dtype) * 20
    logits[0, 0, :] = -torch.inf  # an all -inf row (its max counted as 0): -inf, as torch gives
    logits[1, 2, 5] = torch.inf
    logits[2, 3, :7] = -torch.inf
    expected = torch.logsumexp(logits, -1)
    assert torch.equal(scoring.logsumexp_(logits.clone()), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_taken_log_prob_from_scratch_is_bitwise_the_autograd_one(dtype):
    """Value and gradient (through a linear head, as in score_rollout) bitwise equal to
    taken_log_prob's autograd graph (gather and logsumexp), with and without grad."""
    torch.manual_seed(1)
    features, targets = torch.randn(5, 6, 16, dtype=dtype), torch.randint(0, 300, (5, 6))
    targets[0, :] = 7  # repeated targets: scatter_add must add, not overwrite
    weight = torch.randn(6, dtype=dtype)[None, :]
    results = []
    for taken in (scoring.taken_log_prob, scoring.taken_log_prob_from_scratch):
        torch.manual_seed(2)
        head = torch.nn.Linear(16, 300, bias=False).to(dtype)
        h = features.clone().requires_grad_(True)
        value = taken(head(h / 0.7), targets)
        (weight * value).sum().backward()
        with torch.no_grad():
            no_grad = taken(head(h / 0.7), targets)
        results.append((value.detach(), h.grad, head.weight.grad, no_grad))
    for ours, autograd in zip(results[1], results[0]):
        assert torch.equal(ours, autograd)


def test_a_second_backward_through_scratch_logits_is_an_error():
    logits = torch.randn(2, 3, 10, requires_grad=True)
    value = scoring.taken_log_prob_from_scratch(logits * 1.0, torch.zeros(2, 3, dtype=torch.long)).sum()
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        value.backward()

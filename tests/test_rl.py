"""Tests of warp_utils.core.rl: rollouts, log-probs, exact KL and the REINFORCE loss.

Tiny GPT-2s built from config, eval mode (dropout off: dropout alone makes KL(pi || pi) > 0).
Oracles are independent computations: sequences scored alone, hand loops over the vocabulary,
enumeration of every sequence, hand-derived gradients.
"""

import itertools
import math

import pytest
import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

from warp_utils.config import SamplingConfig
from warp_utils.core.rl import (
    Rollout,
    decode_texts,
    exact_kl,
    generate,
    generation_kwargs,
    left_pad,
    next_token_log_probs,
    position_ids_from_mask,
    reinforce_loss,
    response_mask_from_completion,
    rollout_from_sequences,
    sequence_logprobs,
    token_logprobs,
)

EOS = 0  # bos = eos = pad, like GPT-2's <|endoftext|>


def tiny_gpt2(vocab_size=50, seed=0, n_layer=1, init_std=0.02, dtype=torch.float32):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=32, n_head=2, vocab_size=vocab_size, n_positions=64,
                        initializer_range=init_std, bos_token_id=EOS, eos_token_id=EOS,
                        pad_token_id=EOS)
    return GPT2LMHeadModel(config).to(dtype).eval()


def log_probs_alone(model, ids, temperature=1.0):
    """Next-token log-probs of one unpadded sequence: plain forward, default positions."""
    logits = model(torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits.double() / temperature, -1)


def rollout_of(token_lists):
    """A Rollout from (prompt, completion) pairs: prompts left-padded, completions of one length."""
    prompt_ids, prompt_mask = left_pad([prompt for prompt, _ in token_lists], EOS)
    completion_ids = torch.tensor([completion for _, completion in token_lists])
    completion_mask = response_mask_from_completion(completion_ids, EOS)
    return Rollout(
        input_ids=torch.cat([prompt_ids, completion_ids], 1),
        attention_mask=torch.cat([prompt_mask, completion_mask], 1),
        response_mask=torch.cat([torch.zeros_like(prompt_mask), completion_mask], 1),
        prompt_length=prompt_ids.shape[1],
    )


# ----------------------------------------------------------------------------- padding and masks


def test_left_pad_puts_pads_left_and_positions_skip_them():
    ids, mask = left_pad([[5, 6, 7], [8, 9]], pad_id=EOS)
    assert ids.tolist() == [[5, 6, 7], [EOS, 8, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert position_ids_from_mask(mask)[1, 1:].tolist() == [0, 1]


def test_left_pad_keeps_real_eos_tokens_in_the_mask():
    # The pad id is also a real token: a prompt starting with <|endoftext|> must stay attended.
    ids, mask = left_pad([[EOS, 4], [3]], pad_id=EOS)
    assert ids.tolist() == [[EOS, 4], [EOS, 3]]
    assert mask.tolist() == [[1, 1], [0, 1]]


@pytest.mark.parametrize("lists", [[], [[1, 2], []]])
def test_left_pad_rejects_empty_input(lists):
    with pytest.raises(ValueError, match="token_id_lists"):
        left_pad(lists, EOS)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ([4, 5, 6, 7], [1, 1, 1, 1]),  # no EOS: the whole completion
        ([4, EOS, 6, EOS], [1, 1, 0, 0]),  # the first EOS counts, nothing after it
        ([EOS, EOS, EOS, EOS], [1, 0, 0, 0]),  # immediate EOS, then pad (= EOS) filler
        ([4, 5, 6, EOS], [1, 1, 1, 1]),
    ],
)
def test_response_mask_stops_at_first_eos(completion, expected):
    assert response_mask_from_completion(torch.tensor([completion]), EOS).tolist() == [expected]


# ----------------------------------------------------------------------------- log-probs


def test_sequence_logprobs_of_left_padded_batch_equal_each_sequence_alone():
    model = tiny_gpt2(n_layer=2)
    pairs = [([5, 6, 7, 8], [9, 10, 11]), ([12], [13, EOS, 14]), ([15, 16], [17, 18, EOS])]
    rollout = rollout_of(pairs)
    with torch.no_grad():
        batched = sequence_logprobs(model, rollout.input_ids, rollout.attention_mask,
                                    rollout.response_mask, temperature=0.7)
    for row, (prompt, completion) in enumerate(pairs):
        length = rollout.response_lengths[row].item()
        ids = prompt + completion[:length]
        with torch.no_grad():
            log_probs = log_probs_alone(model, ids, temperature=0.7)
        expected = sum(log_probs[t - 1, ids[t]] for t in range(len(prompt), len(ids)))
        assert batched[row].item() == pytest.approx(expected.item(), abs=1e-5)


def test_token_logprobs_are_those_of_the_tempered_distribution():
    model = tiny_gpt2(init_std=0.3)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        got = token_logprobs(model, input_ids, torch.ones_like(input_ids), temperature=0.5)[0]
        logits = model(input_ids).logits[0, :-1].double()
    for t in range(1, len(ids)):
        z = logits[t - 1] / 0.5
        expected = (z[ids[t]] - math.log(sum(math.exp(v) for v in z.tolist()))).item()
        assert got[t - 1].item() == pytest.approx(expected, abs=1e-5)


def test_tokens_after_first_eos_do_not_change_sequence_logprobs():
    model = tiny_gpt2()
    a = rollout_of([([5, 6], [7, EOS, 8, 9])])
    b = rollout_of([([5, 6], [7, EOS, 30, 31])])
    with torch.no_grad():
        value_a = sequence_logprobs(model, a.input_ids, a.attention_mask, a.response_mask)
        value_b = sequence_logprobs(model, b.input_ids, b.attention_mask, b.response_mask)
        alone = log_probs_alone(model, [5, 6, 7, EOS])
    assert value_a.item() == value_b.item()
    assert value_a.item() == pytest.approx((alone[1, 7] + alone[2, EOS]).item(), abs=1e-5)


def test_logprob_functions_reject_bad_input():
    model = tiny_gpt2()
    ids = torch.tensor([[1, 2, 3]])
    mask = torch.ones_like(ids)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(model, ids, mask, temperature=0.0)
    with pytest.raises(ValueError, match="attention_mask"):
        token_logprobs(model, ids, mask[:, :2])
    with pytest.raises(ValueError, match="response_mask"):
        sequence_logprobs(model, ids, mask, torch.tensor([[1, 1, 1]]))  # position 0 has no context


# ----------------------------------------------------------------------------- exact KL


def test_exact_kl_matches_hand_loop_and_sequence_level_kl_by_enumeration():
    # Vocabulary 5, prompt of 2, responses of 3 tokens: all 125 responses enumerated.
    vocab, temperature, prompt = 5, 0.7, [1, 3]
    policy = tiny_gpt2(vocab, seed=1, n_layer=2, init_std=0.5, dtype=torch.float64)
    reference = tiny_gpt2(vocab, seed=2, n_layer=2, init_std=0.5, dtype=torch.float64)
    responses = list(itertools.product(range(vocab), repeat=3))
    input_ids = torch.tensor([prompt + list(y) for y in responses])
    attention_mask = torch.ones_like(input_ids)
    response_mask = torch.tensor([[0, 0, 1, 1, 1]] * len(responses))  # every token, EOS or not
    with torch.no_grad():
        kl = exact_kl(policy, reference, input_ids, attention_mask, response_mask, temperature)
        log_pi = sequence_logprobs(policy, input_ids, attention_mask, response_mask, temperature)
        log_ref = sequence_logprobs(reference, input_ids, attention_mask, response_mask,
                                    temperature)

    # Per sequence: a hand loop over the vocabulary at each response position.
    for row in (0, 37, 124):
        ids = input_ids[row].tolist()
        with torch.no_grad():
            p = log_probs_alone(policy, ids, temperature).exp()
            q = log_probs_alone(reference, ids, temperature).exp()
        expected = 0.0
        for t in range(len(prompt), len(ids)):
            for v in range(vocab):
                expected += p[t - 1, v].item() * math.log(p[t - 1, v].item() / q[t - 1, v].item())
        assert kl[row].item() == pytest.approx(expected, rel=1e-9)

    # In expectation over y ~ pi: sum_t KL_t = KL(pi(y|x) || pi_ref(y|x)) at the sequence level.
    pi = log_pi.exp()
    assert pi.sum().item() == pytest.approx(1.0, abs=1e-12)
    sequence_kl = (pi * (log_pi - log_ref)).sum().item()
    assert (pi * kl).sum().item() == pytest.approx(sequence_kl, rel=1e-9)
    assert sequence_kl > 1e-3  # the two models really differ, so the identity is not 0 = 0


def test_exact_kl_is_zero_for_identical_models_and_ignores_masked_positions():
    policy = tiny_gpt2(init_std=0.3)
    rollout = rollout_of([([5, 6, 7], [8, 9, EOS, 4]), ([5], [EOS, 3, 2, 1])])
    args = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
    assert exact_kl(policy, policy, *args).tolist() == [0.0, 0.0]
    other = tiny_gpt2(init_std=0.3, seed=5)
    kl = exact_kl(policy, other, *args)
    # Row 1 responds with a single EOS: its KL is the one at that one position.
    with torch.no_grad():
        p = log_probs_alone(policy, [5, EOS])[0]
        q = log_probs_alone(other, [5, EOS])[0]
    assert kl[1].item() == pytest.approx((p.exp() * (p - q)).sum().item(), abs=1e-5)


# ----------------------------------------------------------------------------- generation


SAMPLING = SamplingConfig(max_new_tokens=6, temperature=0.7, top_k=0, top_p=1.0)


def prompts():
    return left_pad([[5, 6, 7, 8, 9], [10, 11], [EOS, 12, 13]], EOS)


def test_generate_shapes_and_masks():
    model = tiny_gpt2(init_std=0.3)
    prompt_ids, prompt_mask = prompts()
    torch.manual_seed(0)
    rollout = generate(model, prompt_ids, prompt_mask, SAMPLING, EOS, EOS)
    batch, prompt_length = prompt_ids.shape
    num_new = rollout.input_ids.shape[1] - prompt_length
    assert rollout.prompt_length == prompt_length
    assert 1 <= num_new <= SAMPLING.max_new_tokens
    finished = (rollout.completion_ids == EOS).any(-1)
    assert num_new == SAMPLING.max_new_tokens or finished.all()  # stops early only when all ended
    assert torch.equal(rollout.prompt_ids, prompt_ids)
    assert torch.equal(rollout.prompt_mask, prompt_mask)
    assert torch.equal(rollout.completion_mask,
                       response_mask_from_completion(rollout.completion_ids, EOS))
    assert rollout.response_mask[:, :prompt_length].sum() == 0
    assert torch.equal(rollout.attention_mask[:, prompt_length:], rollout.completion_mask)
    shape = (batch, prompt_length + num_new)
    assert rollout.attention_mask.shape == rollout.response_mask.shape == shape


def test_generate_is_deterministic_under_seed_and_samples_without_dropout():
    model = tiny_gpt2(init_std=0.3)  # GPT2Config's dropout 0.1: active in train mode
    prompt_ids, prompt_mask = prompts()
    runs = []
    for seed, train in ((3, True), (3, False), (4, True)):
        model.train(train)
        torch.manual_seed(seed)
        runs.append(generate(model, prompt_ids, prompt_mask, SAMPLING, EOS, EOS).input_ids)
        assert model.training == train  # the caller's mode is restored
    assert torch.equal(runs[0], runs[1])  # same seed, and train mode changed nothing: no dropout
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("loop", ["gpt2 blocks", "cache", "hf generate"])
def test_generate_follows_the_policy_step_by_step_under_left_padding(loop, monkeypatch):
    # Records the logits of every output-layer call of the sampler (prompt, then one per token).
    from warp_utils.core import sampling as sampling_module

    model = tiny_gpt2(init_std=0.3, n_layer=2)
    if loop == "cache":
        monkeypatch.setattr(sampling_module, "supports_gpt2_blocks", lambda policy: False)
    recorded = []
    hook = model.lm_head.register_forward_hook(
        lambda module, args, out: recorded.append(out.reshape(out.shape[0], -1, out.shape[-1])[:, -1]))
    prompt_ids, prompt_mask = prompts()
    torch.manual_seed(0)
    rollout = generate(model, prompt_ids, prompt_mask, SAMPLING, EOS, EOS, lean=loop != "hf generate")
    hook.remove()
    steps = len(recorded)
    recorded = torch.stack(recorded, 1)  # (B, steps, V)
    # The first distribution of the left-padded prompt [10, 11] is that of [10, 11] alone.
    with torch.no_grad():
        alone = model(torch.tensor([[10, 11]])).logits[0, -1].double()
    alone = torch.log_softmax(alone / SAMPLING.temperature, -1)
    first = torch.log_softmax(recorded[1, 0].double() / SAMPLING.temperature, -1)
    assert torch.allclose(first, alone, atol=1e-5)
    # Every sampled token was drawn from the distribution token_logprobs scores it with.
    with torch.no_grad():
        scored = next_token_log_probs(model, rollout.input_ids, rollout.attention_mask,
                                      SAMPLING.temperature)
    P = rollout.prompt_length
    for k in range(min(steps, rollout.completion_ids.shape[1])):
        during = torch.log_softmax(recorded[:, k] / SAMPLING.temperature, -1)
        live = rollout.completion_mask[:, k].bool()
        assert torch.allclose(during[live], scored[live, P - 1 + k], atol=1e-5)


def test_generation_kwargs_override_a_model_generation_config_that_would_bias_sampling():
    # A pretrained generation_config may carry top_k=50 and penalties; our kwargs must win, and
    # top_k=0 must mean no truncation: the scores are exactly logits / temperature.
    model = tiny_gpt2(vocab_size=100, init_std=0.3)
    model.generation_config = GenerationConfig(top_k=50, repetition_penalty=1.5,
                                               no_repeat_ngram_size=1, do_sample=True)
    prompt_ids, prompt_mask = prompts()
    torch.manual_seed(0)
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                         output_scores=True, return_dict_in_generate=True,
                         **generation_kwargs(SAMPLING, EOS, EOS))
    rollout = rollout_from_sequences(out.sequences, prompt_mask, EOS)
    with torch.no_grad():
        scored = next_token_log_probs(model, rollout.input_ids, rollout.attention_mask,
                                      SAMPLING.temperature)
    P = rollout.prompt_length
    for k, scores in enumerate(out.scores):
        live = rollout.completion_mask[:, k].bool()
        assert torch.isfinite(scores[live]).all()  # nothing truncated
        assert torch.allclose(torch.log_softmax(scores[live], -1), scored[live, P - 1 + k],
                              atol=1e-5)


def test_generate_with_top_k_0_samples_outside_the_50_most_likely_tokens():
    # Near-uniform tiny policy over 100 tokens: about half of the draws rank >= 50.
    model = tiny_gpt2(vocab_size=100)
    prompt_ids = torch.full((64, 1), 7)
    one_token = SamplingConfig(max_new_tokens=1, temperature=1.0, top_k=0)
    torch.manual_seed(0)
    rollout = generate(model, prompt_ids, torch.ones_like(prompt_ids), one_token, EOS, EOS)
    with torch.no_grad():
        logits = model(torch.tensor([[7]])).logits[0, -1]
    rank = logits.argsort(descending=True).argsort()  # rank[token]: 0 = most likely
    assert rank[rollout.completion_ids[:, 0]].max().item() >= 50


@pytest.mark.parametrize(
    "field, value",
    [("max_new_tokens", 0), ("temperature", 0.0), ("temperature", float("nan")), ("top_k", -1),
     ("top_p", 0.0), ("top_p", 1.5)],
)
def test_generate_rejects_bad_sampling_config(field, value):
    model = tiny_gpt2()
    prompt_ids, prompt_mask = prompts()
    bad = SamplingConfig(**{field: value})
    with pytest.raises(ValueError, match=field):
        generate(model, prompt_ids, prompt_mask, bad, EOS, EOS)


# ----------------------------------------------------------------------------- decode


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(["the movie was great fun", "a bad film, truly bad"], trainer=trainer)
    eos = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=eos, eos_token=eos,
                                   pad_token=eos)


def test_decode_texts_drops_pads_special_tokens_and_everything_after_eos():
    tokenizer = tiny_tokenizer()
    eos = tokenizer.eos_token_id
    encode = tokenizer.encode
    pairs = [
        (encode("the movie was"), encode(" great fun") + [eos] + encode(" bad")),
        # A real <|endoftext|> at the start of the prompt: attended, yet never shown.
        ([eos] + encode("a film"), encode(" truly bad fun ok")),
    ]
    width = max(len(c) for _, c in pairs)
    pairs = [(p, c + [eos] * (width - len(c))) for p, c in pairs]  # generate pads with pad = eos
    prompt_ids, prompt_mask = left_pad([p for p, _ in pairs], eos)
    completion = torch.tensor([c for _, c in pairs])
    completion_mask = response_mask_from_completion(completion, eos)
    rollout = Rollout(torch.cat([prompt_ids, completion], 1),
                      torch.cat([prompt_mask, completion_mask], 1),
                      torch.cat([torch.zeros_like(prompt_mask), completion_mask], 1),
                      prompt_ids.shape[1])
    texts = decode_texts(tokenizer, rollout)
    assert texts == ["the movie was great fun", "a film truly bad fun ok"]


# ----------------------------------------------------------------------------- REINFORCE loss


def advantages_read_from_gradient(rewards, log_ratio, beta, baseline):
    """loss = -mean(adv * logprobs) with logprobs a leaf: d loss / d logprobs_i = -adv_i / B."""
    logprobs = torch.zeros(len(rewards), dtype=torch.float64, requires_grad=True)
    loss, _ = reinforce_loss(logprobs, torch.tensor(rewards, dtype=torch.float64),
                             torch.tensor(log_ratio, dtype=torch.float64), beta, baseline)
    loss.backward()
    return (-logprobs.grad * len(rewards)).tolist()


def test_each_sample_is_penalized_by_its_own_log_ratio():
    # Same reward, different log ratios: r_beta = r - beta * log_ratio differs per sample.
    got = advantages_read_from_gradient([1.0, 1.0], [0.5, -2.0], beta=0.1, baseline="none")
    assert got == pytest.approx([1.0 - 0.05, 1.0 + 0.2])


@pytest.mark.parametrize(
    "baseline, expected",
    [
        # r_beta = [1 - 0.5*2, 2 - 0.5*(-2), 6 - 0.5*0] = [0, 3, 6]
        ("none", [0.0, 3.0, 6.0]),
        ("batch_mean", [0.0 - 3.0, 3.0 - 3.0, 6.0 - 3.0]),
        ("leave_one_out", [0.0 - 4.5, 3.0 - 3.0, 6.0 - 1.5]),
    ],
)
def test_advantages_by_hand(baseline, expected):
    got = advantages_read_from_gradient([1.0, 2.0, 6.0], [2.0, -2.0, 0.0], 0.5, baseline)
    assert got == pytest.approx(expected)


def test_metrics_by_hand():
    logprobs = torch.tensor([-1.0, -3.0])
    loss, metrics = reinforce_loss(logprobs, torch.tensor([2.0, 4.0]), torch.tensor([1.0, 3.0]),
                                   beta=1.0, baseline="batch_mean")
    # r_beta = [1, 1] -> advantages [0, 0] -> loss 0
    assert metrics == pytest.approx({"reward_mean": 3.0, "reward_std": 1.0, "kl_to_anchor": 2.0,
                                     "r_beta_mean": 1.0, "advantage_std": 0.0, "loss": 0.0})
    assert all(isinstance(value, float) for value in metrics.values())
    assert loss.item() == 0.0


@pytest.mark.parametrize("baseline", ["none", "batch_mean", "leave_one_out"])
def test_gradient_of_bandit_policy_equals_hand_derived_reinforce(baseline):
    # Policy = softmax(theta) over 4 actions: grad log pi(y) = onehot(y) - softmax(theta).
    theta = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    actions = [2, 0, 2, 3]
    rewards, log_ratio, beta = [1.0, -0.5, 2.0, 0.25], [0.3, -0.1, 0.8, 0.0], 0.2
    logprobs = torch.log_softmax(theta, -1)[actions]
    loss, _ = reinforce_loss(logprobs, torch.tensor(rewards, dtype=torch.float64),
                             torch.tensor(log_ratio, dtype=torch.float64), beta, baseline)
    loss.backward()

    pi = [math.exp(v) for v in theta.tolist()]
    pi = [v / sum(pi) for v in pi]
    r_beta = [r - beta * lr for r, lr in zip(rewards, log_ratio)]
    batch = len(actions)
    if baseline == "none":
        adv = r_beta
    elif baseline == "batch_mean":
        adv = [r - sum(r_beta) / batch for r in r_beta]
    else:
        adv = [r - (sum(r_beta) - r) / (batch - 1) for r in r_beta]
    expected = [
        -sum(a * ((1.0 if y == k else 0.0) - pi[k]) for a, y in zip(adv, actions)) / batch
        for k in range(4)
    ]
    assert theta.grad.tolist() == pytest.approx(expected, abs=1e-12)


def test_gradient_through_sequence_logprobs_equals_per_sample_reinforce():
    # Batched, left-padded gradient = -1/B sum_i adv_i grad log pi(y_i), each gradient taken alone.
    model = tiny_gpt2(init_std=0.3, dtype=torch.float64)
    pairs = [([5, 6, 7], [8, 9, EOS]), ([10], [11, 12, 13]), ([14, 15], [EOS, 3, 4])]
    rollout = rollout_of(pairs)
    rewards, log_ratio, beta = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.5, 1.0, -1.0]), 0.3
    logprobs = sequence_logprobs(model, rollout.input_ids, rollout.attention_mask,
                                 rollout.response_mask)
    loss, _ = reinforce_loss(logprobs, rewards.double(), log_ratio.double(), beta, "leave_one_out")
    params = list(model.parameters())
    got = torch.autograd.grad(loss, params)

    r_beta = [1.0 - 0.15, 0.0 - 0.3, -2.0 + 0.3]
    adv = [r_beta[0] - (r_beta[1] + r_beta[2]) / 2, r_beta[1] - (r_beta[0] + r_beta[2]) / 2,
           r_beta[2] - (r_beta[0] + r_beta[1]) / 2]
    expected = [torch.zeros_like(p) for p in params]
    for (prompt, completion), a, length in zip(pairs, adv, rollout.response_lengths.tolist()):
        ids = prompt + completion[:length]
        log_probs = log_probs_alone(model, ids)
        log_pi = sum(log_probs[t - 1, ids[t]] for t in range(len(prompt), len(ids)))
        for acc, g in zip(expected, torch.autograd.grad(log_pi, params)):
            acc -= a * g / len(pairs)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-10)


def test_kl_penalty_carries_no_gradient():
    model = tiny_gpt2(init_std=0.3, dtype=torch.float64)
    anchor = tiny_gpt2(init_std=0.3, seed=9, dtype=torch.float64)
    rollout = rollout_of([([5, 6], [7, 8]), ([9], [10, EOS])])
    args = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
    rewards = torch.tensor([1.0, -1.0], dtype=torch.float64)
    params = list(model.parameters())

    def grads(log_ratio_with_graph):
        logprobs = sequence_logprobs(model, *args)
        with torch.no_grad():
            anchor_logprobs = sequence_logprobs(anchor, *args)
        log_ratio = logprobs - anchor_logprobs  # carries a graph back into the policy
        if not log_ratio_with_graph:
            log_ratio = log_ratio.detach()
        loss, _ = reinforce_loss(logprobs, rewards, log_ratio, beta=5.0, baseline="none")
        return torch.autograd.grad(loss, params)

    for with_graph, without in zip(grads(True), grads(False)):
        assert torch.equal(with_graph, without)

    leaf = torch.tensor([0.5, -0.5], dtype=torch.float64, requires_grad=True)
    logprobs = sequence_logprobs(model, *args)
    loss, _ = reinforce_loss(logprobs, rewards, leaf, beta=5.0, baseline="none")
    loss.backward()
    assert leaf.grad is None


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"beta": -0.1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": float("inf")}, "beta"),
        ({"baseline": "mean"}, "baseline"),
        ({"rewards": torch.zeros(3)}, "rewards"),
        ({"log_ratio": torch.zeros(2, 1)}, "log_ratio"),
        ({"rewards": torch.tensor([0.0, float("nan")])}, "rewards"),
        ({"logprobs": torch.zeros(1), "rewards": torch.zeros(1), "log_ratio": torch.zeros(1),
          "baseline": "leave_one_out"}, "batch size"),
    ],
)
def test_reinforce_loss_rejects_bad_input(kwargs, name):
    args = {"logprobs": torch.zeros(2), "rewards": torch.zeros(2), "log_ratio": torch.zeros(2),
            "beta": 0.1, "baseline": "batch_mean"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        reinforce_loss(**args)

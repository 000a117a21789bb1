import json
import math

import torch

from warp_utils.store.artifacts import STAMP, read_stamp
import pytest

from warp_utils.config import PolicyConfig
from warp_utils.inputs.data import load_imdb, shuffled_texts
from warp_utils.inputs.models import (ensure_sft_policy, heldout_loss, load_policy, tiny_gpt2, token_stream,
                               train_policy_tokenizer)
from warp_utils.inputs.prompts import ensure_prompts, first_tokens, load_prompts

SENTENCES = ["a wonderful film with a moving story", "a dull and awful mess of a movie"] * 20


def test_policy_tokenizer_uses_endoftext_for_bos_eos_pad():
    tokenizer = train_policy_tokenizer(SENTENCES, vocab_size=300)
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert tokenizer.padding_side == "left"
    ids = tokenizer("a wonderful film")["input_ids"]
    assert tokenizer.decode(ids) == "a wonderful film"


def test_token_stream_separates_reviews_with_eos():
    tokenizer = train_policy_tokenizer(SENTENCES, vocab_size=300)
    stream = token_stream(SENTENCES[:4], tokenizer, max_tokens=12)
    first = tokenizer(SENTENCES[0])["input_ids"]
    assert stream[0] == tokenizer.eos_token_id
    assert stream[1 : 1 + len(first)].tolist() == first
    assert stream[1 + len(first)] == tokenizer.eos_token_id


def test_sft_policy_builds_learns_saves_and_reloads(fake_imdb, small_profile):
    folder = ensure_sft_policy(small_profile)
    stamp = read_stamp(folder)
    losses = stamp["sft_losses"]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.5  # pre-training lowered the loss
    policy, tokenizer = load_policy(folder)
    assert not policy.training and next(policy.parameters()).dtype == torch.float32
    assert len(tokenizer) == policy.config.vocab_size
    # the reloaded weights are the trained ones: its loss on the corpus is below uniform
    ids = torch.tensor([tokenizer("the film was awful and dull")["input_ids"]])
    with torch.no_grad():
        loss = policy(input_ids=ids, labels=ids).loss.item()
    assert loss < math.log(len(tokenizer))


def test_heldout_loss_is_the_mean_loss_of_fixed_test_blocks(fake_imdb, small_profile):
    policy, tokenizer = load_policy(ensure_sft_policy(small_profile))
    block = small_profile.policy.block_size
    loss = heldout_loss(policy, tokenizer, small_profile, num_blocks=6, batch_size=4)  # batches of 4 + 2
    # oracle: float64 cross-entropy of each block, one block at a time
    reviews = shuffled_texts(load_imdb("test", small_profile.data), small_profile.data.seed)
    blocks = token_stream(reviews, tokenizer, 6 * block).view(6, block)
    with torch.no_grad():
        logits = policy(input_ids=blocks).logits.double()
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, blocks[:, 1:, None]).squeeze(-1)
    assert loss == pytest.approx(nll.mean().item(), abs=1e-5)
    assert heldout_loss(policy, tokenizer, small_profile, num_blocks=6, batch_size=6) == pytest.approx(loss)


def test_tiny_policy_takes_dropout_and_activation_from_the_config():
    tokenizer = train_policy_tokenizer(SENTENCES, vocab_size=300)
    config = PolicyConfig(n_layer=1, n_embd=32, n_head=2, dropout=0.2, activation="gelu_new")
    gpt2 = tiny_gpt2(config, tokenizer).config
    assert (gpt2.resid_pdrop, gpt2.embd_pdrop, gpt2.attn_pdrop, gpt2.activation_function) == (0.2, 0.2, 0.2, "gelu_new")
    with pytest.raises(ValueError, match="dropout"):
        PolicyConfig(dropout=1.0)
    with pytest.raises(ValueError, match="activation"):
        PolicyConfig(activation="swish")


def test_sft_policy_is_reused_then_rebuilt_when_stale(fake_imdb, small_profile):
    import dataclasses

    folder = ensure_sft_policy(small_profile)
    before = (folder / STAMP).stat().st_mtime_ns
    assert ensure_sft_policy(small_profile) == folder
    assert (folder / STAMP).stat().st_mtime_ns == before  # fresh: not rebuilt
    changed = dataclasses.replace(small_profile, policy=dataclasses.replace(small_profile.policy, sft_lr=1e-3))
    ensure_sft_policy(changed)
    assert json.loads((folder / STAMP).read_text())["config"]["policy"]["sft_lr"] == 1e-3


def test_first_tokens_cuts_and_excludes_short_texts():
    tokenizer = train_policy_tokenizer(SENTENCES, vocab_size=300)
    texts = ["a wonderful film with a moving story", "a film", "a dull and awful mess of a movie"]
    prompts, kept = first_tokens(texts, tokenizer, length=4)
    assert kept == [0, 2]
    assert prompts == [tokenizer(texts[0])["input_ids"][:4], tokenizer(texts[2])["input_ids"][:4]]


def test_first_tokens_of_the_head_equal_those_of_the_whole_text():
    tokenizer = train_policy_tokenizer(SENTENCES, vocab_size=300)
    texts = [
        "a wonderful film   with  a moving story, truly!!! 10/10 would watch again",  # runs of spaces
        "the plot was boring" + "!" * 40 + " and the actors were great",  # a long punctuation run
        "x" * 60 + " the end",  # no clean cut before `chars`: tokenized whole
        "a dull\n\n and awful mess of a movie, it's the worst I've seen in years",
        "short",
    ]
    for chars in range(1, max(map(len, texts)) + 2):  # every cut position
        for length in range(1, 16):
            prompts, kept = first_tokens(texts, tokenizer, length=length, chars=chars)
            whole = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
            assert kept == [i for i, ids in enumerate(whole) if len(ids) >= length], (chars, length)
            assert prompts == [whole[i][:length] for i in kept], (chars, length)


def test_prompts_are_exactly_prompt_tokens_long(fake_imdb, small_profile):
    folder = ensure_prompts(small_profile)
    prompts = load_prompts(small_profile)
    stamp = read_stamp(folder)
    length = small_profile.data.prompt_tokens
    for split in ("train", "test"):
        assert len(prompts[split]) + stamp["excluded_too_short"][split] == 80
        assert all(len(ids) == length for ids in prompts[split]["input_ids"])
    assert stamp["excluded_too_short"]["train"] > 0  # the fixture has 3-word reviews


def test_interrupted_pretraining_resumes_from_its_checkpoint_bitwise(small_profile, tmp_path, capsys):
    import pytest

    from warp_utils.inputs.models import pretrain_causal_lm, tiny_gpt2

    config = small_profile.policy
    tokenizer = train_policy_tokenizer(SENTENCES * 5, vocab_size=config.vocab_size)
    stream = token_stream(SENTENCES * 20, tokenizer, max_tokens=800)  # 25 blocks: 7 steps of 4

    def fresh_model():
        torch.manual_seed(0)
        return tiny_gpt2(config, tokenizer)  # dropout on in train mode: the RNG must be restored

    reference = fresh_model()
    torch.manual_seed(1)
    expected = pretrain_causal_lm(reference, stream, config, seed=3)

    path = tmp_path / "checkpoint.pt"

    def interrupt(step):
        if step == 4:
            raise KeyboardInterrupt

    model = fresh_model()
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        pretrain_causal_lm(model, stream, config, seed=3, checkpoint_path=path, checkpoint_seconds=0.0,
                           on_step=interrupt)
    assert path.is_file() and not path.with_name("checkpoint.pt.tmp").exists()
    torch.manual_seed(12345)  # whatever the RNG holds now: the checkpoint's state is restored
    resumed = fresh_model()
    losses = pretrain_causal_lm(resumed, stream, config, seed=3, checkpoint_path=path)
    assert "resuming sft_policy from step 4" in capsys.readouterr().out
    assert losses == expected and len(losses) == 7
    for (name, value), other in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(value, other), name
    assert not path.exists()  # deleted at the end
    assert not torch.equal(fresh_model().transformer.h[0].mlp.c_fc.weight,
                           resumed.transformer.h[0].mlp.c_fc.weight)  # it did train

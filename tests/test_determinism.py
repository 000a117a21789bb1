"""Reproducible artifacts: the WordPiece trainer against a brute-force BPE, and the SFT policy and
the reward model (tokenizers and weights) built in two fresh processes, compared byte for byte."""

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer

from warp_utils.execution.overrides import get_profile
from warp_utils.inputs import reward
from warp_utils.inputs.reward import (
    SPECIAL_TOKENS,
    ensure_reward_model,
    train_reward_tokenizer,
)
from warp_utils.inputs.wordpiece import count_words, train_wordpiece_vocab
from warp_utils.store.artifacts import STAMP, TIMINGS, fingerprint, read_stamp

# -----------------------------------------------------------------------------
# the trainer against a brute force


def brute_force_vocab(words: Counter, vocab_size: int, specials, min_frequency=2, limit_alphabet=1000):
    """The same training rule, recounting every pair of every word at every merge."""
    chars = Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))[:limit_alphabet]
    spelled = {}
    for word in words:
        kept = [c for c in word if c in alphabet]
        spelled[word] = kept[:1] + ["##" + c for c in kept[1:]]
    vocab = list(specials) + sorted(alphabet) + sorted({p for s in spelled.values() for p in s[1:]})
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, pieces in spelled.items():
            for i in range(len(pieces) - 1):
                pairs[pieces[i], pieces[i + 1]] += words[word]
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < min_frequency:
            break
        joined = best[0] + best[1][2:] if best[1].startswith("##") else best[0] + best[1]
        if joined not in vocab:
            vocab.append(joined)
        for word, pieces in spelled.items():
            merged, i = [], 0
            while i < len(pieces):
                if tuple(pieces[i : i + 2]) == best:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            spelled[word] = merged
    return vocab


def random_words(seed: int, types: int) -> Counter:
    """Words over a 4-letter alphabet with small counts: many ties between pairs, repeated
    letters (overlapping pairs like (##a, ##a)) and pieces spelled by two different merges."""
    rng = random.Random(seed)
    return Counter({
        "".join(rng.choice("abcA") for _ in range(rng.randint(1, 7))): rng.randint(1, 4)
        for _ in range(types)
    })


@pytest.mark.parametrize("seed", range(6))
def test_wordpiece_vocab_equals_brute_force(seed):
    words = random_words(seed, types=60)
    for vocab_size, min_frequency, limit in [(10_000, 2, 1000), (40, 1, 1000), (10_000, 1, 3)]:
        expected = brute_force_vocab(words, vocab_size, SPECIAL_TOKENS, min_frequency, limit)
        got = train_wordpiece_vocab(words, vocab_size, SPECIAL_TOKENS, min_frequency, limit)
        assert got == expected
        assert len(set(got)) == len(got)


def test_wordpiece_vocab_ignores_word_order():
    words = random_words(7, types=80)
    shuffled = list(words.items())
    random.Random(0).shuffle(shuffled)
    assert train_wordpiece_vocab(Counter(dict(shuffled)), 200, SPECIAL_TOKENS) == \
        train_wordpiece_vocab(words, 200, SPECIAL_TOKENS)


def test_reward_tokenizer_counts_the_words_it_tokenizes():
    texts = ["Héllo, wörld! It's 3.5 stars.", "Unbelievably good\tfilm 中文", "It's good."]
    blank = BertWordPieceTokenizer(lowercase=False, strip_accents=False)._tokenizer
    words = count_words(texts, blank.normalizer, blank.pre_tokenizer)
    assert words["It"] == 2 and words["'"] == 2 and words["中"] == 1 and words["3"] == 1
    tokenizer = train_reward_tokenizer(texts, vocab_size=10_000)
    # every word seen often enough is one piece; no training character is unknown
    pieces = tokenizer.tokenize(" ".join(texts))
    assert "[UNK]" not in pieces
    assert {"It", "'", "good", "."} <= set(pieces)
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))


# -----------------------------------------------------------------------------
# artifacts built in two fresh processes

# The tiny profile, shrunk with --set overrides (WARP_SET) so that both stages build in seconds.
# The reward tokenizer keeps the profile's vocabulary size; it reads fewer reviews.
SHRUNK = (
    "policy.vocab_size=300 policy.n_layer=1 policy.n_embd=32 policy.n_head=2 policy.n_positions=64 "
    "policy.tokenizer_reviews=60 policy.sft_tokens=2000 policy.block_size=32 policy.sft_batch_size=4 "
    "policy.sft_warmup_steps=2 "
    "reward.tokenizer_reviews=60 reward.n_layers=1 reward.dim=32 reward.n_heads=2 "
    "reward.hidden_dim=64 reward.num_pairs=40 reward.num_eval_pairs=40 reward.max_length=48 "
    "reward.epochs=1.0 reward.batch_size=8 reward.warmup_steps=2 reward.score_batch_size=16"
)
BUILD = """
from warp_utils.inputs.models import ensure_sft_policy
from warp_utils.inputs.reward import ensure_reward_model
print("ARTIFACT", ensure_sft_policy("tiny"))
print("ARTIFACT", ensure_reward_model("tiny"))
"""


def _build_in_fresh_process(root: Path, imdb: Path) -> subprocess.Popen:
    env = dict(os.environ, WARP_IMDB_DIR=str(imdb), WARP_DATA_ROOT=str(root), WARP_SET=SHRUNK,
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", BUILD], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_artifacts_are_identical_across_fresh_processes(fake_imdb, tmp_path):
    builds = [_build_in_fresh_process(tmp_path / name, fake_imdb) for name in ("a", "b")]
    folders = []
    for build in builds:  # both run at once: one thread each
        out, err = build.communicate(timeout=600)
        assert build.returncode == 0, err[-2000:]
        folders.append([Path(line.split(" ", 1)[1]) for line in out.splitlines()
                        if line.startswith("ARTIFACT ")])
    timing = {STAMP, TIMINGS}  # build durations: everything else must be equal (metrics.json too)
    assert [len(paths) for paths in folders] == [2, 2]
    for first, second in zip(*folders):
        assert first != second and first.name == second.name
        names = sorted(p.name for p in first.iterdir() if p.name not in timing)
        assert names == sorted(p.name for p in second.iterdir() if p.name not in timing)
        assert {"tokenizer.json", "model.safetensors"} <= set(names)
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), f"{first.name}/{name}"
        assert fingerprint(first) == fingerprint(second)  # what the results' provenance shows


def test_reward_model_built_before_the_deterministic_vocabulary_is_rebuilt(fake_imdb, monkeypatch):
    profile = get_profile("tiny", [s for s in SHRUNK.split() if s.startswith("reward.")])
    folder = ensure_reward_model(profile)
    stamp = read_stamp(folder)
    (folder / STAMP).write_text(json.dumps({**stamp, "code_version": 0}))  # as an older build left it
    rebuilt = []
    monkeypatch.setattr(reward, "build_reward_model", lambda profile, out: rebuilt.append(out))
    ensure_reward_model(profile)
    assert rebuilt  # stale: its vocabulary came from tokenizers' trainer

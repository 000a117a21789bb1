"""A deterministic WordPiece vocabulary: the reward tokenizer's, the same on every run.

`tokenizers`' WordPieceTrainer gives a different vocabulary from run to run on the same texts
(upstream issue 1794: the `##` tokens get their ids in hash-map order, and those ids break ties
between merges of equal count). This is the same training procedure written out in Python with
every order fixed: BPE merges over pre-tokenized words, with continuing pieces marked `##`
(BERT's WordPiece vocabularies are trained this way), ties broken by the pieces' text.

    words      the texts normalised and pre-tokenized by the tokenizer's own normalizer and
               pre-tokenizer (cased BERT: split on whitespace and punctuation), counted
    alphabet   the `limit_alphabet` most frequent characters; a word starts with a character and
               continues with `##` + character
    merge      repeatedly, the adjacent pair (a, b) with the largest count (count ties: the
               smallest (a, b) as strings) becomes one piece a + b without b's `##`, until the
               vocabulary holds `vocab_size` pieces or no pair occurs `min_frequency` times

The vocabulary is specials, alphabet, `##` alphabet (each sorted), then pieces in merge order.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from itertools import pairwise

PREFIX = "##"  # marks a piece that continues a word


def count_words(texts, normalizer, pre_tokenizer) -> Counter:
    """How often each pre-tokenized word occurs in `texts` (tokenizers' own normalizer and
    pre-tokenizer objects, so that training sees the words the tokenizer will see)."""
    counts = Counter()
    for text in texts:
        normalized = normalizer.normalize_str(text) if normalizer is not None else text
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
    return counts


def _alphabet(words: Counter, limit: int) -> set[str]:
    chars = Counter()
    for word, count in words.items():
        for char in word:
            chars[char] += count
    ranked = sorted(chars.items(), key=lambda item: (-item[1], item[0]))  # ties: by character
    return {char for char, _ in ranked[:limit]}


def _split(word: str, alphabet: set[str]) -> list[str]:
    """`word` as its first character then `##` characters; characters outside the alphabet are
    left out (as tokenizers' trainer does)."""
    chars = [char for char in word if char in alphabet]
    return [piece if i == 0 else PREFIX + piece for i, piece in enumerate(chars)]


def _merge(pieces: list[str], pair: tuple[str, str], joined: str) -> list[str]:
    out, i = [], 0
    while i < len(pieces):
        if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
            out.append(joined)
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return out


def train_wordpiece_vocab(words: Counter, vocab_size: int, special_tokens: list[str],
                          min_frequency: int = 2, limit_alphabet: int = 1000) -> list[str]:
    """The vocabulary (pieces in id order) of WordPiece trained on word counts `words`."""
    alphabet = _alphabet(words, limit_alphabet)
    vocab = list(special_tokens)
    split = [(_split(word, alphabet), count) for word, count in sorted(words.items())]
    vocab += sorted(alphabet) + sorted({p for pieces, _ in split for p in pieces[1:]})
    known = set(vocab)
    pieces = [p for p, _ in split]
    freq = [c for _, c in split]

    counts = Counter()  # pair -> occurrences in the corpus; where: pair -> words holding it
    where = defaultdict(set)
    for i, word in enumerate(pieces):
        for pair in pairwise(word):
            counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in counts.items()]  # tuple order: the tie-break
    heapq.heapify(heap)

    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if -negative != counts[pair]:  # stale entry: requeue the current count if any
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], pair))
            continue
        if -negative < min_frequency:
            break
        joined = pair[0] + pair[1].removeprefix(PREFIX)
        if joined not in known:  # two pairs can spell the same piece: it is added once
            known.add(joined)
            vocab.append(joined)
        grown = set()  # pairs whose count rose: they need a fresh heap entry
        for i in where.pop(pair):  # any order: the updates add up to the same counts
            old = pieces[i]
            new = _merge(old, pair, joined)
            if len(new) == len(old):  # the word lost this pair in an earlier merge
                continue
            for gone in pairwise(old):
                counts[gone] -= freq[i]
            for added in pairwise(new):
                counts[added] += freq[i]
                where[added].add(i)
                grown.add(added)
            pieces[i] = new
        for other in grown:  # pairs that shrank keep an entry too high: requeued when popped
            heapq.heappush(heap, (-counts[other], other))
        counts.pop(pair, None)
    return vocab

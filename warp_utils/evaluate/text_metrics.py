"""Text statistics of sampled completions: distinct-n (diversity) and VADER (a sentiment lexicon
independent of the reward model). Pure functions of strings."""

from __future__ import annotations

import functools
from collections.abc import Sequence


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / total n-grams over all `texts`, tokens split on whitespace (case kept).
    n-grams never span two texts. No n-gram at all (empty or too-short texts): 0.0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string")
    grams = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound score of each text, in [-1, 1] (lexicon shipped with the package, offline)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string")
    analyzer = _vader()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]

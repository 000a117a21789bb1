"""What RL changed in the text: before/after tables, the most-shifted words, and completions
coloured token by token by log pi_theta / pi_sft.

Pure functions over texts, rewards and tensors (notebook 05 draws them); `token_log_ratios` is the
only one that runs models, with the same masks and temperature as `rl`.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from ..core.rl import Rollout, next_token_log_probs, taken_log_probs


def before_after_table(prompts: Sequence[str], before: Sequence[str], before_rewards: Sequence[float],
                       after: Sequence[str], after_rewards: Sequence[float],
                       names: tuple[str, str] = ("SFT", "WARP")) -> pd.DataFrame:
    """One row per prompt: the prompt, each policy's completion and its reward, and the reward
    change. The inputs are aligned lists (the same prompts, in the same order)."""
    lengths = {len(prompts), len(before), len(before_rewards), len(after), len(after_rewards)}
    if len(lengths) != 1:
        raise ValueError(f"prompts, completions and rewards must have the same length, got {sorted(lengths)}")
    a, b = names
    return pd.DataFrame({
        "prompt": list(prompts),
        f"{a} completion": list(before), f"r {a}": [float(r) for r in before_rewards],
        f"{b} completion": list(after), f"r {b}": [float(r) for r in after_rewards],
        "reward change": [float(rb) - float(ra) for ra, rb in zip(before_rewards, after_rewards)],
    })


def words(text: str) -> list[str]:
    """The words of `text` for counting: lower case, punctuation dropped ("Best," and "best" are
    one word; an apostrophe stays inside a word: "don't")."""
    return re.findall(r"[a-z']+", text.lower())


def token_shift(before: Sequence[str], after: Sequence[str], tokenize: Callable[[str], list[str]] = str.split,
                min_count: int = 3) -> pd.DataFrame:
    """log(freq_after / freq_before) of every token seen at least `min_count` times in total.

    freq = (count + 1) / (total + V), add-one smoothing over the joint vocabulary V, so a token
    absent on one side has a finite ratio. Sorted by the log ratio, largest first (the words RL
    made more frequent at the top, the words it suppressed at the bottom)."""
    if isinstance(before, str) or isinstance(after, str):
        raise TypeError("before and after must be lists of texts, got a string")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    count_before = Counter(t for text in before for t in tokenize(text))
    count_after = Counter(t for text in after for t in tokenize(text))
    vocab = set(count_before) | set(count_after)
    total_before, total_after = sum(count_before.values()), sum(count_after.values())
    rows = [
        {"token": token, "count before": count_before[token], "count after": count_after[token],
         "log ratio": math.log((count_after[token] + 1) / (total_after + len(vocab)))
         - math.log((count_before[token] + 1) / (total_before + len(vocab)))}
        for token in vocab if count_before[token] + count_after[token] >= min_count
    ]
    table = pd.DataFrame(rows, columns=["token", "count before", "count after", "log ratio"])
    return table.sort_values(["log ratio", "token"], ascending=[False, True], ignore_index=True)


@torch.no_grad()
def token_log_ratios(policy, reference, rollout: Rollout, tokenizer, temperature: float = 1.0):
    """For each completion, its tokens (as text) and log pi_theta(y_t | .) - log pi_ref(y_t | .),
    up to and including the first EOS: a list of (tokens, values) pairs. The values of a row sum
    to the sampled KL estimate log pi_theta(y|x) - log pi_ref(y|x) of that completion."""
    ids, mask = rollout.input_ids, rollout.attention_mask
    log_p = taken_log_probs(next_token_log_probs(policy, ids, mask, temperature), ids)
    log_q = taken_log_probs(next_token_log_probs(reference, ids, mask, temperature), ids)
    keep = rollout.response_mask[:, 1:].bool()  # row t of log_p scores token t + 1
    out = []
    for row in range(ids.shape[0]):
        positions = keep[row].nonzero().flatten()
        tokens = [tokenizer.decode([int(ids[row, t + 1])]) for t in positions]
        out.append((tokens, (log_p[row, positions] - log_q[row, positions]).tolist()))
    return out


def colour_tokens_html(tokens: Sequence[str], values: Sequence[float], scale: float | None = None) -> str:
    """Tokens as HTML spans on a background from red (value < 0: less likely than under SFT) to
    green (value > 0: more likely); the value in each span's tooltip. scale: the |value| of full
    colour (default: the largest |value|)."""
    if len(tokens) != len(values):
        raise ValueError(f"tokens and values must have the same length, got {len(tokens)} and {len(values)}")
    if scale is None:
        scale = max((abs(v) for v in values), default=0.0) or 1.0
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    spans = []
    for token, value in zip(tokens, values):
        alpha = min(1.0, abs(value) / scale)
        rgb = "0,160,0" if value > 0 else "220,0,0"
        spans.append(f'<span title="{value:+.3f}" style="background: rgba({rgb},{alpha:.2f}); '
                     f'white-space: pre">{html.escape(token)}</span>')
    return "".join(spans)

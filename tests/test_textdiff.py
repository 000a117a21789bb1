"""warp_utils.evaluate.textdiff against hand counts and the rl module's own log-probabilities."""

import math

import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from warp_utils.core import rl
from warp_utils.evaluate import textdiff


def tiny_gpt2(seed, vocab_size=30):
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=vocab_size, n_positions=32,
                        initializer_range=0.5)
    return GPT2LMHeadModel(config).eval()


class IdTokenizer:
    def decode(self, ids):
        return "".join(f"<{i}>" for i in ids)


def test_token_shift_matches_hand_counts_with_add_one_smoothing():
    before = ["bad film bad", "film ok"]
    after = ["great film", "great great ok"]
    table = textdiff.token_shift(before, after, min_count=1).set_index("token")
    vocab, n_before, n_after = 4, 5, 5  # bad film ok great; 5 words on each side
    for token, (cb, ca) in {"bad": (2, 0), "film": (2, 1), "ok": (1, 1), "great": (0, 3)}.items():
        expected = math.log((ca + 1) / (n_after + vocab)) - math.log((cb + 1) / (n_before + vocab))
        assert table.loc[token, "log ratio"] == pytest.approx(expected, abs=1e-12)
        assert (table.loc[token, "count before"], table.loc[token, "count after"]) == (cb, ca)
    ordered = textdiff.token_shift(before, after, min_count=1)["token"].tolist()
    assert ordered[0] == "great" and ordered[-1] == "bad"
    assert set(textdiff.token_shift(before, after, min_count=3)["token"]) == {"film", "great"}


def test_words_lowercases_and_drops_punctuation_but_keeps_apostrophes():
    assert textdiff.words("Best, best! I DON'T know... 10/10") == ["best", "best", "i", "don't", "know"]
    assert textdiff.words("") == []


def test_plot_token_shift_draws_the_top_and_bottom_ratios_coloured_by_sign():
    import matplotlib
    import matplotlib.pyplot as plt

    from warp_utils.evaluate import plots

    before = ["bad film bad dull", "film ok dull"] * 3
    after = ["great film", "great great ok fun"] * 3
    shift = textdiff.token_shift(before, after, tokenize=textdiff.words, min_count=1)
    ax = plots.plot_token_shift(shift, top=2, names=("WARP", "SFT"))
    shown = pd.concat([shift.head(2), shift.tail(2)])
    assert [t.get_text() for t in ax.get_yticklabels()] == shown["token"].tolist()
    assert [bar.get_width() for bar in ax.patches] == pytest.approx(shown["log ratio"].tolist())
    green, red = matplotlib.colors.to_rgba("tab:green"), matplotlib.colors.to_rgba("tab:red")
    assert [bar.get_facecolor() for bar in ax.patches] == [green if r > 0 else red for r in shown["log ratio"]]
    assert ax.get_xlabel() == "log(freq WARP / freq SFT)"
    with pytest.raises(ValueError, match="at least 1 row"):
        plots.plot_token_shift(shift.iloc[:0])
    with pytest.raises(ValueError, match="top"):
        plots.plot_token_shift(shift, top=0)
    plt.close("all")


def test_token_shift_rejects_bad_input():
    with pytest.raises(TypeError, match="lists of texts"):
        textdiff.token_shift("a b", ["a"])
    with pytest.raises(ValueError, match="min_count"):
        textdiff.token_shift(["a"], ["a"], min_count=0)


def test_before_after_table_aligns_rows_and_computes_the_change():
    table = textdiff.before_after_table(["p1", "p2"], ["s1", "s2"], [0.5, -1.0], ["w1", "w2"],
                                        [1.5, -2.0])
    assert table["prompt"].tolist() == ["p1", "p2"]
    assert table["WARP completion"].tolist() == ["w1", "w2"]
    assert table["reward change"].tolist() == pytest.approx([1.0, -1.0])
    with pytest.raises(ValueError, match="same length"):
        textdiff.before_after_table(["p1"], ["s1", "s2"], [0.5], ["w1"], [1.5])


def test_colour_tokens_html_escapes_and_colours_by_sign():
    out = textdiff.colour_tokens_html(["<b>", " good", " bad"], [0.0, 2.0, -1.0])
    assert out.count("<span") == 3 and "&lt;b&gt;" in out and "<b>" not in out
    good, bad = out.split("</span>")[1], out.split("</span>")[2]
    assert "0,160,0" in good and "rgba(0,160,0,1.00)" in good  # full colour at the largest |value|
    assert "220,0,0" in bad and ",0.50)" in bad
    with pytest.raises(ValueError, match="same length"):
        textdiff.colour_tokens_html(["a"], [1.0, 2.0])


def test_token_log_ratios_sum_to_the_sampled_kl_estimate_and_stop_at_eos():
    policy, reference = tiny_gpt2(0), tiny_gpt2(1)
    eos = 0
    prompt_ids = torch.tensor([[5, 6, 7], [0, 8, 9]])  # second row left-padded
    prompt_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    completions = torch.tensor([[3, 4, 0, 11, 12], [13, 14, 15, 16, 17]])  # EOS then filler; none
    rollout = rl.rollout_from_sequences(torch.cat([prompt_ids, completions], 1), prompt_mask, eos)
    rows = textdiff.token_log_ratios(policy, reference, rollout, IdTokenizer(), temperature=0.7)
    batch = (rollout.input_ids, rollout.attention_mask, rollout.response_mask)
    with torch.no_grad():
        expected = (rl.sequence_logprobs(policy, *batch, temperature=0.7)
                    - rl.sequence_logprobs(reference, *batch, temperature=0.7))
    assert [tokens for tokens, _ in rows] == [["<3>", "<4>", "<0>"], ["<13>", "<14>", "<15>", "<16>", "<17>"]]
    for (_, values), total in zip(rows, expected.tolist()):
        assert sum(values) == pytest.approx(total, abs=1e-5)
        assert any(abs(v) > 1e-3 for v in values)  # two different models: the ratio is not trivial

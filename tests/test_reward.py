"""The reward model: text format (truncation + eos), Bradley-Terry training with trl, the scorer,
the saved folder and the build-once artifact. Small models on the fake IMDB of conftest.py."""

import dataclasses
import json
import random

import datasets
import pytest
import torch
from conftest import fake_review
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardTrainer

from warp_utils.inputs import reward
from warp_utils.store.artifacts import STAMP, fingerprint, read_stamp, read_timings
from warp_utils.config import artifacts_dir
from warp_utils.execution.overrides import get_profile
from warp_utils.inputs.data import clean_text, preference_pairs
from warp_utils.inputs.reward import (
    RewardScorer,
    base_reward_model,
    ensure_reward_model,
    fit_pairs,
    fit_texts,
    load_reward_scorer,
    pair_accuracy,
    read_metrics,
    reward_training_args,
    train_reward_model,
    train_reward_tokenizer,
)

SEED = 0
SMALL = dataclasses.replace(
    get_profile("tiny").reward,
    vocab_size=300, n_layers=1, dim=32, n_heads=2, hidden_dim=64, tokenizer_reviews=200,
    num_pairs=40, num_eval_pairs=40, max_length=48, epochs=2.0, batch_size=8, lr=3e-3,
    warmup_steps=2, score_batch_size=16,
)
LONG = "An endless review. " + " ".join(["Unbelievably"] * 400)  # cuts fall inside words


def fake_split(rows_per_label: int, seed: int) -> datasets.Dataset:
    rng = random.Random(seed)
    rows = [(clean_text(fake_review(rng, label, rng.randint(3, 60))), label)
            for label in (0, 1) for _ in range(rows_per_label)]
    return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [l for _, l in rows]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small reward model before and after Bradley-Terry training on 150 fake pairs."""
    train, test = fake_split(150, seed=1), fake_split(100, seed=2)
    model, tokenizer = base_reward_model(SMALL, train, SEED)
    eval_pairs = preference_pairs(test, 100, SEED)
    before = pair_accuracy(RewardScorer(model, tokenizer, SMALL.max_length), eval_pairs)
    out = train_reward_model(model, tokenizer, preference_pairs(train, 150, SEED), SMALL, SEED,
                             str(tmp_path_factory.mktemp("trainer")))
    after = pair_accuracy(RewardScorer(model, tokenizer, SMALL.max_length), eval_pairs)
    return {"model": model, "tokenizer": tokenizer, "before": before, "after": after, **out}


@pytest.fixture
def small_reward_profile(fake_imdb):
    """The tiny profile with a reward model small enough to build in a few seconds."""
    return dataclasses.replace(get_profile("tiny"), name="small", reward=SMALL)


# -----------------------------------------------------------------------------
# the text format


def test_fit_texts_cuts_long_texts_to_max_length(trained):
    tokenizer = trained["tokenizer"]
    texts = ["A short one.", LONG, "", "Ends with eos already[SEP]"]
    fitted = fit_texts(texts, tokenizer, max_length=32)
    lengths = [len(ids) for ids in tokenizer(fitted)["input_ids"]]
    assert max(lengths) <= 32
    assert lengths[1] >= 30  # cut near the limit, not far below it
    assert fitted[0] == "A short one.[SEP]" and fitted[2] == "[SEP]"
    assert fitted[3] == texts[3]  # trl's rule: no second eos
    assert LONG.startswith(fitted[1].removesuffix("[SEP]"))  # a prefix of the text, cut at a token
    assert all(tokenizer(text)["input_ids"][-1] == tokenizer.eos_token_id for text in fitted)


def test_fitting_from_heads_equals_fitting_whole_texts(trained):
    """fit_encoded tokenizes only a head of each text (cut at a space), and the whole text when the
    head runs out of tokens: the result must be that of tokenizing every text whole."""
    tokenizer, rng = trained["tokenizer"], random.Random(5)
    texts = [LONG, "", "short", "Ends with eos already[SEP]", "a " * 10 + "b" * 3000 + " c" * 500,  # head: 10 tokens
             "x" * 5000, "word " * 30, "  leading and  double  spaces " * 20, "punct,uation!!" * 200,
             *(fake_review(rng, rng.randint(0, 1), rng.randint(1, 300)) for _ in range(60))]
    whole = reward.fit_encoded(texts, tokenizer, SMALL.max_length, chars_per_token=None)
    for chars_per_token in (1, 2, 8):  # 1: most heads run short and fall back to the whole text
        assert reward.fit_encoded(texts, tokenizer, SMALL.max_length, chars_per_token) == whole
    spans = reward.token_spans(texts, tokenizer, enough=20, chars_per_token=1)
    full = reward.token_spans(texts, tokenizer, enough=20, chars_per_token=None)
    for head_spans, whole_spans in zip(spans, full):
        assert len(head_spans) > 20 or head_spans == whole_spans  # at least enough + 1, or all
        assert head_spans == whole_spans[: len(head_spans)]


def test_long_pair_survives_trainer_preparation(trained, tmp_path):
    tokenizer = trained["tokenizer"]
    pairs = datasets.Dataset.from_dict({"chosen": [LONG, "good"], "rejected": ["dull", LONG]})
    model, _ = base_reward_model(SMALL, fake_split(5, seed=3), SEED)
    args = reward_training_args(SMALL, str(tmp_path), SEED, len(pairs))
    fitted = fit_pairs(pairs, tokenizer, SMALL.max_length)
    prepared = RewardTrainer(model=model, args=args, train_dataset=fitted,
                             processing_class=tokenizer).train_dataset
    assert len(prepared) == len(pairs)  # trl would drop the long pairs if we did not cut them
    for ids in list(prepared["chosen_ids"]) + list(prepared["rejected_ids"]):
        assert len(ids) <= SMALL.max_length
        assert ids[-1] == tokenizer.eos_token_id
    assert len(prepared["chosen_ids"][0]) >= SMALL.max_length - 2


def test_fit_pairs_ids_are_what_trl_tokenizes_from_the_texts(trained, tmp_path):
    tokenizer = trained["tokenizer"]
    pairs = datasets.Dataset.from_dict({"chosen": [LONG, "good", "Ends[SEP]"], "rejected": ["dull", LONG, ""]})
    fitted = fit_pairs(pairs, tokenizer, SMALL.max_length)
    model, _ = base_reward_model(SMALL, fake_split(5, seed=3), SEED)
    args = reward_training_args(SMALL, str(tmp_path), SEED, len(pairs))
    texts_only = fitted.remove_columns(["chosen_ids", "rejected_ids"])  # trl tokenizes these itself
    prepared = RewardTrainer(model=model, args=args, train_dataset=texts_only,
                             processing_class=tokenizer).train_dataset
    assert prepared["chosen_ids"][:] == fitted["chosen_ids"][:]
    assert prepared["rejected_ids"][:] == fitted["rejected_ids"][:]


def test_dropped_pairs_are_an_error(trained, monkeypatch, tmp_path):
    monkeypatch.setattr(reward, "fit_pairs", lambda pairs, *_: pairs)  # no truncation
    model, tokenizer = base_reward_model(SMALL, fake_split(5, seed=3), SEED)
    pairs = datasets.Dataset.from_dict({"chosen": [LONG, "good"], "rejected": ["bad", "awful"]})
    with pytest.raises(RuntimeError, match="kept 1 of 2 pairs"):
        train_reward_model(model, tokenizer, pairs, SMALL, SEED, str(tmp_path))


# -----------------------------------------------------------------------------
# training


def test_training_raises_heldout_pair_accuracy(trained):
    assert trained["after"] >= 0.8
    assert trained["after"] > trained["before"] + 0.2
    losses = [point["loss"] for point in trained["loss_history"]]
    assert len(losses) >= 5  # a curve, not a single point
    assert sum(losses[-3:]) < sum(losses[:3])
    assert trained["num_pairs"] == 150


class LengthScorer:
    """A stand-in reward model: r(text) = its number of words, so ties are easy to make."""

    batch_size = 2

    def __call__(self, texts):
        return torch.tensor([float(len(text.split())) for text in texts])


def test_pair_accuracy_counts_a_tie_as_half():
    pairs = datasets.Dataset.from_dict({
        "chosen": ["a b c", "a b", "a", "a b", "a b c d"],
        "rejected": ["a", "a b", "a b", "c d", "a"],
    })  # win, tie, loss, tie, win: (1 + 0.5 + 0 + 0.5 + 1) / 5, across batches of 2
    assert pair_accuracy(LengthScorer(), pairs) == pytest.approx(3 / 5, abs=1e-15)
    ties = datasets.Dataset.from_dict({"chosen": ["a b"] * 3, "rejected": ["c d"] * 3})
    assert pair_accuracy(LengthScorer(), ties) == 0.5  # no preference at all: chance


def test_trained_model_prefers_positive_words(trained):
    scorer = RewardScorer(trained["model"], trained["tokenizer"], SMALL.max_length)
    good, bad = scorer(["a wonderful superb film, beautiful and moving",
                        "a dull awful film, boring and ugly"])
    assert good > bad


# -----------------------------------------------------------------------------
# the scorer


def test_scorer_batches_consistently_without_grad(trained):
    model, tokenizer = trained["model"], trained["tokenizer"]
    model.train()  # the scorer must switch to eval (no dropout)
    texts = ["great", LONG, "the plot was dull and the actor awful", "", "wonderful " * 20]
    batched = RewardScorer(model, tokenizer, SMALL.max_length, batch_size=3)(texts)
    single = RewardScorer(model, tokenizer, SMALL.max_length, batch_size=1)
    one_by_one = torch.cat([single([text]) for text in texts])
    assert batched.shape == (len(texts),) and batched.dtype == torch.float32
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    assert not batched.requires_grad and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert RewardScorer(model, tokenizer, SMALL.max_length)([]).shape == (0,)


def test_scorer_rejects_bad_inputs(trained):
    model, tokenizer = trained["model"], trained["tokenizer"]
    with pytest.raises(ValueError, match="batch_size"):
        RewardScorer(model, tokenizer, SMALL.max_length, batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        RewardScorer(model, tokenizer, max_length=SMALL.max_length + 1)  # beyond the position table
    with pytest.raises(ValueError, match="max_length"):
        RewardScorer(model, tokenizer, max_length=3)  # [CLS] [SEP] [SEP] leave no room for text
    with pytest.raises(ValueError, match="texts"):
        RewardScorer(model, tokenizer, SMALL.max_length)("a single string, not a list")
    with pytest.raises(ValueError, match="vocab_size"):
        train_reward_tokenizer(["too small"], vocab_size=10)


def test_save_load_round_trip(trained, tmp_path):
    model, tokenizer = trained["model"], trained["tokenizer"]
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    texts = ["great acting", LONG, "awful and boring"]
    expected = RewardScorer(model, tokenizer, SMALL.max_length)(texts)
    loaded = load_reward_scorer(tmp_path, device="cpu")
    assert loaded.max_length == SMALL.max_length  # carried by the tokenizer's model_max_length
    torch.testing.assert_close(loaded(texts), expected, atol=1e-6, rtol=0)
    assert loaded.tokenizer.eos_token == "[SEP]"


# -----------------------------------------------------------------------------
# the artifact


def test_artifact_is_a_loadable_folder_with_metrics(small_reward_profile, tmp_path):
    folder = ensure_reward_model(small_reward_profile)
    assert folder == artifacts_dir(small_reward_profile) / "reward_model"
    assert folder.is_relative_to(tmp_path)  # WARP_DATA_ROOT, never the repository's data/
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.dtype == torch.float32 and model.config.num_labels == 1
    assert tokenizer.convert_ids_to_tokens(tokenizer("good")["input_ids"])[0] == "[CLS]"
    metrics = read_metrics(folder)
    assert metrics["num_pairs"] == SMALL.num_pairs
    assert metrics["num_eval_pairs"] == SMALL.num_eval_pairs
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["loss_history"]
    assert read_stamp(folder)["eval_accuracy"] == metrics["eval_accuracy"]
    assert load_reward_scorer(folder).batch_size == SMALL.score_batch_size


def test_an_identical_rebuild_has_the_same_fingerprint(small_reward_profile):
    folder = ensure_reward_model(small_reward_profile)
    before, timings = fingerprint(folder), read_timings(folder)
    assert timings["build_seconds"] >= timings["train_seconds"] > 0
    assert not any("seconds" in key for key in json.loads((folder / "metrics.json").read_text()))  # in timings only
    assert read_metrics(folder)["train_seconds"] == timings["train_seconds"]  # read back together
    ensure_reward_model(small_reward_profile, fresh=True)
    assert read_timings(folder) != timings  # rebuilt: another duration
    assert fingerprint(folder) == before  # the same files: provenance says "the same reward model"


def test_build_once_reuses_then_rebuilds_when_stale(small_reward_profile, monkeypatch):
    folder = ensure_reward_model(small_reward_profile)
    stamp = folder / STAMP
    built_at = stamp.stat().st_mtime_ns

    def no_retraining(profile, out):
        raise AssertionError("a fresh artifact was rebuilt")

    with monkeypatch.context() as patch:
        patch.setattr(reward, "build_reward_model", no_retraining)
        assert ensure_reward_model(small_reward_profile) == folder
    assert stamp.stat().st_mtime_ns == built_at

    changed = dataclasses.replace(small_reward_profile, reward=dataclasses.replace(SMALL, lr=1e-3))
    assert ensure_reward_model(changed) == folder
    assert stamp.stat().st_mtime_ns != built_at
    assert json.loads(stamp.read_text())["config"]["reward"]["lr"] == 1e-3

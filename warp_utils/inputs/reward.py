"""The reward model r(x, y): a DistilBERT with one output, trained Bradley-Terry with trl.

Pairs are (chosen = a positive IMDB review, rejected = a negative one); trl's RewardTrainer
minimises -log sigmoid(r(chosen) - r(rejected)). `tiny` builds a cased WordPiece tokenizer and a
small DistilBERT from config; `full` fine-tunes distilbert-base-cased (opt-in, needs the hub).

One text format for training and scoring: the text is cut so that it fits `max_length` tokens,
`[SEP]` is appended as the eos, and the tokenizer wraps it as `[CLS] text [SEP] [SEP]`
(distilbert-base-cased's template plus trl's eos). trl *drops* (does not truncate) pairs longer
than max_length, so we truncate ourselves and check that no pair was lost.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import datasets
import torch
from tokenizers import BertWordPieceTokenizer
from tokenizers.processors import TemplateProcessing
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedTokenizerFast,
    PrinterCallback,
    set_seed,
)
from trl import RewardConfig, RewardTrainer

from ..store.artifacts import build_once, read_stamp, read_timings, write_timings
from ..config import Profile, RewardModelConfig, artifacts_dir, to_dict
from ..execution.overrides import get_profile
from .data import load_imdb, preference_pairs, shuffled_texts
from ..execution.progress import interactive
from ..execution.progress import progress as show_progress
from .wordpiece import count_words, train_wordpiece_vocab

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
EOS = "[SEP]"  # DistilBERT has no eos, but trl appends one to every text: we name it
EVAL_SEED_OFFSET = 1000  # held-out pairs are drawn with another seed than the train pairs
METRICS = "metrics.json"
LOG_POINTS = 50  # about this many points on the training-loss curve
CODE_VERSION = 1  # 1: deterministic WordPiece vocabulary (a reward model built before is stale)


# -----------------------------------------------------------------------------
# tokenizer and model


def train_reward_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Cased WordPiece (BERT's scheme), BERT's special tokens, `[CLS] $A [SEP]` template. The
    vocabulary comes from wordpiece.train_wordpiece_vocab, the same on every run (tokenizers'
    own WordPieceTrainer is not: upstream issue 1794)."""
    if vocab_size < 100:
        raise ValueError(f"vocab_size must be >= 100 (specials + characters), got {vocab_size}")
    blank = BertWordPieceTokenizer(lowercase=False, strip_accents=False)._tokenizer  # cased
    words = count_words(texts, blank.normalizer, blank.pre_tokenizer)  # the words it will see
    vocab = train_wordpiece_vocab(words, vocab_size, SPECIAL_TOKENS)
    wordpiece = BertWordPieceTokenizer(
        {piece: i for i, piece in enumerate(vocab)}, lowercase=False, strip_accents=False
    )
    # Our template, with explicit pair type ids, in place of the BertProcessing it sets.
    wordpiece.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(token, wordpiece.token_to_id(token)) for token in ("[CLS]", "[SEP]")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=wordpiece._tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_distilbert(config: RewardModelConfig, tokenizer) -> DistilBertForSequenceClassification:
    """A DistilBERT of the configured size with a scalar head (num_labels=1), random weights."""
    distilbert_config = DistilBertConfig(
        vocab_size=len(tokenizer),
        n_layers=config.n_layers,
        dim=config.dim,
        n_heads=config.n_heads,
        hidden_dim=config.hidden_dim,
        max_position_embeddings=config.max_length,  # texts are cut to max_length, never longer
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    return DistilBertForSequenceClassification(distilbert_config)


def base_reward_model(config: RewardModelConfig, train: datasets.Dataset, seed: int):
    """(model, tokenizer) before reward training: pretrained (full) or built from config (tiny)."""
    set_seed(seed)  # the random head (and the whole tiny model) are seeded
    if config.pretrained:
        tokenizer = AutoTokenizer.from_pretrained(config.pretrained)
        model = AutoModelForSequenceClassification.from_pretrained(
            config.pretrained, num_labels=1, dtype=torch.float32
        )
    else:
        reviews = shuffled_texts(train, seed)[: config.tokenizer_reviews]
        tokenizer = train_reward_tokenizer(reviews, config.vocab_size)
        model = tiny_distilbert(config, tokenizer)
    tokenizer.eos_token = EOS
    tokenizer.padding_side = "right"  # DistilBERT reads position 0 ([CLS]): pad after it
    tokenizer.model_max_length = config.max_length  # saved with the tokenizer: the scorer reads it
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# -----------------------------------------------------------------------------
# the text format: cut, then append the eos


def with_eos(text: str, eos: str) -> str:
    """trl's rule: append the eos unless the text already ends with it."""
    return text if text.endswith(eos) else text + eos


def _cut(text: str, spans: list[tuple[int, int]], keep: int) -> str:
    """`text` up to the end of its `keep`-th token (`spans`: the tokens' character offsets)."""
    if len(spans) <= keep:
        return text
    return text[: spans[keep - 1][1]] if keep > 0 else ""


def head_at_space(text: str, chars: int) -> str:
    """The start of `text`, cut right before its last space at or before `chars` (the whole text
    when it is not longer, or has no such space). BERT's pre-tokenizer splits at every space and
    its normalizer works character by character, so the tokens of the head are the first tokens
    of the whole text, at the same character offsets."""
    if len(text) <= chars:
        return text
    cut = text.rfind(" ", 1, chars + 1)
    return text[:cut] if cut > 0 else text


def token_spans(texts: list[str], tokenizer, enough: int, chars_per_token: int | None = 8) -> list[list]:
    """Character offsets of each text's tokens (no special tokens): all of them, or at least its
    first `enough` + 1. Only a head of `chars_per_token` x `enough` characters is tokenized (a
    whole IMDB review is ~6 heads of a 128-token reward model: ~4.5 characters per token); a head
    with `enough` tokens or fewer is tokenized again whole. None: every text whole."""
    limit = None if chars_per_token is None else chars_per_token * max(1, enough)
    heads = texts if limit is None else [head_at_space(text, limit) for text in texts]
    # verbose=False: long reviews are expected here, no "sequence too long" warning
    spans = tokenizer(heads, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    short = [i for i, (head, text) in enumerate(zip(heads, texts)) if len(head) < len(text) and len(spans[i]) <= enough]
    if short:  # the head ran out of tokens before the text did: the whole text decides
        whole = tokenizer([texts[i] for i in short], add_special_tokens=False, return_offsets_mapping=True,
                          verbose=False)["offset_mapping"]
        for i, row in zip(short, whole):
            spans[i] = row
    return spans


def fit_encoded(texts: list[str], tokenizer, max_length: int,
                chars_per_token: int | None = 8) -> tuple[list[str], list[list[int]]]:
    """Each text cut at a token boundary so that, eos appended, it encodes to at most
    `max_length` tokens (special tokens included): (the texts with the eos appended, their ids as
    trl would tokenize them: the tokenizer's call with its special tokens). `chars_per_token`:
    see token_spans (the result is the same for any value; None tokenizes every text whole)."""
    texts, eos = list(texts), tokenizer.eos_token  # list(): a datasets Column is not a list
    if eos is None:
        raise ValueError("the reward tokenizer needs an eos token (set tokenizer.eos_token)")
    overhead = len(tokenizer(eos)["input_ids"])  # [CLS] ... [SEP] plus the appended eos
    if max_length <= overhead:
        raise ValueError(f"max_length must be > {overhead} (the special tokens), got {max_length}")
    if not texts:
        return [], []
    spans = token_spans(texts, tokenizer, max_length - overhead, chars_per_token)
    keep = [max_length - overhead] * len(texts)
    fitted, ids = [""] * len(texts), [[] for _ in texts]
    todo = list(range(len(texts)))
    while todo:
        for i in todo:
            fitted[i] = with_eos(_cut(texts[i], spans[i], keep[i]), eos)
        # Re-check: a cut inside a word can re-tokenize into more pieces; then keep one less.
        encoded = tokenizer([fitted[i] for i in todo], verbose=False)["input_ids"]
        for i, row in zip(todo, encoded):
            ids[i] = row
        todo = [i for i, row in zip(todo, encoded) if len(row) > max_length]
        for i in todo:
            keep[i] -= 1
    return fitted, ids


def fit_texts(texts: list[str], tokenizer, max_length: int) -> list[str]:
    """`fit_encoded`'s texts: each cut so that, eos appended, it fits in `max_length` tokens."""
    return fit_encoded(texts, tokenizer, max_length)[0]


def fit_pairs(pairs: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """(chosen, rejected) in the training format: every pair fits, so trl drops none. The token ids
    come along (chosen_ids, rejected_ids: what trl's own per-example tokenization gives, tested),
    so trl skips tokenizing 2 x num_pairs texts one by one."""
    chosen, chosen_ids = fit_encoded(pairs["chosen"], tokenizer, max_length)
    rejected, rejected_ids = fit_encoded(pairs["rejected"], tokenizer, max_length)
    return datasets.Dataset.from_dict({"chosen": chosen, "rejected": rejected,
                                       "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})


# -----------------------------------------------------------------------------
# training


def reward_training_args(config: RewardModelConfig, output_dir: str, seed: int, num_pairs: int):
    """RewardConfig from our config: float32 on CPU, seeded, no checkpoints, no wandb."""
    steps = math.ceil(config.epochs * math.ceil(num_pairs / config.batch_size))
    # RewardConfig defaults to bf16 and gradient checkpointing: both off. transformers 5 renamed
    # gradient_checkpointing to activation_checkpointing: set the new name too (no warning).
    renamed = {}
    if "activation_checkpointing" in RewardConfig.__dataclass_fields__:
        renamed["activation_checkpointing"] = False
    return RewardConfig(
        output_dir=output_dir,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        eos_token=EOS,
        logging_steps=max(1, steps // LOG_POINTS),  # enough points for a loss curve
        save_strategy="no",
        report_to="none",
        disable_tqdm=not interactive(),  # a log file gets no bar redraws
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        **renamed,
    )


def train_reward_model(model, tokenizer, pairs: datasets.Dataset, config: RewardModelConfig,
                       seed: int, output_dir: str) -> dict:
    """Bradley-Terry training of `model`, in place, on (chosen, rejected) `pairs` with trl's
    RewardTrainer. Returns the loss history, the training time and the number of pairs."""
    fitted = fit_pairs(pairs, tokenizer, config.max_length)
    args = reward_training_args(config, output_dir, seed, len(fitted))
    trainer = RewardTrainer(model, args, train_dataset=fitted, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # the metrics dict of every logging step: kept, not printed
    kept = len(trainer.train_dataset)
    if kept != len(pairs):  # trl drops over-long pairs without a word
        raise RuntimeError(
            f"RewardTrainer kept {kept} of {len(pairs)} pairs: some pair is longer than "
            f"max_length={config.max_length} tokens after truncation"
        )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    history = [
        {"step": log["step"], "loss": log["loss"], "accuracy": log.get("accuracy")}
        for log in trainer.state.log_history
        if "loss" in log
    ]
    model.eval()
    return {"loss_history": history, "train_seconds": seconds, "num_pairs": len(pairs)}


# -----------------------------------------------------------------------------
# scoring


def _positive_int(name: str, value, high: int | None = None) -> int:
    integer = isinstance(value, int) and not isinstance(value, bool)
    if not integer or value < 1 or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in [1, {high or 'inf'}], got {value!r}")
    return value


class RewardScorer:
    """r(texts): decoded strings -> float32 rewards, in the training format (same cut, same
    appended eos), batched, without gradients. Texts are plain text: decode policy samples with
    skip_special_tokens=True, so that the reward tokenizer never sees the policy's tokens."""

    def __init__(self, model, tokenizer, max_length: int, batch_size: int = 64):
        self.batch_size = _positive_int("batch_size", batch_size)
        limit = getattr(model.config, "max_position_embeddings", None)
        self.max_length = _positive_int("max_length", max_length, limit)
        fit_texts([], tokenizer, max_length)  # fails now if max_length leaves no room for text
        self.model, self.tokenizer = model.eval(), tokenizer

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("texts must be a list of strings (wrap a single text in a list)")
        self.model.eval()  # no dropout, whatever the caller did with the model
        device = next(self.model.parameters()).device
        texts = fit_texts(texts, self.tokenizer, self.max_length)
        rewards = [torch.zeros(0)]
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(  # right padding: [CLS] stays at position 0
                texts[start : start + self.batch_size], padding=True, padding_side="right",
                return_tensors="pt",
            )
            rewards.append(self.model(**batch.to(device)).logits[:, 0].float().cpu())
        return torch.cat(rewards)


def pair_accuracy(scorer: RewardScorer, pairs: datasets.Dataset, progress: bool = False) -> float:
    """Fraction of pairs with r(chosen) > r(rejected), a tie counting half (no preference is a
    coin flip): 0.5 is chance, and a model that scores every text alike is at 0.5."""
    wins, size = 0.0, scorer.batch_size
    for start in show_progress(range(0, len(pairs), size), "held-out pairs", enabled=progress):
        chunk = pairs[start : start + size]
        chosen, rejected = scorer(chunk["chosen"]), scorer(chunk["rejected"])
        wins += (chosen > rejected).sum().item() + 0.5 * (chosen == rejected).sum().item()
    return wins / len(pairs)


def load_reward_scorer(folder: Path | str, batch_size: int | None = None,
                       device: str | None = None) -> RewardScorer:
    """The scorer of a saved reward model folder; max_length is the tokenizer's model_max_length,
    batch_size the artifact's score_batch_size unless given."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if batch_size is None:
        try:
            batch_size = read_stamp(folder)["config"]["reward"]["score_batch_size"]
        except (FileNotFoundError, KeyError):  # a bare save_pretrained folder
            batch_size = 64
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return RewardScorer(model, tokenizer, tokenizer.model_max_length, batch_size)


def read_metrics(folder: Path | str) -> dict:
    """The reward model's metrics (metrics.json) and how long its build took (timings.json)."""
    return {**json.loads((Path(folder) / METRICS).read_text()), **read_timings(folder)}


# -----------------------------------------------------------------------------
# the artifact


def build_reward_model(profile: Profile, folder: Path) -> dict:
    """Tokenizer + reward model trained on train pairs, scored on held-out test pairs, saved."""
    config, seed = profile.reward, profile.data.seed
    started = time.perf_counter()
    train = load_imdb("train", profile.data)
    model, tokenizer = base_reward_model(config, train, seed)
    train_pairs = preference_pairs(train, config.num_pairs, seed)
    test = load_imdb("test", profile.data)
    eval_pairs = preference_pairs(test, config.num_eval_pairs, seed + EVAL_SEED_OFFSET)
    with tempfile.TemporaryDirectory(prefix="reward_trainer_") as scratch:  # trainer's files
        trained = train_reward_model(model, tokenizer, train_pairs, config, seed, scratch)
    scorer = RewardScorer(model, tokenizer, config.max_length, config.score_batch_size)
    accuracy = pair_accuracy(scorer, eval_pairs, progress=True)
    model.to(torch.float32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    train_seconds = trained.pop("train_seconds")
    metrics = {
        "eval_accuracy": accuracy,
        "num_eval_pairs": len(eval_pairs),
        "parameters": sum(p.numel() for p in model.parameters()),
        **trained,
    }
    (Path(folder) / METRICS).write_text(json.dumps(metrics, indent=2))
    write_timings(folder, build_seconds=time.perf_counter() - started, train_seconds=train_seconds)
    return {key: metrics[key] for key in ("eval_accuracy", "num_pairs")}  # the stamp: no durations


def ensure_reward_model(profile: Profile | str | None = None, fresh: bool = False) -> Path:
    """data/artifacts/<profile>/reward_model/, built once per config (rebuilt when stale)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    folder = artifacts_dir(profile) / "reward_model"
    config = {"data": to_dict(profile.data), "reward": to_dict(profile.reward)}
    return build_once(folder, config, lambda out: build_reward_model(profile, out), fresh=fresh,
                      version=CODE_VERSION)

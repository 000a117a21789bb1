"""Shared fixtures: a fake IMDB folder and a profile small enough to build in seconds."""

import dataclasses
import random

import pandas as pd
import pytest
from browser_support import pytest_collection_modifyitems  # noqa: F401 (browser tests that reuse the notebooks' artifacts run last)

from warp_utils.execution.overrides import get_profile
from warp_utils.execution.runtime import configure_threads

# Unit tests use tiny tensors: one thread avoids OpenMP hand-offs that cost more than the math
# (measured here: a 4x9x32 layer norm + linear takes 0.14 ms on 1 thread, 9 ms on 2 under load).
configure_threads(threads=1)

POSITIVE = ["wonderful", "superb", "moving", "brilliant", "great", "touching", "beautiful", "delightful"]
NEGATIVE = ["awful", "dull", "boring", "terrible", "bad", "tedious", "ugly", "dreadful"]
NEUTRAL = ["the", "film", "movie", "plot", "actor", "story", "scene", "director", "camera", "music", "and", "a", "of", "it", "was"]


def fake_review(rng: random.Random, label: int, words: int) -> str:
    mood = POSITIVE if label else NEGATIVE
    body = [rng.choice(mood if rng.random() < 0.3 else NEUTRAL) for _ in range(words)]
    return " ".join(body[:words // 2]) + " <br /><br />" + " ".join(body[words // 2:]) + "."


def write_fake_imdb(folder, rows_per_label=40, seed=0):
    """train/test parquet files shaped like the local IMDB copy: sorted negative first."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        rows = [
            {"text": fake_review(rng, label, rng.randint(1, 60)), "label": label,
             "rating": 8 if label else 2, "review_id": i}
            for label in (0, 1) for i in range(rows_per_label)
        ]
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture
def fake_imdb(tmp_path, monkeypatch):
    """A fake IMDB in WARP_IMDB_DIR, artifacts under tmp_path (never the repository's data/)."""
    folder = write_fake_imdb(tmp_path / "imdb")
    monkeypatch.setenv("WARP_IMDB_DIR", str(folder))
    monkeypatch.setenv("WARP_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture
def small_profile():
    """The tiny profile, shrunk so that the SFT policy builds in about a second."""
    profile = get_profile("tiny")
    policy = dataclasses.replace(profile.policy, vocab_size=300, n_layer=1, n_embd=32, n_head=2,
                                 n_positions=64, tokenizer_reviews=80, sft_tokens=2000,
                                 block_size=32, sft_batch_size=4, sft_warmup_steps=2)
    return dataclasses.replace(profile, name="small", policy=policy)

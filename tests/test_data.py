import pandas as pd
import pytest

from warp_utils.data import clean_text, load_imdb, preference_pairs


def test_local_folder_is_read_and_cleaned(fake_imdb):
    train = load_imdb("train")
    raw = pd.read_parquet(fake_imdb / "train.parquet")
    assert len(train) == len(raw)
    assert train.column_names == ["text", "label"]
    assert list(train["label"]) == list(raw["label"])
    assert all("<br" not in text for text in train["text"])
    assert any("<br" in text for text in raw["text"])  # the fixture does carry markup


def test_clean_text_strips_markup_and_folds_spaces():
    assert clean_text("Good.<br /><br />Very  good.<BR>End") == "Good. Very good. End"


def test_missing_split_file_names_the_variable(fake_imdb):
    (fake_imdb / "test.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="WARP_IMDB_DIR"):
        load_imdb("test")


def test_offline_without_local_copy_says_both_fixes(monkeypatch):
    monkeypatch.delenv("WARP_IMDB_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as error:
        load_imdb("train")
    message = str(error.value)
    assert "WARP_IMDB_DIR" in message and "HF_HUB_OFFLINE" in message


def test_unknown_split_is_a_value_error(fake_imdb):
    with pytest.raises(ValueError, match="split"):
        load_imdb("validation")


def test_pairs_are_positive_vs_negative_and_seeded(fake_imdb):
    train = load_imdb("train")
    label_of = dict(zip(train["text"], train["label"]))
    pairs = preference_pairs(train, 10, seed=3)
    assert len(pairs) == 10
    assert all(label_of[c] == 1 and label_of[r] == 0 for c, r in zip(pairs["chosen"], pairs["rejected"]))
    assert preference_pairs(train, 10, seed=3)["chosen"] == pairs["chosen"]
    assert preference_pairs(train, 10, seed=4)["chosen"] != pairs["chosen"]
    with pytest.raises(ValueError, match="num_pairs"):
        preference_pairs(train, 41, seed=3)  # 40 reviews per label in the fixture
    assert len(preference_pairs(train, None, seed=3)) == 40

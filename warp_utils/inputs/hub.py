"""Models from the Hugging Face hub (the full profile): fail early, in one message that names the
model and what to set.

Offline (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1) a model is found only in the local cache
(HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). huggingface_hub reads these
variables when it is imported, so we ask it (not os.environ): we then see what from_pretrained
will see.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache


def hub_offline() -> bool:
    """True when from_pretrained may not reach the hub (huggingface_hub's setting at import, or
    TRANSFORMERS_OFFLINE, which transformers maps onto it)."""
    transformers_offline = os.environ.get("TRANSFORMERS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.is_offline_mode()) or transformers_offline


def cache_dir() -> Path:
    return Path(constants.HF_HUB_CACHE)


def is_cached(repo_id: str, cache: str | os.PathLike | None = None) -> bool:
    """Is `repo_id`'s config.json at refs/main in the hub cache (try_to_load_from_cache's rule)?"""
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    return isinstance(found, str)


def hub_error_message(repo_id: str, error: BaseException | None = None, setting: str | None = None,
                      offline: bool | None = None, cache: str | os.PathLike | None = None) -> str:
    """One message: which model (and the config field `setting` that names it), why it cannot be
    loaded, and what to set."""
    offline = hub_offline() if offline is None else offline
    cache = Path(cache) if cache is not None else cache_dir()
    named = f"{repo_id!r}" + (f" ({setting})" if setting else "")
    instead = f", or --set {setting}=<a local save_pretrained folder>" if setting else ""
    if offline:
        message = (f"{named} is not in the Hugging Face cache {cache} and the hub is offline "
                   f"(HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). Unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE "
                   f"on a machine with internet access to download it once, or set HF_HUB_CACHE (or "
                   f"HF_HOME) to a cache that holds it{instead}.")
    else:
        message = (f"could not load {named} from the Hugging Face hub: check the name and internet "
                   f"access, or set HF_HUB_OFFLINE=1 and HF_HUB_CACHE (or HF_HOME) to a cache that "
                   f"holds it{instead}.")
    if error is not None:
        first_line = (str(error).strip().splitlines() or [""])[0]
        message += f" ({type(error).__name__}: {first_line})"
    return message


def check_hub_available(repo_id: str, setting: str | None = None, offline: bool | None = None,
                        cache: str | os.PathLike | None = None) -> None:
    """Raise OSError (the CLI's exit 2) at once when `repo_id` cannot load: offline and not cached.
    A local folder always passes; online, the download itself is the check."""
    if Path(repo_id).expanduser().is_dir():
        return
    offline = hub_offline() if offline is None else offline
    if offline and not is_cached(repo_id, cache):
        raise OSError(hub_error_message(repo_id, setting=setting, offline=True, cache=cache))

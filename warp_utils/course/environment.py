"""Is everything the course imports installed? One message that says what to install.

The notebooks' first cell and the CLI call `check_environment()` before anything heavy, so a
missing package is one line naming it and the command that fixes it, not a traceback deep in
an import.
"""

from __future__ import annotations

import importlib.util

# import name -> pip name, for every run-time dependency of pyproject.toml
REQUIRED = {"torch": "torch", "transformers": "transformers", "trl": "trl", "datasets": "datasets",
            "tokenizers": "tokenizers", "accelerate": "accelerate", "pandas": "pandas",
            "matplotlib": "matplotlib", "ipywidgets": "ipywidgets", "tqdm": "tqdm",
            "vaderSentiment": "vaderSentiment", "scipy": "scipy", "sklearn": "scikit-learn"}


def missing_packages() -> list[str]:
    """The pip names of the required packages that cannot be imported here."""
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def check_environment() -> None:
    """ImportError naming every missing package and what to run, or nothing."""
    missing = missing_packages()
    if missing:
        torch_first = "pip install torch, then " if "torch" in missing else ""
        raise ImportError(f"missing package{'s' if len(missing) > 1 else ''}: {', '.join(missing)}. "
                          f"Install the course into this environment: {torch_first}pip install -e . "
                          f"(from the repository root; in Colab: !pip install -e . then restart the runtime)")

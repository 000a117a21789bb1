"""Where a WARP run directory keeps its weights, checkpoints and metrics (the I/O of warp.py).

    run_dir/iter_<i>/run_<m>/   theta_m (save_pretrained + tokenizer), ema.safetensors,
                                metrics.csv (its T rows); checkpoint.pt while it trains
    run_dir/iter_<i>/slerp/     theta_slerp_i           run_dir/iter_<i>/init/   theta_init_i (LITI)
    run_dir/final/              theta_slerp_I           run_dir/metrics.csv      every run's rows

Each folder is an artifact (artifacts.build_once): stamped last with the config it is a function
of, verified on load, rebuilt when stale or damaged, resumed when interrupted.

A run (i, m) is a function of its *run config*: the WarpConfig fields of RUN_FIELDS, the
sampling settings, i, m, and fingerprints of theta_init, pi_sft, the prompts and the reward
model, plus STEP_VERSION. Not of I, M or eta: so a finished run with the same config in another
run directory of the profile is hard-linked instead of trained again.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .artifacts import CHECKPOINT, is_fresh
from ..execution.progress import quiet_loading
from ..config import SamplingConfig, WarpConfig, to_dict
from ..core.sampling import sampler_revision
from ..core.weights import StateDict

# Bump when the numerics of one RL step change (rl.rl_step, the optimiser): every run trained by
# older code is then stale, never reused. A change to one sampler only bumps that sampler's
# revision (sampling.sampler_revision, in the run config): other families' runs stay fresh.
STEP_VERSION = 5  # 3: the lean KV-cache sampler (inverse-CDF draw) replaced HF generate; 4: log-probs
# with the temperature on the hidden states (lm_head(h / T)) and, without a reference, by logsumexp;
# 5: a run folder also keeps the batches of its KL-measuring steps (SAMPLES_FILE; weights unchanged)
# The WarpConfig fields one run (i, m) depends on; I, M and eta only shape what happens around it.
RUN_FIELDS = ("T", "mu", "beta", "lr", "batch_size", "baseline", "seed", "max_grad_norm")
METRIC_COLUMNS = ["iteration", "run", "step", "reward_mean", "reward_std", "kl_to_anchor",
                  "kl_to_sft", "kl_to_sft_sampled", "response_len", "loss"]
EMA_FILE = "ema.safetensors"
METRICS_FILE = "metrics.csv"
SAMPLES_FILE = "samples.jsonl.gz"  # the sampled batch of every KL-measuring step, for the judges


# ----------------------------------------------------------------------------- fingerprints


def state_fingerprint(state: StateDict) -> str:
    """A hash of the bytes of every tensor (names included)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def prompts_fingerprint(prompts) -> str:
    """A hash of the token ids, row by row, each written as json.dumps writes a list of ints."""
    digest = hashlib.sha256()
    for ids in prompts:
        digest.update(f"[{', '.join(map(str, ids))}]".encode())  # = json.dumps(list(ids)), 3x faster
    return digest.hexdigest()[:16]


def scorer_fingerprint(reward_scorer) -> str | None:
    """The reward model's weights when the scorer exposes them (`.model`); None for a plain callable."""
    model = getattr(reward_scorer, "model", None)
    return state_fingerprint(model.state_dict()) if model is not None else None


def shared_inputs(components, prompts) -> dict:
    """The fingerprints every run of a train_warp call shares: pi_sft, prompts, reward model, and
    the revision of the sampler that draws the policy's completions (only for a revised one)."""
    return {"theta_sft": state_fingerprint(components.policy.state_dict()),
            "prompts": prompts_fingerprint(prompts),
            "reward_model": scorer_fingerprint(components.reward_scorer),
            **sampler_revision(components.policy)}


def run_config(config: WarpConfig, sampling: SamplingConfig, iteration: int, run: int,
               theta_init: StateDict, inputs: dict) -> dict:
    """Everything run m of iteration i is a function of: equal run configs, bitwise-equal runs."""
    return {"warp": {name: getattr(config, name) for name in RUN_FIELDS}, "sampling": to_dict(sampling),
            "iteration": iteration, "run": run, "theta_init": state_fingerprint(theta_init), **inputs}


# ----------------------------------------------------------------------------- weights


def save_weights(template, state: StateDict, tokenizer, folder: Path) -> None:
    """`state` as a save_pretrained folder (loadable with AutoModelForCausalLM) with the tokenizer."""
    with torch.device("meta"):  # the architecture without weights: `state`'s tensors are put in, not copied
        model = type(template)(template.config)
    model.load_state_dict(state, assign=True)
    model.tie_weights()  # tied names share one tensor again, as in a loaded model
    model.generation_config = copy.deepcopy(template.generation_config)
    # transformers silently writes nothing on ranks other than 0 once torch.distributed is
    # initialised; here each rank saves the runs it trained, into folders of its own.
    model.should_save_on_this_rank = lambda is_main_process: True
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def load_weights(template, folder: Path) -> StateDict:
    """The state dict saved in `folder`, keyed like `template.state_dict()` (tied weights too)."""
    quiet_loading()
    # the fresh model's own tensors, not copies (no one else holds them): loading costs one model's
    # memory, not two (tied weights stay one tensor under both names)
    model = type(template).from_pretrained(folder, dtype=torch.float32)
    return {name: tensor.detach() for name, tensor in model.state_dict().items()}


def save_ema(state: StateDict, folder: Path) -> None:
    """The run's final EMA anchor, beside its weights. safetensors refuses two names on one storage
    (tied weights): those get a copy of their own, the rest are written as they are."""
    seen, untied = set(), {}
    for name, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        untied[name] = tensor.contiguous().clone() if pointer in seen else tensor.contiguous()
        seen.add(pointer)
    save_file(untied, folder / EMA_FILE)


def load_ema(folder: Path) -> StateDict:
    return load_file(folder / EMA_FILE)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, step: int, policy, anchor, optimizer, rows: list[dict]) -> None:
    """The state of a run after `step`, inside the run's own folder, written atomically."""
    state = {"step": step, "policy": policy.state_dict(), "anchor": anchor.state_dict(),
             "optimizer": optimizer.state_dict(), "rows": rows, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    temporary = folder / (CHECKPOINT + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, folder / CHECKPOINT)  # a crash mid-write keeps the previous checkpoint


def load_checkpoint(folder: Path, policy, anchor, optimizer) -> tuple[int, list[dict]]:
    """Restore a run from its checkpoint, if any: (last step done, metric rows so far)."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return 0, []
    state = torch.load(path, weights_only=False)
    policy.load_state_dict(state["policy"])
    anchor.load_state_dict(state["anchor"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["step"], state["rows"]


# ----------------------------------------------------------------------------- sharing runs


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a file of a finished run (no extra disk: a GPT-2 run is ~0.5 GB), else copy it.
    Safe because a finished run folder is never rewritten in place: it is read, or removed whole."""
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, target)


def find_run(candidates, relative: str, config: dict, version: int) -> Path | None:
    """A fresh folder `relative` (e.g. iter_1/run_2) built from `config` in a candidate run dir."""
    for run_dir in candidates:
        folder = Path(run_dir) / relative
        if is_fresh(folder, config, version):
            return folder
    return None


def link_run(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, copy_function=_link_or_copy)


# ----------------------------------------------------------------------------- metrics


def write_rows(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS).to_csv(path, index=False)


def read_rows(path: Path) -> list[dict]:
    return pd.read_csv(path).to_dict("records") if Path(path).is_file() else []


def write_samples(path: Path, rows: list[dict]) -> None:
    """The `samples` of metric rows (KL-measuring steps), one JSON line per sample, gzipped."""
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            for sample in row.get("samples") or ():
                keys = {"iteration": row["iteration"], "run": row["run"], "step": row["step"]}
                out.write(json.dumps({**keys, **sample}) + "\n")


def read_samples(path: Path) -> list[dict]:
    """write_samples' records; none for a folder without the file."""
    if not Path(path).is_file():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]

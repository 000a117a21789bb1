"""Algorithm 1 of the paper (WARP), end to end, resumable.

    theta_init <- theta_sft
    for i in 1..I:
        for m in 1..M:                       # independent runs, each with its own prompt order
            theta_m <- theta_init ; theta_m_ema <- theta_init ; fresh optimiser
            for t in 1..T:
                x ~ prompts ; y ~ pi_theta_m(.|x)
                r_beta = r(x, y) - beta * log[pi_theta_m(y|x) / pi_theta_m_ema(y|x)]
                theta_m <- Opt(theta_m, r_beta * grad log pi_theta_m(y|x))
                theta_m_ema <- (1 - mu) theta_m_ema + mu theta_m
        theta_slerp_i <- slerp(theta_init, [theta_1 .. theta_M])   # the trained weights, not the EMAs
        theta_init <- (1 - eta) theta_init + eta theta_slerp_i     # LITI
    return theta_slerp_I

Run directory layout: config.json, metrics.csv, iter_<i>/run_<m>/ (final theta_m),
iter_<i>/slerp/, iter_<i>/init/ and final/ (save_pretrained folders with the tokenizer), and
checkpoint.pt while a run is in progress (weights, EMA, optimiser, RNG, metrics so far).

Runs are shared between run directories: run m of iteration i depends only on its inputs
(theta_init, pi_sft, the prompts, the reward model, the sampling settings, the seed, and the
fields of RUN_FIELDS), not on I, M or eta. Each finished run folder records a key of those
inputs; `reuse_runs_from` copies a finished run with the same key instead of training it again
(e.g. iteration 1 of the default run is the whole of a study run with I = 1).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .config import SamplingConfig, WarpConfig, to_dict
from .rl import rl_step
from .runtime import Components
from .weights import clone_state, ema_, liti, slerp

StateDict = dict[str, torch.Tensor]
METRIC_COLUMNS = ["iteration", "run", "step", "reward_mean", "reward_std", "kl_to_anchor",
                  "kl_to_sft", "kl_to_sft_sampled", "response_len", "loss"]
EMA_FILE = "ema.safetensors"
DONE = "complete.json"  # written last into a weights folder: a folder without it is not done
# The WarpConfig fields one run (i, m) depends on; I, M and eta only shape what happens around it.
RUN_FIELDS = ("T", "mu", "beta", "lr", "batch_size", "baseline", "seed")


@dataclass
class WarpResult:
    theta_slerp: list[StateDict]  # theta_slerp_i, i = 1..I
    theta_init: list[StateDict]  # theta_init after the LITI of iteration i
    theta_runs: list[list[StateDict]]  # theta_runs[i-1][m-1]: final weights of run m
    theta_ema_runs: list[list[StateDict]]  # the EMA anchor of each run at its end
    metrics: pd.DataFrame  # one row per RL step, columns METRIC_COLUMNS

    @property
    def final(self) -> StateDict:
        return self.theta_slerp[-1]


# ----------------------------------------------------------------------------- weights on disk


def save_weights(template, state: StateDict, tokenizer, folder: Path, done_info: dict | None = None) -> None:
    """Write `state` as a save_pretrained folder (loadable with AutoModelForCausalLM); `done_info`
    goes into its completion marker."""
    model = copy.deepcopy(template)
    model.load_state_dict(state)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / DONE).write_text(json.dumps(done_info or {}))


def load_weights(template, folder: Path) -> StateDict:
    """The state dict saved in `folder`, keyed like `template.state_dict()` (tied weights too)."""
    model = type(template).from_pretrained(folder, dtype=torch.float32)
    return clone_state(model)


def save_ema(state: StateDict, folder: Path) -> None:
    """The run's final EMA anchor, beside its weights (safetensors wants untied copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous().clone() for name, tensor in state.items()}, folder / EMA_FILE)


def load_ema(folder: Path) -> StateDict:
    return load_file(folder / EMA_FILE)


def is_done(folder: Path) -> bool:
    return (folder / DONE).is_file()


# ----------------------------------------------------------------------------- one RL step


def prompt_indices(num_prompts: int, batch_size: int, seed: int, iteration: int, run: int, step: int):
    """Indices of the prompts of step t (1-based) of run m: a seeded permutation per run and per
    pass over the prompts, so every run sees its own order and a resumed run the same one."""
    start = (step - 1) * batch_size
    indices = []
    while len(indices) < batch_size:
        epoch, offset = divmod(start + len(indices), num_prompts)
        generator = torch.Generator().manual_seed(run_seed(seed, iteration, run) + 7919 * epoch)
        order = torch.randperm(num_prompts, generator=generator)
        indices.extend(order[offset : offset + batch_size - len(indices)].tolist())
    return indices


def run_seed(seed: int, iteration: int, run: int) -> int:
    return seed * 1_000_003 + iteration * 1_009 + run


# ----------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, iteration, run, step, policy, anchor, optimizer, rows) -> None:
    state = {
        "iteration": iteration, "run": run, "step": step,
        "policy": policy.state_dict(), "anchor": anchor.state_dict(),
        "optimizer": optimizer.state_dict(), "rows": rows,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)  # atomic: a crash mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, iteration: int, run: int) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    return state if (state["iteration"], state["run"]) == (iteration, run) else None


def _fingerprint(model) -> str:
    """A hash of the bytes of every tensor: resuming on top of another theta_sft is refused."""
    return _state_fingerprint(model.state_dict())


def _state_fingerprint(state: StateDict) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _prompts_fingerprint(prompts) -> str:
    digest = hashlib.sha256()
    for ids in prompts:
        digest.update(json.dumps(list(ids)).encode())
    return digest.hexdigest()[:16]


def run_key(config: WarpConfig, sampling: SamplingConfig, iteration: int, run: int, theta_init: StateDict,
            inputs: dict) -> str:
    """What run m of iteration i is a function of: equal keys, bitwise-equal runs. `inputs` holds
    the fingerprints shared by all runs of a train_warp call (pi_sft, prompts, reward model)."""
    payload = {"warp": {name: getattr(config, name) for name in RUN_FIELDS}, "sampling": to_dict(sampling),
               "iteration": iteration, "run": run, "theta_init": _state_fingerprint(theta_init), **inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a file of a finished run (no extra disk: a GPT-2 run is ~0.5 GB), else copy it.
    Safe because a finished run folder is never rewritten in place: it is read, or removed whole."""
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, target)


def _find_run(candidates, iteration: int, run: int, key: str) -> Path | None:
    """A finished run folder iter_<i>/run_<m>/ with this key in one of the candidate run dirs."""
    for run_dir in candidates:
        folder = Path(run_dir) / f"iter_{iteration}" / f"run_{run}"
        if is_done(folder) and json.loads((folder / DONE).read_text() or "{}").get("run_key") == key:
            return folder
    return None


def _scorer_fingerprint(reward_scorer) -> str | None:
    """The reward model's weights, when the scorer exposes them (`.model`); None for a plain callable."""
    model = getattr(reward_scorer, "model", None)
    return _fingerprint(model) if model is not None else None


def _run_config(config: WarpConfig, sampling: SamplingConfig, policy, reward_scorer=None) -> dict:
    """What a run directory was made with; resuming under anything else is refused."""
    return {"warp": to_dict(config), "sampling": to_dict(sampling), "theta_sft": _fingerprint(policy),
            "reward_model": _scorer_fingerprint(reward_scorer)}


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def is_stale(run_dir: Path, config: WarpConfig, sampling: SamplingConfig, policy, reward_scorer=None) -> bool:
    """True when run_dir holds a run made from another config, theta_sft or reward model."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return False
    wanted = json.loads(json.dumps(_run_config(config, sampling, policy, reward_scorer)))
    return json.loads(path.read_text()) != wanted


def _prepare_run_dir(run_dir: Path, run_config: dict, resume: bool) -> None:
    """Create run_dir with its config.json; refuse to resume a run made with another config."""
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    if not path.is_file():
        path.write_text(json.dumps(run_config, indent=2, sort_keys=True))
        return
    saved, wanted = _flatten(json.loads(path.read_text())), _flatten(json.loads(json.dumps(run_config)))
    changed = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
    if changed:
        raise ValueError(
            f"run_dir {str(run_dir)!r} holds a run made with a different config ({', '.join(changed)}); "
            "use another run_dir, or start over with resume=False (--fresh)"
        )


# ----------------------------------------------------------------------------- one run, all runs


def train_run(iteration: int, run: int, theta_init: StateDict, policy, anchor, reference, tokenizer,
              reward_scorer, prompts, config: WarpConfig, sampling: SamplingConfig, run_dir: Path,
              checkpoint_every: int, max_grad_norm: float | None,
              step_callback: Callable[[dict], None] | None,
              progress_bars: bool = True) -> tuple[StateDict, StateDict, list[dict]]:
    """Run m of iteration i: T REINFORCE steps from theta_init with an EMA anchor. Resumes from
    run_dir/checkpoint.pt when it belongs to this run. Returns (theta_m, theta_m_ema, metric rows)."""
    checkpoint_path = run_dir / "checkpoint.pt"
    policy.load_state_dict(theta_init)
    anchor.load_state_dict(theta_init)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)  # fresh for every run
    torch.manual_seed(run_seed(config.seed, iteration, run))
    rows, start = [], 1
    checkpoint = _load_checkpoint(checkpoint_path, iteration, run)
    if checkpoint is not None:
        policy.load_state_dict(checkpoint["policy"])
        anchor.load_state_dict(checkpoint["anchor"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        rows, start = checkpoint["rows"], checkpoint["step"] + 1

    policy.eval()  # dropout off: it would make the sampled and the scored policy differ
    bar = tqdm(range(start, config.T + 1), desc=f"iteration {iteration}/{config.I} run {run}/{config.M}",
               initial=start - 1, total=config.T, leave=False, mininterval=2.0,
               disable=not progress_bars)
    for step in bar:
        indices = prompt_indices(len(prompts), config.batch_size, config.seed, iteration, run, step)
        components = Components(reference, tokenizer, reward_scorer, prompts, sampling)
        step_config = dataclasses.replace(config, max_grad_norm=max_grad_norm)
        metrics = rl_step(policy, anchor, optimizer, [prompts[i] for i in indices], components, step_config)
        row = {"iteration": iteration, "run": run, "step": step, **metrics}
        rows.append(row)
        bar.set_postfix(reward=f"{metrics['reward_mean']:.2f}", kl_sft=f"{metrics['kl_to_sft']:.2f}")
        if step_callback is not None:
            step_callback(row)
        if step % checkpoint_every == 0 and step < config.T:
            _save_checkpoint(checkpoint_path, iteration, run, step, policy, anchor, optimizer, rows)
    return clone_state(policy), clone_state(anchor), rows


def train_warp(config: WarpConfig, policy, tokenizer, reward_scorer, prompts, run_dir, resume: bool = True,
               sampling: SamplingConfig | None = None, checkpoint_every: int = 10,
               max_grad_norm: float | None = None,
               step_callback: Callable[[dict], None] | None = None,
               progress_bars: bool = True, reuse_runs_from=()) -> WarpResult:
    """Algorithm 1. `policy` is pi_sft (left untouched: it is also the KL-to-SFT reference);
    `prompts` a sequence of token-id lists (or a datasets.Dataset with an `input_ids` column);
    `reward_scorer` maps a list of texts to a float tensor. Re-running with the same run_dir
    resumes (completed runs and iterations are loaded, an interrupted run continues from its
    last checkpoint); `resume=False` starts over. `progress_bars=False` silences the tqdm bars
    (a headless kernel ships every redraw as a message; use `step_callback` to log instead).
    `reuse_runs_from`: other run directories whose finished runs with the same run_key are copied
    (weights, EMA and metric rows) instead of trained."""
    sampling = sampling or SamplingConfig()
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if hasattr(prompts, "column_names"):
        prompts = prompts["input_ids"]
    if len(prompts) < 1:
        raise ValueError("prompts must hold at least 1 prompt")
    run_dir = Path(run_dir)
    _prepare_run_dir(run_dir, _run_config(config, sampling, policy, reward_scorer), resume)

    reference = policy.eval()  # pi_sft: the KL-to-SFT reference, only ever used under no_grad
    working, anchor = copy.deepcopy(policy), copy.deepcopy(policy)
    anchor.requires_grad_(False)  # the EMA moves by ema_, never by gradients
    theta_init = clone_state(reference)  # theta_init <- theta_sft
    result = WarpResult([], [], [], [], pd.DataFrame(columns=METRIC_COLUMNS))
    all_rows = _read_metrics(run_dir)
    inputs = {"theta_sft": _fingerprint(reference), "prompts": _prompts_fingerprint(prompts),
              "reward_model": _scorer_fingerprint(reward_scorer), "max_grad_norm": max_grad_norm}
    candidates = [Path(d) for d in reuse_runs_from if Path(d).resolve() != run_dir.resolve()]

    for iteration in tqdm(range(1, config.I + 1), desc="WARP iterations", disable=not progress_bars):
        folder = run_dir / f"iter_{iteration}"
        theta_runs, theta_emas = [], []
        for run in range(1, config.M + 1):
            run_folder = folder / f"run_{run}"
            key = run_key(config, sampling, iteration, run, theta_init, inputs)
            source = None if is_done(run_folder) else _find_run(candidates, iteration, run, key)
            if source is not None:  # the same run, already trained elsewhere: copy it
                shutil.rmtree(run_folder, ignore_errors=True)
                shutil.copytree(source, run_folder, copy_function=_link_or_copy)
                (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # it could only be this run's
                all_rows = _replace_rows(all_rows, iteration, run, _read_metrics(source.parent.parent))
                _write_metrics(run_dir, all_rows)
            if is_done(run_folder):
                theta_runs.append(load_weights(reference, run_folder))
                theta_emas.append(load_ema(run_folder))
                continue
            theta_m, theta_ema, rows = train_run(iteration, run, theta_init, working, anchor, reference, tokenizer,
                                      reward_scorer, prompts, config, sampling, run_dir, checkpoint_every,
                                      max_grad_norm, step_callback, progress_bars)
            all_rows = _replace_rows(all_rows, iteration, run, rows)
            _write_metrics(run_dir, all_rows)
            save_ema(theta_ema, run_folder)
            save_weights(reference, theta_m, tokenizer, run_folder, done_info={"run_key": key})
            (run_dir / "checkpoint.pt").unlink(missing_ok=True)
            theta_runs.append(theta_m)
            theta_emas.append(theta_ema)

        if is_done(folder / "init"):
            theta_slerp_i, theta_init = load_weights(reference, folder / "slerp"), load_weights(reference, folder / "init")
        else:
            theta_slerp_i = slerp(theta_init, theta_runs)  # the trained theta_m, never the EMAs
            theta_init = liti(theta_init, theta_slerp_i, config.eta)  # a new dict: no in-place aliasing
            save_weights(reference, theta_slerp_i, tokenizer, folder / "slerp")
            save_weights(reference, theta_init, tokenizer, folder / "init")
        result.theta_runs.append(theta_runs)
        result.theta_ema_runs.append(theta_emas)
        result.theta_slerp.append(theta_slerp_i)
        result.theta_init.append(theta_init)

    if not is_done(run_dir / "final"):
        save_weights(reference, result.theta_slerp[-1], tokenizer, run_dir / "final")
    result.metrics = pd.DataFrame(all_rows, columns=METRIC_COLUMNS)
    return result


def _replace_rows(rows: list[dict], iteration: int, run: int, new_rows: list[dict]) -> list[dict]:
    """`rows` with the metric rows of run (iteration, run) replaced by those of `new_rows`."""
    def is_this_run(row):
        return (row["iteration"], row["run"]) == (iteration, run)
    return [r for r in rows if not is_this_run(r)] + [r for r in new_rows if is_this_run(r)]


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS).to_csv(run_dir / "metrics.csv", index=False)


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    return pd.read_csv(path).to_dict("records") if path.is_file() else []


def warp_config_with(config: WarpConfig, **changes) -> WarpConfig:
    """A validated copy of `config` with some fields changed (the CLI flags, the studies)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})

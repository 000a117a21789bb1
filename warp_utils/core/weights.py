"""The weight-space math of WARP (Rame et al. 2024, Section 3 and Appendix B).

Pure functions over state dicts (`dict[str, Tensor]`): no I/O, no model classes (except `ema_`,
which updates an `nn.Module` in place), inputs never mutated. Symbols follow the paper:

    theta_init      the initialisation shared by the M runs of one WARP iteration
    theta_m         the m-th RL-fine-tuned policy          delta_m = theta_m - theta_init
    theta_ema       the EMA anchor of the KL penalty         mu   = EMA update rate
    lam             SLERP/LERP interpolation coefficient     eta  = LITI step

Every merge works tensor by tensor (each tensor has its own angle Omega), computes in float32
(float64 when the input is float64) and casts back to the tensor's dtype and device. Tensors that
are not floating point (masks, integer buffers) are not merged: they pass through from the first
argument and must be equal in every input.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

StateDict = Mapping[str, Tensor]


def clone_state(model_or_state) -> dict[str, Tensor]:
    """A detached copy of a module's state dict (or of a state dict): later steps cannot alias it."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {name: tensor.detach().clone() for name, tensor in state.items()}

# Below this norm a task vector has no direction: SLERP's angle is undefined, use LERP.
ZERO_NORM = 1e-12
# 1 - |cos(Omega)| below this: (anti)collinear, sin(Omega) ~ 0, SLERP's coefficients are 0/0.
# Float32 dot products are only good to a few 1e-7, so identical vectors land here, not at 0/0.
COLLINEAR_TOL = 1e-6


# ----------------------------------------------------------------------------- checks


def _check_unit(name: str, value: float) -> float:
    """value in [0, 1], else ValueError naming the parameter (NaN fails every comparison)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_compatible(reference: StateDict, others: Sequence[StateDict], names: Sequence[str]):
    """Same keys and shapes everywhere; non-float tensors (masks, counters) equal everywhere."""
    for other, name in zip(others, names):
        missing, extra = set(reference) - set(other), set(other) - set(reference)
        if missing or extra:
            key = min(missing or extra)
            where = "missing from" if missing else "unexpected in"
            raise ValueError(f"key {key!r} is {where} {name}")
        for key, tensor in reference.items():
            if other[key].shape != tensor.shape:
                raise ValueError(
                    f"shape mismatch for key {key!r}: {tuple(tensor.shape)} vs "
                    f"{tuple(other[key].shape)} in {name}"
                )
            if tensor.is_floating_point() != other[key].is_floating_point():
                raise ValueError(f"key {key!r} is floating point in one input only ({name})")
            if tensor.is_floating_point():
                continue
            if not torch.equal(tensor, other[key].to(tensor.device)):
                raise ValueError(f"non-float tensor {key!r} differs in {name}; it cannot be merged")


def _compute_dtype(tensor: Tensor) -> torch.dtype:
    # bf16/fp16 merges in their own precision lose the small task vectors; go up to float32.
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _up(tensor: Tensor, like: Tensor) -> Tensor:
    return tensor.to(device=like.device, dtype=_compute_dtype(like))


def _thetas_list(thetas: Sequence[StateDict]) -> list[StateDict]:
    if isinstance(thetas, Mapping):  # a single state dict is a Sequence of keys: refuse it
        raise TypeError("thetas must be a sequence of state dicts, got one state dict")
    thetas = list(thetas)
    if not thetas:
        raise ValueError("thetas must hold at least one state dict (M >= 1)")
    return thetas


def _check_lam(lam: float | None, num_models: int) -> float | None:
    if num_models == 2:
        return 0.5 if lam is None else _check_unit("lam", lam)
    if lam is not None:  # Eq. 26 fixes lam = 1/m at step m; a user lam would be ignored silently
        raise ValueError(
            f"lam is only defined for M = 2 models, got M = {num_models}; leave it None"
        )
    return None


# ----------------------------------------------------------------------------- EMA, task vectors


def task_vector(theta: StateDict, theta_init: StateDict) -> dict[str, Tensor]:
    """delta = theta - theta_init, tensor by tensor. Non-float tensors pass through from theta_init.

    theta: theta_m (a fine-tuned policy); theta_init: theta_init (where the runs started).
    """
    _check_compatible(theta_init, [theta], ["theta"])
    out = {}
    for key, init in theta_init.items():
        if not init.is_floating_point():
            out[key] = init.clone()
            continue
        delta = _up(theta[key], init) - _up(init, init)
        out[key] = delta.to(theta[key].dtype)
    return out



def task_norm(theta: StateDict, theta_init: StateDict) -> float:
    """|theta - theta_init|: the norm of the whole task vector (every float tensor), in float64.
    SLERP keeps it (Lemma 1), LERP shrinks it (Lemma 2)."""
    delta = task_vector(theta, theta_init)
    return math.sqrt(sum(float(d.double().pow(2).sum()) for k, d in delta.items()
                         if theta_init[k].is_floating_point()))

def _ema_tensor(ema_value: Tensor, value: Tensor, mu: float) -> Tensor:
    return ((1.0 - mu) * _up(ema_value, ema_value) + mu * _up(value, ema_value)).to(ema_value.dtype)


def ema(theta_ema: StateDict, theta: StateDict, mu: float) -> dict[str, Tensor]:
    """One EMA step, pure: theta_ema <- (1 - mu) * theta_ema + mu * theta.

    theta_ema: the anchor theta_ema; theta: the current policy theta_m; mu: the EMA update rate mu
    (paper default 0.01; effective horizon ~ 1/mu steps). Non-float tensors pass through.
    """
    mu = _check_unit("mu", mu)
    _check_compatible(theta_ema, [theta], ["theta"])
    return {
        key: _ema_tensor(value, theta[key], mu) if value.is_floating_point() else value.clone()
        for key, value in theta_ema.items()
    }


@torch.no_grad()
def ema_(ema_model: nn.Module, model: nn.Module, mu: float) -> None:
    """In-place EMA step: for every parameter and float buffer, ema <- (1 - mu) * ema + mu * model.

    Walks named_parameters/named_buffers, which list a tied tensor once; state_dict() would list
    GPT-2's wte/lm_head twice and decay it twice. Same arithmetic as `ema`, so results match it.
    """
    mu = _check_unit("mu", mu)
    for kind in ("parameters", "buffers"):
        ema_tensors = dict(getattr(ema_model, f"named_{kind}")())
        tensors = dict(getattr(model, f"named_{kind}")())
        if ema_tensors.keys() != tensors.keys():
            key = min(ema_tensors.keys() ^ tensors.keys())
            raise ValueError(f"{kind[:-1]} {key!r} is in only one of ema_model and model")
        for key, ema_value in ema_tensors.items():
            if not ema_value.is_floating_point():
                continue  # step counters, masks: not averaged
            if ema_value.shape != tensors[key].shape:
                raise ValueError(
                    f"shape mismatch for {key!r}: {tuple(ema_value.shape)} vs "
                    f"{tuple(tensors[key].shape)}"
                )
            ema_value.copy_(_ema_tensor(ema_value, tensors[key], mu))


# ----------------------------------------------------------------------------- merges


def _lerp_deltas(delta_1: Tensor, delta_2: Tensor, lam: float) -> Tensor:
    return (1.0 - lam) * delta_1 + lam * delta_2


def _slerp_deltas(delta_1: Tensor, delta_2: Tensor, lam: float) -> Tensor:
    """Merged task vector of one tensor: sin((1-lam)Om)/sin(Om) d1 + sin(lam Om)/sin(Om) d2."""
    norm_1, norm_2 = delta_1.norm().item(), delta_2.norm().item()
    if norm_1 <= ZERO_NORM or norm_2 <= ZERO_NORM:
        return _lerp_deltas(delta_1, delta_2, lam)  # no direction: LERP
    cos_omega = (delta_1.flatten() @ delta_2.flatten()).item() / (norm_1 * norm_2)
    cos_omega = min(1.0, max(-1.0, cos_omega))  # rounding can leave [-1, 1]; acos would be NaN
    if 1.0 - abs(cos_omega) <= COLLINEAR_TOL:
        return _lerp_deltas(delta_1, delta_2, lam)  # (anti)collinear: sin(Omega) ~ 0: LERP
    omega = math.acos(cos_omega)
    sin_omega = math.sin(omega)
    return (math.sin((1.0 - lam) * omega) / sin_omega) * delta_1 + (
        math.sin(lam * omega) / sin_omega
    ) * delta_2


def _merge(theta_init, thetas, lam, merge_pair) -> dict[str, Tensor]:
    """theta_init + fold of the task vectors: pairwise for M = 2, Eq. 26 (lam = 1/m) for M > 2."""
    thetas = _thetas_list(thetas)
    lam = _check_lam(lam, len(thetas))
    _check_compatible(theta_init, thetas, [f"thetas[{m}]" for m in range(len(thetas))])
    out = {}
    for key, init in theta_init.items():
        if not init.is_floating_point():
            out[key] = init.clone()
            continue
        if len(thetas) == 1:  # nothing to merge: the model itself
            out[key] = thetas[0][key].to(device=init.device, dtype=init.dtype, copy=True)
            continue
        init_up = _up(init, init)
        deltas = [_up(theta[key], init) - init_up for theta in thetas]
        if len(thetas) == 2:
            merged = merge_pair(deltas[0], deltas[1], lam)
        else:
            # slerp_m = slerp(theta_init, slerp_{m-1}, theta_m, lam=1/m); stay in float32 between
            # steps so bf16 rounding is paid once, at the end.
            merged = deltas[0]
            for m, delta in enumerate(deltas[1:], start=2):
                merged = merge_pair(merged, delta, 1.0 / m)
        out[key] = (init_up + merged).to(init.dtype)  # theta_init back in, in every branch
    return out


def slerp(theta_init: StateDict, thetas: Sequence[StateDict], lam: float | None = None):
    """Spherical interpolation of task vectors, tensor by tensor (Section 3; Eq. 26 for M > 2).

        delta_m = theta_m - theta_init,  cos(Omega) = <delta_1, delta_2> / (|delta_1| |delta_2|)
        slerp = theta_init + sin((1 - lam) Omega) / sin(Omega) * delta_1
                           + sin(lam Omega) / sin(Omega) * delta_2

    theta_init: theta_init; thetas: [theta_1, ..., theta_M] (the trained policies, not their EMAs);
    lam: lambda, the weight of theta_2 (M = 2 only, default 0.5). M > 2: slerp_M =
    slerp(slerp_{M-1}, theta_M, lam=1/M). M = 1: theta_1. Zero-norm or (anti)collinear task
    vectors fall back to LERP. Lemma 1: equal-norm task vectors keep their norm.
    """
    return _merge(theta_init, thetas, lam, _slerp_deltas)


def lerp(theta_init: StateDict, thetas: Sequence[StateDict], lam: float | None = None):
    """Linear interpolation of task vectors (the baseline): theta_init + sum_m w_m delta_m.

    theta_init: theta_init; thetas: [theta_1, ..., theta_M]; lam: lambda, the weight of theta_2
    (M = 2 only, default 0.5: w = (1 - lam, lam)); M > 2: uniform w_m = 1/M. Lemma 2: with
    |delta_1| = |delta_2| = l the norm shrinks to l sqrt(1 - 2 (1 - cos Omega)(lam - lam^2)).
    """
    return _merge(theta_init, thetas, lam, _lerp_deltas)


def liti(theta_init: StateDict, theta_merged: StateDict, eta: float) -> dict[str, Tensor]:
    """Linear interpolation towards initialisation (LITI):

        theta_eta = (1 - eta) * theta_init + eta * theta_merged

    theta_init: theta_init; theta_merged: theta_slerp; eta: eta in [0, 1] (0 keeps theta_init,
    1 takes theta_merged). The result is the next iteration's theta_init.
    """
    eta = _check_unit("eta", eta)
    _check_compatible(theta_init, [theta_merged], ["theta_merged"])
    out = {}
    for key, init in theta_init.items():
        if not init.is_floating_point():
            out[key] = init.clone()
            continue
        # (1 - eta) a + eta b, not a + eta (b - a): eta = 1 then returns theta_merged exactly.
        mixed = (1.0 - eta) * _up(init, init) + eta * _up(theta_merged[key], init)
        out[key] = mixed.to(init.dtype)
    return out

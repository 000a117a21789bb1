"""Where a run computes and in which precision: one place for both.

Device: cuda when available, else cpu; an explicit request (`--device`) forces one.

Precision (an execution setting: it changes speed and memory, not the algorithm):
- fp32: no autocast (the default on CPU);
- bf16: autocast to bfloat16, no loss scaling (bf16 has fp32's exponent range); the default on
  GPUs of compute capability >= 8.0 (A100, L4, RTX 30xx and later); also allowed on CPU;
- fp16: autocast to float16 with a GradScaler (fp16 gradients underflow without scaling); the
  default on older GPUs (T4, V100: the usual free Colab GPU), which have no bf16 units.
Master weights, Adam state, the EMA anchor and every weight average stay float32: autocast
only changes the dtype of the matmuls inside its context, never the parameters.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: native bf16 (torch.cuda.is_bf16_supported counts emulation)


def choose_device(requested: str | None = None) -> str:
    """`requested` (cpu, cuda, cuda:<k>) checked against this machine, or cuda when available,
    else cpu. A device that cannot be used is a ValueError naming it."""
    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:<k>, got {requested!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use --device cpu, or on Colab pick "
                             f"Runtime > Change runtime type > GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {requested!r}: only {torch.cuda.device_count()} GPU(s) visible")
    return str(device)


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: plain fp32) on a device type, and whether gradients need scaling."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def scales_loss(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self):
        """The context every forward runs in (training, sampling, scoring, KL): the same for all,
        so that log pi is the log-probability of the distribution y was sampled from."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (disabled: its calls are plain backward/step)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_loss)


def _native_bf16(device: str) -> bool:
    return torch.cuda.get_device_capability(torch.device(device)) >= BF16_MIN_CAPABILITY


def choose_precision(device: str, requested: str = "auto") -> Precision:
    """The precision policy of the module docstring for `device` (from choose_device)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    device_type = torch.device(device).type
    if requested == "auto":
        if device_type != "cuda":
            requested = "fp32"  # CPU bf16 matmuls are only fast on recent Xeons: opt-in
        else:
            requested = "bf16" if _native_bf16(device) else "fp16"
    if requested == "fp32":
        return Precision(device_type, None)
    if requested == "fp16" and device_type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA GPU; on CPU use 'bf16' or 'fp32'")
    if requested == "bf16" and device_type == "cuda" and not _native_bf16(device):
        raise ValueError(f"precision 'bf16' needs a GPU of compute capability >= 8.0 (this one: "
                         f"{torch.cuda.get_device_capability(torch.device(device))}); use 'fp16'")
    return Precision(device_type, torch.bfloat16 if requested == "bf16" else torch.float16)


def backward_and_step(loss: torch.Tensor, optimizer, scaler: torch.amp.GradScaler,
                      max_grad_norm: float | None = None) -> bool:
    """loss.backward() and optimizer.step() through `scaler`: the gradients are unscaled before
    clipping, and a step whose gradients overflowed (inf/nan) is skipped. Returns whether the
    step was taken. With a disabled scaler this is exactly backward, clip, step. The gradients
    are freed after the step (as in rl.rl_step): the next forward does not hold them."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return scale is None or scaler.get_scale() >= scale  # the scale shrinks only on a skipped step


def fused_optimizer(optimizer_class, parameters, **kwargs) -> torch.optim.Optimizer:
    """`optimizer_class` (Adam, AdamW) with torch's fused kernel when this torch has one for the
    parameters' device (CPU from torch 2.4, CUDA): one kernel over every tensor instead of a dozen
    ops per tensor (tiny RL step: Adam 8 ms -> 1.6 ms). Same update rule; rounding may differ."""
    parameters = list(parameters)
    try:
        return optimizer_class(parameters, fused=True, **kwargs)
    except (RuntimeError, ValueError):  # an older torch: no fused kernel for this device or dtype
        return optimizer_class(parameters, **kwargs)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another OS, or a libc without it, such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def return_freed_memory() -> bool:
    """Give the pages of freed blocks back to the OS (glibc: malloc_trim(0)); False where there is
    no such call. glibc keeps what a step freed (activations, logits, temporaries) mapped in its
    heaps, so a worker between two steps held ~1.2 GB more than it used at SmolLM2's size; two
    workers whose peaks do not coincide then add one's peak to the other's high-water mark. The
    next step faults those pages in again: cheap next to a step of seconds."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

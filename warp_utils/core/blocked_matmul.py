"""A float32 matmul for decoding, y = x W^T with a fixed order of sums (blocked_matmul.c):

    y[m, n] = (...((s_0 + s_1) + s_2) ...),   s_b = fma chain over k in block b (192 products), from 0

Why: decoding 16 rows at a time is bound by reading the weights. MKL's matmul, which transformers'
`generate` uses, reads them at 9-20 GB/s here; oneDNN's is faster but sums in another order, which
moves the logits by ~1e-4 from generate's. This kernel streams the weights (laid out once in
panels of 16 columns) as fast as oneDNN and sums in MKL's order, so on this course's CPUs its
results are bit for bit MKL's, and the logits generate's (benchmarks/smol_sampler.py measures
it). The AVX2 and AVX-512 kernels give the same bits: the order does not depend on the vector width.

It is C, built on first use by execution.native; `available()` is False where native code is
off or cannot build (no compiler, WARP_NATIVE=0) and on CPUs with neither AVX2+FMA nor AVX-512,
and callers then use torch's matmul.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..execution import native

BLOCK = 192  # products per block: MKL's blocking of k for float32 on AVX2/AVX-512 CPUs
SOURCE = Path(__file__).with_name("blocked_matmul.c")


@functools.cache
def library():
    """The loaded kernel, or None where it cannot run (see the module's docstring)."""
    lib = native.load(SOURCE)
    if lib is None:
        return None
    lib.widest.restype = ctypes.c_int
    lib.blocked_matmul.restype = ctypes.c_int
    lib.blocked_matmul.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
                                   ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_int]
    return lib if lib.widest() else None


def available() -> bool:
    return library() is not None


def widest() -> int:
    """The vector width in bits of the kernel this CPU runs (512 or 256), 0 without the kernel."""
    lib = library()
    return lib.widest() if lib is not None else 0


@dataclass(frozen=True)
class Packed:
    """W (N, K) as the kernel reads it: N/16 panels of K x 16, N padded with zero rows to 16."""

    panels: Tensor
    out_features: int


def pack(weight: Tensor) -> Packed:
    """A copy (the weights may change after the rollout); one copy when N is a multiple of 16."""
    N, K = weight.shape
    w = weight.detach().to(torch.float32)
    if N % 16:
        w = torch.cat([w, w.new_zeros(16 - N % 16, K)])
    return Packed(w.view(-1, 16, K).transpose(1, 2).contiguous(), N)


def matmul(x: Tensor, packed: Packed, width: int | None = None) -> Tensor:
    """x (..., K) W^T for the W `packed` holds, float32 on the CPU. `width` (512, 256) picks a
    kernel; the default is the widest this CPU runs (both give the same bits)."""
    lib = library()
    if lib is None:
        raise RuntimeError("the blocked matmul is not available here (blocked_matmul.available())")
    rows = x.reshape(-1, x.shape[-1])
    M, K = rows.shape
    Mp, Np = -(-M // 16) * 16, packed.panels.shape[0] * 16
    if packed.panels.shape[1] != K or rows.dtype != torch.float32:
        raise ValueError(f"x is (.., {K}) {rows.dtype}; the packed weight takes float32 (.., {packed.panels.shape[1]})")
    xt = torch.zeros(K, Mp, dtype=torch.float32)
    xt[:, :M] = rows.t()
    y = torch.empty(Mp, Np, dtype=torch.float32)
    status = lib.blocked_matmul(xt.data_ptr(), Mp, K, packed.panels.data_ptr(), Np, y.data_ptr(), BLOCK,
                                torch.get_num_threads(), width or lib.widest())
    if status:
        raise ValueError(f"this CPU has no {width}-bit kernel (widest: {lib.widest()})")
    return y[:M, :packed.out_features].reshape(*x.shape[:-1], packed.out_features)

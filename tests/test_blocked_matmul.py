"""blocked_matmul's kernel against an exact oracle: every output summed in blocks of BLOCK fused
multiply-adds, each correctly rounded to float32 (computed with fractions), the blocks added in order."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from warp_utils.core import blocked_matmul
from warp_utils.execution import native

pytestmark = pytest.mark.skipif(not blocked_matmul.available(), reason="needs a C compiler and an AVX2 CPU")


def round32(q: Fraction) -> Fraction:
    """q rounded to the nearest float32, ties to the even one (float() rounds to float64 first,
    so the float32 neighbours of that guess are compared exactly)."""
    guess = np.float32(float(q))
    neighbours = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    best = min(neighbours, key=lambda c: (abs(Fraction(float(c)) - q), int(c.view(np.int32)) & 1))
    return Fraction(float(best))


def blocked_sum(x_row, w_row, block) -> Fraction:
    total = None
    for start in range(0, len(x_row), block):
        acc = Fraction(0)
        for a, b in zip(x_row[start:start + block], w_row[start:start + block]):
            acc = round32(Fraction(float(a)) * Fraction(float(b)) + acc)  # one fma: one rounding
        total = acc if total is None else round32(total + acc)
    return total


@pytest.mark.parametrize("M, N, K", [(3, 20, 400), (17, 16, 192), (1, 33, 50)])
def test_kernel_is_the_blocked_fma_order_bit_for_bit(M, N, K):
    """M, N not multiples of 16 and K not of 192 (padding, a short last block), and 17 rows (two
    groups of 16)."""
    torch.manual_seed(M + N + K)
    x, w = torch.randn(M, K), torch.randn(N, K)
    got = blocked_matmul.matmul(x, blocked_matmul.pack(w))
    xs, ws = x.tolist(), w.tolist()
    cells = [(m, n) for m in range(M) for n in range(N)][:120]  # enough cells to catch an order change
    expected = [float(blocked_sum(xs[m], ws[n], blocked_matmul.BLOCK)) for m, n in cells]
    assert [got[m, n].item() for m, n in cells] == expected


def test_a_plain_float32_dot_product_is_not_the_blocked_order():
    """The oracle can tell orders apart: a single chain over all of K differs somewhere."""
    torch.manual_seed(0)
    x, w = torch.randn(4, 576), torch.randn(8, 576)
    got = blocked_matmul.matmul(x, blocked_matmul.pack(w))
    one_chain = [[float(blocked_sum(x[m].tolist(), w[n].tolist(), 576)) for n in range(8)] for m in range(4)]
    assert got.tolist() != one_chain


@pytest.mark.skipif(blocked_matmul.widest() < 512, reason="needs AVX-512 to compare both kernels")
def test_avx2_and_avx512_kernels_give_the_same_bits():
    torch.manual_seed(1)
    x, w = torch.randn(5, 3, 600), torch.randn(100, 600)
    packed = blocked_matmul.pack(w)
    wide, narrow = blocked_matmul.matmul(x, packed, width=512), blocked_matmul.matmul(x, packed, width=256)
    assert wide.shape == (5, 3, 100)
    assert torch.equal(wide, narrow)
    assert torch.allclose(wide.double(), x.double() @ w.double().t(), rtol=1e-5, atol=1e-4)


def test_wrong_inputs_are_refused():
    packed = blocked_matmul.pack(torch.randn(16, 8))
    with pytest.raises(ValueError, match="float32"):
        blocked_matmul.matmul(torch.randn(2, 9), packed)
    with pytest.raises(ValueError, match="float32"):
        blocked_matmul.matmul(torch.randn(2, 8, dtype=torch.float64), packed)


def test_the_library_is_built_once_per_source(tmp_path):
    first = native.compile_library(blocked_matmul.SOURCE, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert native.compile_library(blocked_matmul.SOURCE, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    other = tmp_path / "other.c"
    other.write_text(blocked_matmul.SOURCE.read_text() + "\n/* changed */\n")
    assert native.compile_library(other, tmp_path).name != first.name
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".c", ".so", ".so"]  # no scratch left


def test_it_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("WARP_NATIVE", "0")
    blocked_matmul.library.cache_clear()
    try:
        assert not blocked_matmul.available()
    finally:
        monkeypatch.delenv("WARP_NATIVE")
        blocked_matmul.library.cache_clear()
    assert blocked_matmul.available()


def test_the_packed_weight_is_a_copy():
    w = torch.randn(32, 8)
    packed = blocked_matmul.pack(w)
    x = torch.randn(4, 8)
    before = blocked_matmul.matmul(x, packed)
    w.add_(1.0)  # a training step after the rollout
    assert torch.equal(blocked_matmul.matmul(x, packed), before)

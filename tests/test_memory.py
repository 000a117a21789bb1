"""execution.device.return_freed_memory: freed heap blocks go back to the OS."""

import sys

import pytest
import torch

from warp_utils.execution.device import _malloc_trim, return_freed_memory


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None, reason="glibc only")
def test_freed_heap_blocks_leave_the_process_only_when_returned():
    # 64 KB tensors live in malloc's heap (below its mmap threshold); one kept at the end stops
    # free() from trimming the top of the heap itself, so the rest stays resident once freed.
    blocks = [torch.ones(16_384) for _ in range(3_000)]  # ~200 MB, every page touched
    keep = blocks[-1]
    del blocks
    freed = resident_mb()
    assert return_freed_memory()
    assert freed - resident_mb() > 100, "malloc_trim gave back less than half of 200 MB freed"
    assert keep.sum().item() == 16_384  # the live block is untouched

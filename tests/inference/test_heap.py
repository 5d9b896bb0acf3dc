"""The heap's free pages go back to the system between rows of tiles (glibc only)."""

from __future__ import annotations

import threading

import numpy as np
import psutil
import pytest

from diffris.inference.heap import _malloc_trim, trim_heap

MIB = 2**20


@pytest.mark.skipif(_malloc_trim() is None, reason="malloc_trim is glibc's")
def test_freed_arrays_kept_by_malloc_are_returned_to_the_system():
    """As in a run: a thread frees a large array (glibc then serves arrays of that size from
    its heap), then many medium ones with a few kept between them; the freed memory stays in
    the process until the heap is trimmed."""
    process = psutil.Process()

    def work(kept: list[np.ndarray]) -> None:
        large = np.ones(16 * MIB, np.uint8)
        del large
        arrays = [np.ones(2 * MIB, np.uint8) for _ in range(120)]
        kept.extend(arrays[::10])

    kept: list[np.ndarray] = []
    worker = threading.Thread(target=work, args=(kept,))
    worker.start()
    worker.join()
    before = process.memory_info().rss
    trim_heap()
    after = process.memory_info().rss
    assert len(kept) == 12
    assert before - after > 150 * MIB  # 108 arrays of 2 MiB were freed

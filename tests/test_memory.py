"""Peak memory is each run's own, even in a worker process that ran a bigger run before."""

from pathlib import Path

import numpy as np
import pytest

from testbed.memory import peak_rss_mb, reset_peak_rss


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the peak can be reset on Linux only")
def test_peak_follows_an_allocation_and_resets_after_it():
    reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(200 * 2**20 // 8)  # 200 MB, every page written
    assert peak_rss_mb() >= before + 190
    del block
    assert peak_rss_mb() >= before + 190  # a peak, not the current size
    reset_peak_rss()
    assert peak_rss_mb() < before + 50

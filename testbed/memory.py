"""Peak resident memory of this process, per run, and the machine's memory.

A Ray worker runs many scenarios one after another (sweeps reuse workers), and the kernel's
lifetime peak (``getrusage``'s ``ru_maxrss``) would charge each run the largest of them all; on
Linux the peak (``VmHWM``) can be reset, so each run reports its own.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> None:
    """Start a new peak at the current resident size (Linux: ``5`` to ``clear_refs``). Where the
    kernel does not allow it, the process's lifetime peak is what :func:`peak_rss_mb` reports."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in kB, ``None`` where the kernel does not say."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory in MB (2^20 bytes) since the last reset, else since the process started."""
    peak = _status_kb("VmHWM")
    return round((peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024, 1)


def rss_bytes() -> int:
    """This process's resident memory now, in bytes (0 where ``/proc`` does not say)."""
    return (_status_kb("VmRSS") or 0) * 1024


def machine_memory_mb() -> int:
    """This machine's physical memory in MB (2^20 bytes): the most a local Ray's object store can hold."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20

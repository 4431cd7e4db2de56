"""Writing a file so that readers see all of it or none of it (core: any layer may use it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it replaces ``path`` in one
    rename, so an interrupted writer never leaves a half-written file under the real name.
    ``suffix`` keeps the extension some writers insist on (``np.savez`` adds ``.npz``)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

"""Safe file names and writes that readers see whole or not at all (core: any layer may use them)."""

from __future__ import annotations

import os
import re
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


_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def check_component(name: str) -> str:
    """Return ``name`` if it is safe as one directory name under a results root, else raise
    ``ValueError``: names of scenarios and sweep variants become paths, so a separator, ``..``
    or an absolute path would write outside the root."""
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name a directory; allowed: 1 to 100 letters, digits, '_', '.', '-', not starting with '.'"
        )
    return name

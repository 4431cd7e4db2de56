"""Safe file names, output locations checked before anything runs, writes that readers see whole
or not at all, and strict JSON (core: any layer may use them)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(value: Any, **options: Any) -> str:
    """Strict JSON (``allow_nan=False``): non-finite floats become ``null``, the documented rule."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: readers see all or nothing."""
    with atomic_path(path) as partial, open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_json_lines(path: Path) -> list[Any]:
    """The rows of a JSON-lines file, up to a torn last line left by a crash (ignored)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


def check_component(name: str) -> str:
    """Return ``name`` if it is safe as one directory name under a results root, else raise
    ``ValueError``: names of scenarios and sweep variants become paths, so a separator, ``..``
    or an absolute path would write outside the root."""
    if not isinstance(name, str) or not _COMPONENT.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name a directory; allowed: 1 to 100 ASCII letters, digits, '_', '.', '-', not starting with '.'"
        )
    return name


class OutputPathError(ValueError):
    """An output location that cannot receive results; the message names the path and why (the
    caller adds the argument that gave it)."""


def check_output(path: Path, kind: str = "directory") -> Path:
    """Return ``path`` if a ``kind`` (``"directory"`` or ``"file"``) can be written there, else
    raise :class:`OutputPathError`: a dangling symbolic link, a file where a directory belongs (or
    the reverse), a path below a file, or an unwritable directory. Writes nothing: commands call it
    before any long computation, so that its results are not lost at the end."""
    path = Path(path)
    if path.exists() and (kind == "directory") != path.is_dir():
        raise OutputPathError(f"{path} is {'a directory' if path.is_dir() else 'a file'}; allowed: a {kind} (or a path where one can be created)")
    for link in (path, *path.parents):  # creating the path would fail on a dangling link with a bare "File exists"
        if link.exists():
            break
        if link.is_symlink():
            where, what = ("", kind) if link == path else (f"{path}: ", "directory")
            raise OutputPathError(f"{where}{link} is a symbolic link to {os.readlink(link)}, which does not exist; allowed: a link to an existing {what}")
    ancestor = next(p for p in (path if kind == "directory" else path.parent, *path.parents) if p.exists() or p == p.parent)
    if not ancestor.is_dir():
        raise OutputPathError(f"{path} lies below {ancestor}, which is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path} cannot be written: {ancestor} is not writable")
    return path


def prepare_output(path: Path, kind: str = "directory") -> Path:
    """:func:`check_output`, then create the directory (for a file: its directory, and a probe file
    in it where :func:`atomic_path` will write, removed at once), so that a location the checks
    cannot judge (``/proc``, a read-only mount) is refused before the computation, not after it."""
    path = check_output(path, kind)
    directory = path if kind == "directory" else path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            probe = path.with_name(f".{path.name}.{os.getpid()}.probe")
            probe.touch()
            probe.unlink()
    except OSError as err:
        raise OutputPathError(f"{path} cannot be written: {err.strerror or err}") from None
    return path

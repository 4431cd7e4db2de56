"""The run directory: what a run leaves behind, written so an interrupted run never looks complete.

Layout of ``results/<scenario>/<run-id>/``:

* ``scenario.yaml``  the resolved scenario (defaults filled in, overrides applied)
* ``status.json``    ``{"state": "running" | "complete" | "failed" | "interrupted", "error": ...}``
* ``metrics.jsonl``  one line per party per epoch (epoch 0 = setup): :class:`~testbed.result_schema.EpochRecord`
* ``messages.jsonl`` one line per message: sender, receiver, kind, epoch, bytes, rounds
* ``summary.json``   written last, only when the run completed: :class:`~testbed.result_schema.Summary`
  (the contract in docs/running.md)

Whole files are written to a temporary name and renamed; JSON-lines files are appended and
flushed line by line, so a crash loses at most the epoch in progress. Every file is strict JSON:
a non-finite number (a diverged loss) is written as ``null``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from testbed.files import OutputPathError, check_component, check_output, to_json, write_atomic
from testbed.result_schema import Summary

SUMMARY = "summary.json"
STATUS = "status.json"
#: Every file a run writes, in the order a completed rerun moves them over the earlier results:
#: the summary last, so the directory looks complete only once everything else is in place.
RUN_FILES = ("scenario.yaml", "metrics.jsonl", "messages.jsonl", STATUS, SUMMARY)



class ResultsExistError(FileExistsError):
    pass


class ResultsPathError(OutputPathError):
    """A results location that cannot hold a run directory."""


def inside(root: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``root`` (symbolic links followed), else ``ResultsPathError``."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise ResultsPathError(f"{path} lies outside the results root {root}")
    return Path(path)


def default_run_dir(root: Path, scenario_name: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = inside(root, root / check_component(scenario_name) / f"{stamp}-seed{seed}")
    path, n = base, 1
    while path.exists():  # two runs in the same second get distinct directories
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def set_status(directory: Path, state: str, error: str | None = None) -> None:
    write_atomic(Path(directory) / STATUS, to_json({"state": state, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")


def read_status(directory: Path) -> dict[str, Any] | None:
    """The run's status, or ``None`` when it has none (or a torn one)."""
    try:
        return json.loads((Path(directory) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def mark_stopped(root: Path, state: str = "interrupted") -> list[Path]:
    """Give ``state`` to every run directory under ``root`` still marked running (their process
    is gone: a sweep stopped, or a crash); returns those directories."""
    stopped = []
    for status in sorted(Path(root).rglob(STATUS)):
        if (read_status(status.parent) or {}).get("state") == "running" and not (status.parent / SUMMARY).exists():
            set_status(status.parent, state)
            stopped.append(status.parent)
    return stopped


class RunDirectory:
    """Where one run writes.

    ``path`` is the run directory. A directory that already holds results is refused unless
    ``overwrite``; then the new run is written beside it, into ``writing`` (a hidden sibling),
    and moved over the earlier results only by :meth:`complete`, so a rerun that fails or is
    interrupted keeps them.
    """

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = check_output(Path(path))
        self.writing = self.path
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise ResultsExistError(f"{self.path} already holds results; allowed: --overwrite to replace them, or another --out")
            resolved = self.path.resolve()  # `--out .` has no name of its own
            if not resolved.name:
                raise ResultsPathError(f"{self.path}: results in the file system's root cannot be replaced; allowed: another --out")
            self.writing = resolved.with_name(f".{resolved.name}.overwrite")
            shutil.rmtree(self.writing, ignore_errors=True)  # an earlier rerun that did not complete
        self.writing.mkdir(parents=True, exist_ok=True)

    @property
    def replacing(self) -> bool:
        """Whether earlier results wait in ``path`` for this run to complete."""
        return self.writing != self.path

    def write_json(self, name: str, data: Any) -> None:
        write_atomic(self.writing / name, to_json(data, indent=2, sort_keys=False) + "\n")

    def write_yaml(self, name: str, data: Any) -> None:
        write_atomic(self.writing / name, yaml.safe_dump(data, sort_keys=False))

    def append_lines(self, name: str, rows: list[dict]) -> None:
        with open(self.writing / name, "a") as handle:
            for row in rows:
                handle.write(to_json(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def set_status(self, state: str, error: str | None = None) -> None:
        set_status(self.writing, state, error)

    def complete(self, summary: Summary) -> None:
        """Write the summary, mark the run complete and, on a rerun, replace the earlier results.

        Only the run's own files move (other files in the directory are left alone); the earlier
        summary goes first and the new one comes last, so the directory never looks complete
        with a mix of the two runs.
        """
        self.write_json(SUMMARY, summary.written())
        self.set_status("complete")
        if not self.replacing:
            return
        (self.path / SUMMARY).unlink(missing_ok=True)
        for name in RUN_FILES:
            if (self.writing / name).exists():
                os.replace(self.writing / name, self.path / name)
            else:
                (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.writing, ignore_errors=True)
        self.writing = self.path

"""The run directory: what a run leaves behind, written so an interrupted run never looks complete.

Layout of ``results/<scenario>/<run-id>/``:

* ``scenario.yaml``  the resolved scenario (defaults filled in, overrides applied)
* ``status.json``    ``{"state": "running" | "complete" | "failed" | "interrupted", "error": ...}``
* ``metrics.jsonl``  one line per party per epoch (epoch 0 = setup)
* ``messages.jsonl`` one line per message: sender, receiver, kind, epoch, bytes
* ``summary.json``   written last, only when the run completed (the contract in README.md)

Whole files are written to a temporary name and renamed; JSON-lines files are appended and
flushed line by line, so a crash loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

SUMMARY = "summary.json"


class ResultsExistError(FileExistsError):
    pass


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: readers see all or nothing."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def default_run_dir(root: Path, scenario_name: str, seed: int) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / scenario_name / f"{stamp}-seed{seed}"
    path, n = base, 1
    while path.exists():  # two runs in the same second get distinct directories
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


class RunDirectory:
    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise ResultsExistError(f"{self.path} already holds results; pass --overwrite to replace them or choose another --out")
            for name in (SUMMARY, "status.json", "metrics.jsonl", "messages.jsonl", "scenario.yaml"):
                (self.path / name).unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data: Any) -> None:
        write_atomic(self.path / name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def write_yaml(self, name: str, data: Any) -> None:
        write_atomic(self.path / name, yaml.safe_dump(data, sort_keys=False))

    def append_lines(self, name: str, rows: list[dict]) -> None:
        with open(self.path / name, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def set_status(self, state: str, error: str | None = None) -> None:
        self.write_json("status.json", {"state": state, "error": error, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})


def read_lines(path: Path) -> list[dict]:
    """Rows of a JSON-lines file, ignoring a torn last line left by a crash."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows

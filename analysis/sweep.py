"""Sweeps: run a base scenario under every combination of named variants, resumably.

A sweep file::

    name: filters_vs_flip
    base: ../poison_10pct.yaml          # relative to the sweep file
    set: [epochs=20]                    # optional overrides for every run
    grid:                               # axis -> variant name -> list of key=value overrides
      attack:
        flip10: [parties.B.attacks.0.rate=0.1]
        flip30: [parties.B.attacks.0.rate=0.3]
      filter:
        none: ["parties.A.filters=[]"]
        agreement: ["parties.A.filters=[{kind: agreement}]"]

``python -m analysis.sweep SWEEP.yaml [--out DIR] [--parallel N]`` runs each combination as one
Ray task (parties in the task's process; attach to a cluster with ``RAY_ADDRESS``) into ``DIR/<axis=value,...>/`` (default ``results/sweeps/<name>``), skips combinations
that already have a ``summary.json`` (so an interrupted sweep resumes where it stopped), and
writes ``DIR/table.csv``: one row per run and party.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import yaml
from tqdm import tqdm

from testbed.config import ScenarioError, load_scenario
from testbed.results import SUMMARY, RunDirectory, write_atomic


def variants(sweep: dict[str, Any]) -> dict[str, tuple[dict[str, str], list[str]]]:
    """``{run name: ({axis: variant}, overrides)}`` for every combination of the grid."""
    grid = sweep.get("grid") or {}
    axes = list(grid)
    out = {}
    for choice in itertools.product(*(list(grid[a].items()) for a in axes)):
        labels = {axis: name for axis, (name, _) in zip(axes, choice)}
        overrides = list(sweep.get("set", [])) + [o for _, sets in choice for o in sets]
        out[",".join(f"{a}={v}" for a, v in labels.items()) or "base"] = (labels, overrides)
    return out


@ray.remote(num_cpus=1)
def _run_one(scenario, path: str) -> dict:
    """One scenario per Ray task, its parties in the task's process: Ray reuses task workers, so
    a sweep pays process start-up and imports once per worker, not twice per run."""
    import torch

    from testbed.inprocess import InProcessParties
    from testbed.runner import run_scenario

    torch.set_num_threads(1)
    return run_scenario(scenario, RunDirectory(Path(path), overwrite=True), progress=False, placement=InProcessParties)


def summary_rows(labels: dict[str, str], summary: dict) -> list[dict]:
    comm = summary["communication"]
    rows = []
    for party, values in summary["parties"].items():
        flt = values.get("filter") or {}
        rows.append({
            **labels, "party": party, "role": values["role"], "accuracy": values["accuracy"], "asr": values["asr"],
            "filter_kept": flt.get("kept"), "filter_precision": flt.get("precision"), "filter_recall": flt.get("recall"),
            "trust": flt.get("trust"), "bytes_per_epoch": comm["bytes_per_epoch"], "setup_bytes": comm["setup_bytes"],
            "protocol": summary["protocol"], "scheme": summary["scheme"],
        })
    return rows


def run_sweep(sweep_path: Path, out: Path | None = None, parallel: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run the sweep file's combinations (skipping finished ones); returns and writes the table."""
    sweep = yaml.safe_load(sweep_path.read_text())
    out = out or Path("results") / "sweeps" / sweep["name"]
    results = run_grid(sweep, (sweep_path.parent / sweep["base"]).resolve(), out, parallel, progress)
    return write_table(out / "table.csv", [row for labels, summary in results.values() for row in summary_rows(labels, summary)])


def write_table(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Write ``rows`` as CSV atomically; returns them as a frame."""
    table = pd.DataFrame(rows)
    write_atomic(path, table.to_csv(index=False))
    return table


def run_grid(sweep: dict[str, Any], base: Path, out: Path, parallel: int = 1, progress: bool = True) -> dict[str, tuple[dict[str, str], dict]]:
    """Run every combination of ``sweep``'s grid under ``out`` (finished ones are kept);
    returns ``{run name: ({axis: variant}, summary)}``."""
    runs = variants(sweep)
    # Validate every combination before running any.
    scenarios = {name: load_scenario(base, overrides) for name, (_, overrides) in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    todo = [name for name in runs if not (out / name / SUMMARY).exists()]
    from testbed.cluster import start_ray

    start_ray(next(iter(scenarios.values())).ray)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=sweep["name"], unit="run", file=sys.stderr, disable=not progress)
    pending: dict[Any, str] = {}
    while todo or pending:
        while todo and len(pending) < parallel:
            name = todo.pop(0)
            pending[_run_one.remote(scenarios[name], str(out / name))] = name
        done, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(done[0])
        ray.get(done[0])  # raises with the failing party named
        bar.update(1)
    bar.close()
    return {name: (labels, json.loads((out / name / SUMMARY).read_text())) for name, (labels, _) in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (each needs a core per party)")
    args = parser.parse_args(argv)
    try:
        table = run_sweep(args.sweep, args.out, args.parallel)
    except ScenarioError as err:
        print(f"{args.sweep}: {err}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A user's own components, from the command line, without forking: a module named in the
scenario's ``plugins`` key is imported before validation in every process that reads the scenario
(the driver, each Ray actor, each sweep task)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

PLUGIN = '''
"""A user's attack and filter, outside the project."""
import numpy as np
from pydantic import Field

from attacks.base import DataPoisoning, PoisonedData, SuccessProbe
from testbed.filters.base import Filter
from testbed.registry import ATTACKS, FILTERS, Params


@ATTACKS.register("everything_is_zero")
class EverythingIsZero(DataPoisoning):
    class Params(Params):
        rate: float = Field(ge=0, le=1)

    def poison(self, x, y, classes, rng):
        poisoned = rng.random(len(y)) < self.params.rate
        return PoisonedData(x.copy(), np.where(poisoned, 0, y), poisoned & (y != 0))

    def success_probe(self, x_test, y_test):
        return SuccessProbe(x_test[y_test != 0], 0)


@FILTERS.register("drop_all")
class DropAll(Filter):
    def weights(self, view):
        return np.zeros(len(view.labels), dtype=np.float32)
'''

SCENARIO = {
    "plugins": ["my_components"],
    "name": "plugged",
    "epochs": 3,
    "dataset": {"kind": "synthetic", "train_samples": 120, "test_samples": 60, "classes": 3, "side": 3},
    "training": {"batch_size": 16, "learning_rate": 0.01, "warmup_epochs": 1},
    "parties": {
        "A": {"samples": 50, "model": {"kind": "mlp", "hidden": [8]}, "filters": [{"kind": "drop_all"}]},
        "B": {"samples": 50, "role": "malicious", "model": {"kind": "mlp", "hidden": [8]}, "attacks": [{"kind": "everything_is_zero", "rate": 1.0}]},
    },
}


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def workspace(tmp_path: Path, plugin: str = PLUGIN) -> Path:
    (tmp_path / "my_components.py").write_text(textwrap.dedent(plugin))
    (tmp_path / "plugged.yaml").write_text(yaml.safe_dump(SCENARIO))
    return tmp_path


def test_a_user_attack_and_filter_run_from_testbed_run_on_ray_actors(tmp_path):
    done = run(["testbed.run", "plugged.yaml", "--out", "out", "--quiet"], workspace(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["parties"]["B"]["asr"] == 1.0  # B learned "everything is class 0"
    assert summary["parties"]["A"]["filter"]["kept"] == 0.0  # A's own filter dropped every answer
    assert yaml.safe_load((tmp_path / "out" / "scenario.yaml").read_text())["plugins"] == ["my_components"]


def test_a_user_component_runs_in_sweep_tasks(tmp_path):
    workspace(tmp_path)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"name": "plugged_sweep", "base": "plugged.yaml", "grid": {"rate": {"half": ["parties.B.attacks.0.rate=0.5"]}}}))
    done = run(["analysis.sweep", "sweep.yaml", "--out", "sweep_out"], tmp_path)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "sweep_out" / "table.csv").read_text()
    assert "complete" in table and "failed" not in table


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path):
    workspace(tmp_path, plugin="import numpy\nraise RuntimeError('the GPU is on fire\\nsecond line')\n")
    done = run(["testbed.run", "plugged.yaml", "--out", "out"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "plugins.0: cannot import module 'my_components': RuntimeError: the GPU is on fire" in done.stderr
    assert "second line" not in done.stderr and not (tmp_path / "out").exists()
    bad = {**SCENARIO, "plugins": ["no_such_module_here", "not a module"]}
    (tmp_path / "plugged.yaml").write_text(yaml.safe_dump(bad))
    done = run(["testbed.run", "plugged.yaml", "--out", "out"], tmp_path)
    assert done.returncode == 2
    assert "plugins.0: cannot import module 'no_such_module_here': ModuleNotFoundError" in done.stderr
    assert "plugins.1: expected a module to import" in done.stderr

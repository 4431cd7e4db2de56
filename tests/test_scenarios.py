"""Every scenario and sweep file shipped under scenarios/ validates."""

import json
import os
from pathlib import Path

import pytest
import yaml

from testbed.config import load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
CIFAR10_COPY = SCENARIOS.parent.parent / "shared" / "data" / "cifar10-jpeg.zip"


def find_cifar10_copy(scenario: Path, monkeypatch) -> None:
    """CIFAR-10 scenarios name no path: they validate where a copy is known, as on CI."""
    if "kind: cifar10" in scenario.read_text() and not os.environ.get("SMULE_CIFAR10"):
        if not CIFAR10_COPY.is_file():
            pytest.skip("no CIFAR-10 copy to validate CIFAR-10 scenarios against")
        monkeypatch.setenv("SMULE_CIFAR10", str(CIFAR10_COPY))


@pytest.mark.parametrize("path", sorted(p.relative_to(SCENARIOS) for p in SCENARIOS.rglob("*.yaml") if p.parent.name != "sweeps"), ids=str)
def test_scenario_file_validates(path, monkeypatch):
    find_cifar10_copy(SCENARIOS / path, monkeypatch)
    scenario = load_scenario(SCENARIOS / path)
    assert scenario.name == yaml.safe_load((SCENARIOS / path).read_text())["name"]
    # The resolved scenario (what a run writes to scenario.yaml) reads back as the same scenario.
    assert parse_scenario(scenario.dump()) == scenario


@pytest.mark.parametrize("path", sorted(p.name for p in (SCENARIOS / "sweeps").glob("*.yaml")))
def test_every_variant_of_a_sweep_validates(path, monkeypatch):
    """Each variant on its own (the full product is validated when the sweep runs)."""
    sweep = yaml.safe_load((SCENARIOS / "sweeps" / path).read_text())
    base = SCENARIOS / "sweeps" / sweep["base"]
    find_cifar10_copy(base, monkeypatch)
    load_scenario(base, list(sweep.get("set", [])))
    for axis, variants in sweep["grid"].items():
        resolved = {name: load_scenario(base, list(sweep.get("set", [])) + list(overrides)) for name, overrides in variants.items()}
        # Every variant of an axis is a different run: none is a no-op copy of another.
        assert len({json.dumps(s.dump(), sort_keys=True) for s in resolved.values()}) == len(variants), axis

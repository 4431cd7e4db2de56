"""Who holds what: the split of the train pool between parties and the poison applied to it.

Everything here is a pure function of the scenario and its seed, so each party actor can
rebuild its own share without any data passing through the driver.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from attacks.base import Attack, DataPoisoning, PredictionManipulation, SuccessProbe
from testbed.config import Scenario
from testbed.datasets import ArrayDataset, LoadedData
from testbed.registry import ATTACKS, DATASETS, SPLITS
from testbed.seeding import seeded_rng


@dataclass(frozen=True)
class PartyData:
    train: ArrayDataset
    poisoned: np.ndarray  # bool (n,): simulator ground truth, never read by training or filters
    indices: np.ndarray  # int (n,): rows of the train pool the share was drawn from (who holds what, for audits)


def load_data(scenario: Scenario) -> LoadedData:
    """The scenario's data set, loaded once per process: parties, clean twins and audits in one
    process share it (nobody writes to it: shares and poison are copies), which matters for CIFAR-10 (600 MB as float32).

    With ``validation_samples``, a seeded slice of the train pool takes the test set's place and
    the parties split the rest: a hyperparameter search then never sees the test set."""
    return _load(json.dumps(scenario.dataset.dump(), sort_keys=True), scenario.seed, scenario.validation_samples)


# One data set at a time: every load within a run has the same key, and a Ray worker that runs
# several runs in turn must not carry a finished run's copy (600 MB for CIFAR-10) into the next
# run's memory and peak.
@functools.lru_cache(maxsize=1)
def _load(dataset: str, seed: int, validation_samples: int) -> LoadedData:
    loaded = DATASETS.create(DATASETS.parse_spec(json.loads(dataset))).load(seed)
    if not validation_samples:
        return loaded
    order = seeded_rng(seed, "validation").permutation(len(loaded.train))
    held, rest = np.sort(order[:validation_samples]), np.sort(order[validation_samples:])
    return LoadedData(loaded.train.subset(rest), loaded.train.subset(held), loaded.classes)


def shares(scenario: Scenario, loaded: LoadedData) -> dict[str, np.ndarray]:
    """Each party's rows of the train pool: the split is drawn for all parties at once, so any
    process rebuilds any party's share from the scenario alone."""
    names = list(scenario.parties)
    sizes = [scenario.parties[n].samples for n in names]
    return dict(zip(names, SPLITS.create(scenario.split).assign(loaded.train.y, sizes, loaded.classes, seeded_rng(scenario.seed, "split"))))


def party_data(scenario: Scenario, loaded: LoadedData, only: str | None = None) -> dict[str, PartyData]:
    """Every party's (poisoned) share, or just ``only``'s, without poisoning the others'."""
    out = {}
    for name, index in shares(scenario, loaded).items():
        if only is not None and name != only:
            continue
        x, y = loaded.train.x[index], loaded.train.y[index]
        poisoned = np.zeros(len(y), dtype=bool)
        for i, attack in enumerate(party_attacks(scenario, name)):
            if isinstance(attack, DataPoisoning):
                result = attack.poison(x, y, loaded.classes, seeded_rng(scenario.seed, "poison", name, i))
                x, y, poisoned = result.x, result.y, poisoned | result.poisoned
        out[name] = PartyData(ArrayDataset(x, y), poisoned, index)
    return out


def party_attacks(scenario: Scenario, name: str) -> list[Attack]:
    """Party ``name``'s attacks, each fitted on the party's clean share (:meth:`Attack.fit`)."""
    return _fitted_attacks(scenario.model_dump_json(), name)


# A fitted attack may have optimised a trigger for seconds; every process that needs it (the
# attacker, and each party measuring the attack's success) fits it once per scenario.
@functools.lru_cache(maxsize=8)
def _fitted_attacks(scenario_json: str, name: str) -> list[Attack]:
    scenario = Scenario.model_validate_json(scenario_json)
    specs = scenario.parties[name].attacks
    if not specs:
        return []
    loaded = load_data(scenario)
    index = shares(scenario, loaded)[name]
    attacks = [ATTACKS.create(spec) for spec in specs]
    for i, attack in enumerate(attacks):
        attack.fit(loaded.train.x[index], loaded.train.y[index], loaded.classes, seeded_rng(scenario.seed, "fit", name, i))
    return attacks


def manipulation(scenario: Scenario, party: str) -> PredictionManipulation | None:
    """The party's prediction manipulation, if any (validation allows at most one)."""
    return next((a for a in party_attacks(scenario, party) if isinstance(a, PredictionManipulation)), None)


def success_probe(scenario: Scenario, loaded: LoadedData) -> SuccessProbe | None:
    """The scenario's attack target: the first targeted attack of any malicious party."""
    return next(iter(success_probes(scenario, loaded).values()), None)


def success_probes(scenario: Scenario, loaded: LoadedData) -> dict[str, SuccessProbe]:
    """Every targeted attack's probe, keyed ``<attacker>/<attack kind>`` in the scenario's order
    (``#2``, ``#3`` mark a party's second and third attack of one kind): the keys of
    ``asr_by_attack`` in the results."""
    probes: dict[str, SuccessProbe] = {}
    for name in scenario.parties:
        for attack in party_attacks(scenario, name):
            probe = attack.success_probe(loaded.test.x, loaded.test.y)
            if probe is not None:
                key, n = f"{name}/{attack.kind}", 1
                while (key if n == 1 else f"{key}#{n}") in probes:
                    n += 1
                probes[key if n == 1 else f"{key}#{n}"] = probe
    return probes

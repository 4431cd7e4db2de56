"""Who holds what: each party's share of the train pool, poisoned by its own attacks, and the
samples of it that the party sends its peers for prediction.

Everything here is a pure function of the scenario and its seed, so each party actor can
rebuild its own share without any data passing through the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attacks.base import DataPoisoning
from testbed.attackers import party_attacks
from testbed.config import Scenario
from testbed.datasets import ArrayDataset, LoadedData
from testbed.seeding import seeded_rng
from testbed.splits import party_rows


@dataclass(frozen=True)
class PartyData:
    train: ArrayDataset
    poisoned: np.ndarray  # bool (n,): simulator ground truth, never read by training or filters
    indices: np.ndarray  # int (n,): rows of the train pool the share was drawn from (who holds what, for audits)
    queried: np.ndarray  # int: rows of ``train`` the party sends its peers for prediction

    @property
    def queried_x(self) -> np.ndarray:
        """The inputs the party's peers answer on: what the querier sends, and what the simulator
        shows a malicious responder's clean twin."""
        return self.train.x[self.queried]

    @property
    def queried_y(self) -> np.ndarray:
        return self.train.y[self.queried]


def party_data(scenario: Scenario, loaded: LoadedData, only: str | None = None) -> dict[str, PartyData]:
    """Every party's (poisoned) share, or just ``only``'s, without poisoning the others'."""
    out = {}
    for name, index in party_rows(scenario, loaded).items():
        if only is not None and name != only:
            continue
        x, y = loaded.train.x[index], loaded.train.y[index]
        poisoned = np.zeros(len(y), dtype=bool)
        for i, attack in enumerate(party_attacks(scenario, name)):
            if isinstance(attack, DataPoisoning):
                result = attack.poison(x, y, loaded.classes, seeded_rng(scenario.seed, "poison", name, i))
                x, y, poisoned = result.x, result.y, poisoned | result.poisoned
        out[name] = PartyData(ArrayDataset(x, y), poisoned, index, queried_samples(scenario, name, len(y)))
    return out


def queried_samples(scenario: Scenario, name: str, count: int) -> np.ndarray:
    """Indices of the samples party ``name`` sends its peers for prediction: all of them, or a
    seeded subset of ``training.query_fraction`` (the setup bytes scale with it)."""
    fraction = scenario.training.query_fraction
    if fraction >= 1:
        return np.arange(count)
    chosen = seeded_rng(scenario.seed, "query", name).choice(count, max(1, round(fraction * count)), replace=False)
    return np.sort(chosen)

"""How the train pool is divided between parties: disjoint index sets of the requested sizes."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from testbed.config import Scenario
from testbed.datasets import LoadedData
from testbed.registry import SPLITS, Component, Params
from testbed.seeding import seeded_rng


class Split(Component):
    def assign(self, labels: np.ndarray, sizes: list[int], classes: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Disjoint sorted index arrays into ``labels``, one per party, of the given sizes."""
        raise NotImplementedError


def party_rows(scenario: Scenario, loaded: LoadedData) -> dict[str, np.ndarray]:
    """Each party's rows of the train pool under the scenario's split: drawn for all parties at
    once, so any process rebuilds any party's rows from the scenario alone."""
    names = list(scenario.parties)
    sizes = [scenario.parties[n].samples for n in names]
    return dict(zip(names, SPLITS.create(scenario.split).assign(loaded.train.y, sizes, loaded.classes, seeded_rng(scenario.seed, "split"))))


@SPLITS.register("iid")
class IIDSplit(Split):
    """Uniformly random disjoint subsets."""

    def assign(self, labels, sizes, classes, rng):
        order = rng.permutation(len(labels))
        bounds = np.cumsum([0, *sizes])
        return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


@SPLITS.register("dirichlet")
class DirichletSplit(Split):
    """Label skew: each party's class proportions are drawn from Dirichlet(alpha).

    Small ``alpha`` gives parties few dominant classes; large ``alpha`` approaches IID
    (the convention of Hsu et al., 2019). A class that runs out is filled from the others.
    """

    class Params(Params):
        alpha: float = Field(0.5, gt=0, description="Dirichlet concentration: smaller is more skewed")

    def assign(self, labels, sizes, classes, rng):
        remaining = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(classes)]
        parts = []
        for size in sizes:
            wanted = rng.multinomial(size, rng.dirichlet([self.params.alpha] * classes))
            taken = []
            for c in range(classes):
                k = min(wanted[c], len(remaining[c]))
                taken += remaining[c][:k]
                remaining[c] = remaining[c][k:]
            shortfall = size - len(taken)
            for c in rng.permutation(classes):  # classes exhausted by the draw: fill from the rest
                k = min(shortfall, len(remaining[c]))
                taken += remaining[c][:k]
                remaining[c] = remaining[c][k:]
                shortfall -= k
            parts.append(np.sort(np.asarray(taken, dtype=np.int64)))
        return parts

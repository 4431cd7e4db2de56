"""What an attack is, as the testbed sees it.

Two families, both registered in :data:`ATTACKS` and chosen in a scenario by ``kind``:

* :class:`DataPoisoning` rewrites part of the malicious party's training data before training,
  so its model (and hence its answers) carry the poison;
* :class:`PredictionManipulation` changes the logits a malicious responder returns, through a
  :class:`~testbed.logit_map.LogitMap` (linear map plus offset), which a responder can also
  evaluate on CKKS-encrypted logits.

An attack may learn from the attacker's own clean data first (:meth:`Attack.fit`).

Every attack is deterministic given the ``numpy.random.Generator`` it receives and reports
ground truth (which samples it touched) to the simulator only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.logit_map import LogitMap
from testbed.registry import Component


@dataclass(frozen=True)
class PoisonedData:
    x: np.ndarray
    y: np.ndarray
    poisoned: np.ndarray  # bool (n,): ground truth, kept by the simulator


@dataclass(frozen=True)
class SuccessProbe:
    """Test inputs whose classification as ``target`` counts as attack success (docs/scenarios.md, "Attacks")."""

    x: np.ndarray
    target: int


class Attack(Component):
    #: True for a :class:`PredictionManipulation` (the schema allows one per party without importing this module).
    manipulates_predictions = False

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        """Raise ``ValueError`` if the parameters do not fit the dataset (per-sample ``input_shape``,
        ``classes``), naming the parameter, its value and what is allowed; called at scenario validation."""

    def fit(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> None:
        """Learn what the attack needs from the attacker's own clean share ``(x, y)`` (a trigger
        optimised against a shadow student, a class-similarity table); called once, before
        :meth:`poison`, :meth:`logit_map` or :meth:`success_probe`, in every process that needs
        them. Default: nothing to learn."""

    def success_probe(self, x_test: np.ndarray, y_test: np.ndarray) -> SuccessProbe | None:
        """The inputs on which attack success rate is measured, or ``None`` for untargeted attacks."""
        return None


class DataPoisoning(Attack):
    def poison(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> PoisonedData:
        raise NotImplementedError


class PredictionManipulation(Attack):
    manipulates_predictions = True

    def logit_map(self, n_samples: int, classes: int, rng: np.random.Generator) -> LogitMap:
        """The map applied to the logits returned for ``n_samples`` queried samples this epoch."""
        raise NotImplementedError



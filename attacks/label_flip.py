"""Label flipping: the malicious party trains on wrong labels, so its model, and through its
answers the honest party's model, learns them."""

from __future__ import annotations

import numpy as np

from attacks.base import DataPoisoning, PoisonedData
from attacks.budget import Rate, choose
from attacks.targets import SourceTargetParams, SourceToTarget
from testbed.registry import ATTACKS, Params


@ATTACKS.register("label_flip")
class TargetedLabelFlip(SourceToTarget, DataPoisoning):
    """Targeted label flipping (source -> target), as in Tolpegin et al., "Data Poisoning Attacks
    Against Federated Learning Systems", ESORICS 2020.

    Parameters:
        rate: the poison budget, ``round(rate * n)`` over the party's ``n`` training samples,
            all drawn among the source-class samples; when the party has fewer source samples,
            every one of them is flipped (``poisoned.sum()`` is the count actually flipped).
        source: the class whose samples are relabelled.
        target: the label they get.

    Success probe: the source-class test samples, which count as a success when classified as
    ``target``.
    """

    Params = SourceTargetParams

    def poison(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> PoisonedData:
        poisoned = choose(rng, y == self.params.source, self.params.rate)
        flipped = y.copy()
        flipped[poisoned] = self.params.target
        return PoisonedData(x.copy(), flipped, poisoned)


@ATTACKS.register("random_label_flip")
class RandomLabelFlip(DataPoisoning):
    """Random (untargeted) label flipping, the adversarial label noise of Biggio, Nelson and
    Laskov, "Support Vector Machines Under Adversarial Label Noise", ACML 2011.

    Parameters:
        rate: ``round(rate * n)`` of the party's ``n`` training samples, drawn uniformly, each get
            a label drawn uniformly among the ``classes - 1`` labels other than its own.

    No success probe: the attack lowers accuracy rather than aiming at a class.
    """

    class Params(Params):
        rate: Rate

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        if classes < 2:
            raise ValueError(f"attack '{self.kind}': needs at least 2 classes to flip a label, got classes={classes}")

    def poison(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> PoisonedData:
        poisoned = choose(rng, np.ones(len(y), dtype=bool), self.params.rate)
        flipped = y.copy()
        # a shift drawn from 1..classes-1 (mod classes) is uniform over the other labels
        flipped[poisoned] = (y[poisoned] + rng.integers(1, classes, size=int(poisoned.sum()))) % classes
        return PoisonedData(x.copy(), flipped, poisoned)

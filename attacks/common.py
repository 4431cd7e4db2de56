"""What several attack families share: the rate rule, class-index parameters and their checks,
and the source -> target success probe."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from attacks.base import SuccessProbe
from testbed.registry import Params

Rate = Annotated[float, Field(ge=0.0, le=1.0, description="share of the samples attacked (see choose)")]
ClassIndex = Annotated[int, Field(ge=0, description="a class index, below the dataset's class count")]


def budget(eligible: np.ndarray, rate: float) -> int:
    """How many samples an attack at ``rate`` touches: ``round(rate * n)`` over all ``n`` samples,
    at most the number of ``eligible`` ones."""
    return min(round(rate * len(eligible)), int(eligible.sum()))


def choose(rng: np.random.Generator, eligible: np.ndarray, rate: float) -> np.ndarray:
    """The attacked samples, as a bool mask: ``round(rate * n)`` of the ``n = len(eligible)``
    samples, drawn uniformly without replacement among the ``eligible`` ones, or every eligible
    sample when there are fewer.

    The count is taken over all ``n`` samples, not over the eligible subset, so a given rate is
    the same budget for every attack. ``round`` is Python's (halves to even: 0.25 * 10 -> 2).
    """
    mask = np.zeros(len(eligible), dtype=bool)
    mask[rng.choice(np.flatnonzero(eligible), size=budget(eligible, rate), replace=False)] = True
    return mask


def check_classes(attack, classes: int, *names: str) -> None:
    """Raise ``ValueError`` if a named class-index parameter of ``attack`` is not below ``classes``."""
    for name in names:
        value = getattr(attack.params, name)
        if value >= classes:
            raise ValueError(f"attack '{attack.kind}': {name}={value} is not a class; allowed 0..{classes - 1}")


class SourceTargetParams(Params):
    rate: Rate
    source: ClassIndex = Field(description="the class whose samples are attacked")
    target: ClassIndex = Field(description="the class the attacker wants them to become")

    @model_validator(mode="after")
    def _distinct(self) -> SourceTargetParams:
        # source == target would attack nothing while still reporting samples as attacked
        if self.source == self.target:
            raise ValueError(f"source and target are both {self.source}; they must differ")
        return self


class SourceToTarget:
    """Mixin for attacks that move class ``source`` to ``target``: their ASR is the share of
    source-class test samples classified as ``target``."""

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        check_classes(self, classes, "source", "target")

    def success_probe(self, x_test: np.ndarray, y_test: np.ndarray) -> SuccessProbe:
        return SuccessProbe(x_test[y_test == self.params.source], self.params.target)

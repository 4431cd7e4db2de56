"""Class-index parameters of targeted attacks, their check against the data set, and the
source -> target attack's parameters and success probe."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from attacks.base import SuccessProbe
from attacks.budget import Rate
from testbed.registry import Params

ClassIndex = Annotated[int, Field(ge=0, description="a class index, below the dataset's class count")]


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

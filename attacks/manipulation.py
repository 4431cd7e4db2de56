"""Prediction manipulation by a malicious responder.

The responder computes its answers under CKKS encryption: it never sees the querier's samples,
labels or even its own logits, so it can only apply a per-sample affine map to the encrypted
logits (:class:`~testbed.logit_map.LogitMap`), chosen blindly. Every attack here is such a map.
Its harm shows in the honest querier's model, which distils from the manipulated answers.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from attacks.base import PredictionManipulation, SuccessProbe
from attacks.budget import Rate, choose
from attacks.targets import ClassIndex, SourceTargetParams, SourceToTarget, check_classes
from testbed.logit_map import LogitMap
from testbed.registry import ATTACKS, Params


class Manipulation(PredictionManipulation):
    """Base: each call picks the manipulated samples afresh, then a subclass says what is done to
    them through :meth:`matrix` and :meth:`offset` (identity and zero unless overridden).

    Parameters:
        rate: ``round(rate * n)`` of the ``n`` queried samples, drawn uniformly from the ``rng``
            at every call (every epoch), are manipulated; ``LogitMap.selected`` marks them.
    """

    class Params(Params):
        rate: Rate

    def logit_map(self, n_samples: int, classes: int, rng: np.random.Generator) -> LogitMap:
        selected = choose(rng, np.ones(n_samples, dtype=bool), self.params.rate)
        return LogitMap(selected, self.matrix(classes), self.offset(selected, classes, rng))

    def matrix(self, classes: int) -> np.ndarray:
        return np.eye(classes)

    def offset(self, selected: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros((len(selected), classes))


@ATTACKS.register("class_swap")
class ClassSwap(SourceToTarget, Manipulation):
    """Swap the ``source`` and ``target`` logits (a permutation matrix): the answer-side twin of
    targeted label flipping (Tolpegin et al., ESORICS 2020), which teaches the honest querier
    that ``source`` samples look like ``target`` (and conversely).

    Parameters: ``rate`` (see :class:`Manipulation`), ``source``, ``target`` (distinct classes).

    Success probe, measured on the honest party's model: the source-class test samples, a
    success when classified as ``target``.
    """

    Params = SourceTargetParams

    def matrix(self, classes: int) -> np.ndarray:
        swap = np.eye(classes)
        s, t = self.params.source, self.params.target
        swap[[s, t]] = swap[[t, s]]
        return swap


@ATTACKS.register("targeted_push")
class TargetedPush(Manipulation):
    """Add ``strength`` to the ``target`` logit, moving probability mass toward ``target`` on every
    manipulated answer whatever its true class.

    Parameters: ``rate`` (see :class:`Manipulation`), ``target``, and ``strength``, the logit
    offset (so ``exp(strength)`` is the factor on the target's unnormalised probability).

    Success probe, measured on the honest party's model: the test samples whose true class is not
    ``target`` (as for backdoors, without a trigger), a success when classified as ``target``.
    """

    class Params(Manipulation.Params):
        target: ClassIndex
        strength: float = Field(gt=0.0, allow_inf_nan=False, description="added to the target logit")

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        check_classes(self, classes, "target")

    def offset(self, selected: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
        push = np.zeros((len(selected), classes))
        push[selected, self.params.target] = self.params.strength
        return push

    def success_probe(self, x_test: np.ndarray, y_test: np.ndarray) -> SuccessProbe:
        return SuccessProbe(x_test[y_test != self.params.target], self.params.target)


@ATTACKS.register("scale")
class Scale(Manipulation):
    """Multiply every logit by ``factor``: above 1 it makes the answers overconfident, between 0
    and 1 it flattens them toward uniform, below 0 it reverses their ranking. No success probe.

    Parameters: ``rate`` (see :class:`Manipulation`) and ``factor`` (finite, not 1).
    """

    class Params(Manipulation.Params):
        factor: float = Field(allow_inf_nan=False, description="every logit is multiplied by it (not 1)")

        @field_validator("factor")
        @classmethod
        def _not_one(cls, factor: float) -> float:
            # factor 1 changes nothing, yet its samples would be reported as manipulated
            if factor == 1.0:
                raise ValueError("factor 1 leaves the logits unchanged; choose another value")
            return factor

    def matrix(self, classes: int) -> np.ndarray:
        return self.params.factor * np.eye(classes)


@ATTACKS.register("noise")
class Noise(Manipulation):
    """Add independent Gaussian noise of standard deviation ``std`` to every logit of the
    manipulated samples, drawn from the ``rng`` after the selection. No success probe.

    Parameters: ``rate`` (see :class:`Manipulation`) and ``std`` (> 0, in logit units).
    """

    class Params(Manipulation.Params):
        std: float = Field(gt=0.0, allow_inf_nan=False, description="standard deviation of the noise added to each logit")

    def offset(self, selected: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
        noise = np.zeros((len(selected), classes))
        noise[selected] = rng.normal(0.0, self.params.std, size=(int(selected.sum()), classes))
        return noise

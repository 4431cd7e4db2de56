"""Attacks on the confidence channel: what a rewrite that keeps only the peer's probability of the
true label (``true_label``, ``lacking_classes``) still lets through.

``true_label`` erases *which* wrong class an answer points to, but it keeps *how sure* the answer
is of the label: the querier distils its peer's ``p(true label)``. An answer that doubts the label
of every sample of one class teaches the querier to doubt that class, which lowers its margin there
and hands the class's borderline test samples to its nearest neighbour (3 to 8, 4 to 9).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from attacks.manipulation import Manipulation
from attacks.targets import SourceTargetParams, SourceToTarget
from testbed.registry import ATTACKS


class OneLogitShift(SourceToTarget, Manipulation):
    """Add ``sign * strength`` to one class's logit (``shifted``: ``source`` or ``target``) of every
    manipulated answer: a fixed linear map, which a blind CKKS responder can apply."""

    shifted: str
    sign: float

    def offset(self, selected: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
        shift = np.zeros((len(selected), classes))
        shift[selected, getattr(self.params, self.shifted)] = self.sign * self.params.strength
        return shift


@ATTACKS.register("confidence_drain")
class ConfidenceDrain(OneLogitShift):
    """Lower the ``source`` logit of the answers by ``strength``: ``out = logits - strength * e_source``.

    Written against ``true_label``. What the attacker knows: the querier's defence (it distils
    only the peer's probability of the true label) and the distillation temperature's role; not
    the querier's samples, labels or the answers' values, since under CKKS it applies the map
    blindly to encrypted logits. It cannot tell which answers belong to ``source`` samples, so it
    lowers ``source`` on every manipulated answer: on ``source`` samples that is the label's
    probability (the harm); on the others it moves a little mass off a wrong class, which the
    defence spreads evenly anyway.

    Parameters: ``rate`` (see :class:`~attacks.manipulation.Manipulation`), ``source`` (the class
    whose confidence is drained), ``target`` (the neighbour its samples are expected to fall to;
    it changes only what counts as success) and ``strength`` (logits, > 0; default 8).

    Success probe, measured on the honest party's model: the ``source``-class test samples, a
    success when classified as ``target``. ``own_confidence`` is built to stop it: the distilled
    ``p(true label)`` never falls below the querier's own.
    """

    class Params(SourceTargetParams):
        strength: float = Field(8.0, gt=0.0, allow_inf_nan=False, description="logits taken off the source class")

    shifted, sign = "source", -1.0


@ATTACKS.register("confidence_boost")
class ConfidenceBoost(OneLogitShift):
    """Raise the ``target`` logit of the answers by ``strength``: ``out = logits + strength * e_target``.

    Written against ``own_confidence`` with ``true_label`` (``anchored_true_label``), the mirror
    of ``confidence_drain``: ``own_confidence`` lets the peer raise the querier's confidence in a
    label and never lower it, so the one channel left is a rise. On ``target`` samples the boosted
    answer says "surely the label", which the querier distils as the heavier weight of a class
    prior (its boundary moves toward ``target``, taking borderline ``source`` samples); on every
    other sample it lowers ``p(true label)``, which ``own_confidence`` undoes and which ``true_label``
    alone lets through (a drain of every class but ``target``).

    What the attacker knows: the querier's defences, not its samples, labels or the answers'
    values (blind, as ``confidence_drain``). Parameters: ``rate``, ``source`` (the class it hopes
    to take; it changes only what counts as success), ``target`` and ``strength`` (logits, > 0;
    default 8). Success probe: ``source``-class test samples classified as ``target``.
    """

    class Params(SourceTargetParams):
        strength: float = Field(8.0, gt=0.0, allow_inf_nan=False, description="logits added to the target class")

    shifted, sign = "target", 1.0

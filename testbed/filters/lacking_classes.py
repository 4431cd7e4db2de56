"""Lacking classes: distil the peer's dark knowledge only about classes the querier barely holds.

The querier's own labels already teach it every class it holds enough samples of; what it cannot
learn alone are the classes it lacks. On a label-skewed split that is where SMuLe's gain lives
(docs/results.md: the gain is in the querier's rare classes, carried by answers that put mass on
them). This rewrite keeps the peer's probability of every class below ``min_share`` of
the querier's queried samples, sets the true label's to ``max(peer, own)`` (``confidence: own``,
the rule of ``own_confidence``; ``peer`` keeps the peer's), and spreads the rest of the mass
evenly over the other classes (``rest: spread``, as ``true_label`` does) or in the proportions
of the querier's own model (``rest: own``).

A backdoor or a push toward a class the querier holds is flattened as ``true_label`` flattens it.
Where it fails, by construction: an attack whose target is a class the querier lacks passes
through the very channel that carries the gain, since no rule on the answers alone tells a
backdoor's mass on an unknown class from genuine knowledge of it (docs/results.md measures it).
On an IID split no class is lacking and it is ``true_label`` (with ``own_confidence``). Combine
it after ``class_floor``, which removes class-wide pushes toward a lacking class.
"""

from typing import Literal

import numpy as np
from pydantic import Field

from testbed.filters.base import Filter, PredictionView, logits_for, own_confidence, true_label_mask
from testbed.metrics import softmax
from testbed.registry import FILTERS, Params


@FILTERS.register("lacking_classes")
class LackingClasses(Filter):
    class Params(Params):
        min_share: float = Field(0.02, ge=0, le=1, description="a class is lacking when it is below this share of the querier's queried samples")
        confidence: Literal["own", "peer"] = Field("own", description="the true label's probability: max(peer, own), as own_confidence sets it, or the peer's")
        rest: Literal["spread", "own"] = Field("spread", description="how the mass of the other classes is shared: evenly, or as the querier's own model shares it")
        max_mass: float = Field(1.0, gt=0, le=1, description="most mass the lacking classes keep per answer (the rest is spread): bounds what a poisoned answer can push onto them")

    def lacking(self, labels: np.ndarray, classes: int) -> np.ndarray:
        """Bool ``(classes,)``: the classes the querier holds fewer than ``min_share`` of."""
        return np.bincount(labels, minlength=classes) < self.params.min_share * len(labels)

    def rewrite(self, view: PredictionView) -> np.ndarray:
        soft = view.peer_soft()
        label = true_label_mask(view)
        p_true = own_confidence(view) if self.params.confidence == "own" else soft[label]
        # The lacking classes keep the peer's mass as sent (the gain); raising the label's
        # probability takes from the other classes first, and from the lacking ones only when
        # nothing else is left.
        kept = np.where(self.lacking(view.labels, soft.shape[1])[None, :] & ~label, soft, 0.0)
        budget = np.minimum(1.0 - p_true, self.params.max_mass)
        kept *= np.minimum(1.0, budget / np.maximum(kept.sum(axis=1), 1e-12))[:, None]
        rest = 1.0 - p_true - kept.sum(axis=1)
        others = ~label & (kept == 0)
        if self.params.rest == "own":
            weights = np.where(others, softmax(view.own_logits, view.temperature), 0.0)
        else:
            weights = others.astype(np.float64)
        shares = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        out = kept + rest[:, None] * shares
        out[label] = p_true
        return logits_for(out, view.temperature)

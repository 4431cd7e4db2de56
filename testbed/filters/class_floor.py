"""Class floor: remove the mass a class gains across all the querier's classes alike.

Genuine dark knowledge is specific: a peer puts mass on class ``j`` for the samples that resemble
``j`` (a 7 for some 1s, an 8 for some 3s). A push toward a target, a blind logit offset, or a
peer's own class prior puts mass on ``j`` for samples of every class. For each class ``j`` the
querier computes, per class ``c != j`` it holds at least ``min_count`` samples of, the peer's mean
probability of ``j`` on its samples of ``c``; the median over those ``c`` is ``j``'s floor, the
part of ``j``'s mass no particular class explains. Each answer's mass on ``j`` (where ``j`` is not
the sample's label) loses up to that floor, and the mass removed is spread evenly over the
sample's other classes; the true label's probability is untouched.

Where it fails: mass aimed at a few source classes (a targeted label flip, a backdoor whose
trigger resembles some classes more than others) is specific and passes; a push at a rate below
one half leaves a median of unpushed answers. Built to combine with ``lacking_classes``, whose
weak point is exactly a class-wide push toward a class the querier lacks.
"""

import numpy as np
from pydantic import Field

from testbed.filters.base import Filter, PredictionView, logits_for, true_label_mask
from testbed.registry import FILTERS, Params


@FILTERS.register("class_floor")
class ClassFloor(Filter):
    class Params(Params):
        min_count: int = Field(5, ge=1, description="samples of a class the querier needs before that class's answers count toward a floor")

    def floors(self, soft: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(classes,)``: per class, the median over the querier's other well-held classes of the
        peer's mean mass on it (0 where fewer than one such class)."""
        classes = soft.shape[1]
        held = [c for c in range(classes) if (labels == c).sum() >= self.params.min_count]
        means = np.array([soft[labels == c].mean(axis=0) for c in held]).reshape(len(held), classes)
        floors = np.zeros(classes)
        for j in range(classes):
            others = [row for row, c in enumerate(held) if c != j]
            if others:
                floors[j] = np.median(means[others, j])
        return floors

    def rewrite(self, view: PredictionView) -> np.ndarray:
        soft = view.peer_soft()
        label = true_label_mask(view)
        removed = np.where(label, 0.0, np.minimum(soft, self.floors(soft, view.labels)[None, :]))
        spread = removed.sum(axis=1, keepdims=True) / (soft.shape[1] - 1)
        return logits_for(np.where(label, soft, soft - removed + spread), view.temperature)

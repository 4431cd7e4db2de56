"""Own confidence: the peer may raise the querier's confidence in its own label, never lower it.

The distilled probability of the true label is ``max(peer, own)`` (both at the distillation
temperature); the peer's other classes keep their proportions and share what is left. It closes
the channel every rewrite that keeps the peer's ``p(true label)`` leaves open (``true_label``'s
"confidence channel"): an answer that is unsure of the label, or sure of another class, can no
longer teach the querier to doubt its own labels. Where the peer is surer than the querier, its
confidence passes unchanged.

It costs little: on a label-skewed split an honest peer is unsure of exactly the classes it
lacks, and distilling that doubt was noise to the querier anyway (docs/results.md). It does not
touch which other classes the mass goes to, so combine it with a rewrite that limits that
(``true_label``, ``lacking_classes``). Where it fails: an attack that raises confidence (a
sharpened answer) passes it, and on its own it leaves the dark knowledge as the peer sent it.
"""

import numpy as np

from testbed.filters.base import Filter, PredictionView, logits_for, own_confidence, true_label_mask
from testbed.registry import FILTERS


@FILTERS.register("own_confidence")
class OwnConfidence(Filter):
    def rewrite(self, view: PredictionView) -> np.ndarray:
        soft = view.peer_soft()
        label = true_label_mask(view)
        floor = own_confidence(view)
        # The other classes keep their proportions and share 1 - floor; a peer certain of the
        # label has no other mass to scale, and then floor == 1.
        scale = (1.0 - floor) / np.maximum(1.0 - soft[label], 1e-12)
        return logits_for(np.where(label, floor[:, None], soft * scale[:, None]), view.temperature)

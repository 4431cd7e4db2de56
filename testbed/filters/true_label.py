"""True-label distillation: distil only the peer's probability of the sample's true label.

The rest of the peer's mass is spread evenly over the other classes, so the answer can still say
"this sample is easy / hard" but no longer *which* wrong class it resembles: the dark knowledge
through which a backdoor or a targeted push travels on correctly classified samples is erased.
It also erases the honest peer's dark knowledge, which is SMuLe's benefit (docs/results.md
measures the cost).
"""

import numpy as np

from testbed.filters.base import Filter, PredictionView, logits_for, spread_rest, true_label_mask
from testbed.registry import FILTERS


@FILTERS.register("true_label")
class TrueLabel(Filter):
    def rewrite(self, view: PredictionView) -> np.ndarray:
        return logits_for(spread_rest(view.peer_soft(), true_label_mask(view)), view.temperature)

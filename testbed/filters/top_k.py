"""Top-k distillation: keep the peer's k most probable classes (and the true label), flatten the rest.

The mass of every other class is spread evenly over them, so a poisoned answer can shape at most
``k`` entries of the distilled distribution (at the distillation temperature) instead of all of them.
"""

import numpy as np
from pydantic import Field

from testbed.filters.base import Filter, PredictionView, logits_for, spread_rest, true_label_mask
from testbed.registry import FILTERS, Params


@FILTERS.register("top_k")
class TopK(Filter):
    class Params(Params):
        k: int = Field(2, ge=1, description="classes of the peer's answer kept as they are (the true label is always kept)")

    def rewrite(self, view: PredictionView) -> np.ndarray:
        soft = view.peer_soft()
        keep = true_label_mask(view)
        np.put_along_axis(keep, np.argsort(-soft, axis=1)[:, : self.params.k], True, axis=1)
        return logits_for(spread_rest(soft, keep), view.temperature)

"""Divergence: keep a peer prediction only if it is close to the querier's own.

Closeness is KL(peer_soft || own_soft) at the distillation temperature, against a fixed
``threshold`` or, with ``percentile: q``, the q-th percentile of this epoch's divergences (keeping
about q% of the predictions, the least divergent).
"""

import numpy as np
from pydantic import Field, model_validator

from testbed.filters.base import Filter, PredictionView
from testbed.metrics import kl_divergence, softmax
from testbed.registry import FILTERS, Params


@FILTERS.register("divergence")
class Divergence(Filter):
    class Params(Params):
        threshold: float | None = Field(None, gt=0, description="keep if KL <= threshold (nats); give exactly one of threshold and percentile")
        percentile: float | None = Field(None, gt=0, le=100, description="keep if KL <= this percentile of the epoch")

        @model_validator(mode="after")
        def exactly_one(self):
            if (self.threshold is None) == (self.percentile is None):
                raise ValueError("give exactly one of threshold or percentile")
            return self

    def weights(self, view: PredictionView) -> np.ndarray:
        kl = kl_divergence(softmax(view.peer_logits, view.temperature), softmax(view.own_logits, view.temperature))
        limit = self.params.threshold if self.params.threshold is not None else np.percentile(kl, self.params.percentile)
        return (kl <= limit).astype(np.float32)

"""KL cap: bound each sample's contribution to the distillation term.

A sample's weight is ``min(1, cap / KL(peer_soft || own_soft))`` at the distillation temperature,
so no single answer can pull the querier's model further than ``cap`` nats' worth of loss, however
far it is from the querier's own prediction. Unlike ``divergence`` it never drops an answer, it
shrinks it smoothly.
"""

import numpy as np
from pydantic import Field

from testbed.filters.base import Filter, PredictionView
from testbed.metrics import kl_divergence, softmax
from testbed.registry import FILTERS, Params


@FILTERS.register("kl_cap")
class KlCap(Filter):
    class Params(Params):
        cap: float = Field(0.05, gt=0, allow_inf_nan=False, description="largest KL(peer || own) a sample contributes, nats")

    def weights(self, view: PredictionView) -> np.ndarray:
        kl = kl_divergence(view.peer_soft(), softmax(view.own_logits, view.temperature))
        return np.minimum(1.0, self.params.cap / np.maximum(kl, 1e-12)).astype(np.float32)

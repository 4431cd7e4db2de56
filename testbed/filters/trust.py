"""Trust weighting: a running estimate of the peer's reliability scales the whole distillation term.

Each epoch the reliability observation is the share of the peer's predictions whose argmax is
the true label; the estimate is an exponential moving average of it. The weight of every
prediction is the estimate, or 0 once the estimate falls below ``floor`` (the peer is ignored).
"""

import numpy as np
from pydantic import Field

from testbed.filters.base import FILTERS, Filter, PredictionView
from testbed.registry import Params


@FILTERS.register("trust")
class Trust(Filter):
    class Params(Params):
        momentum: float = Field(0.5, ge=0, lt=1, description="weight of the previous estimate")
        floor: float = Field(0.8, ge=0, le=1, description="below this estimate the peer is switched off")
        initial: float = Field(1.0, ge=0, le=1)

    def __init__(self, params: Params):
        super().__init__(params)
        self.trust = params.initial

    def weights(self, view: PredictionView) -> np.ndarray:
        observed = float((view.peer_logits.argmax(axis=1) == view.labels).mean())
        self.trust = self.params.momentum * self.trust + (1 - self.params.momentum) * observed
        weight = self.trust if self.trust >= self.params.floor else 0.0
        return np.full(len(view.labels), weight, dtype=np.float32)

    def state(self) -> dict[str, float]:
        return {"trust": self.trust}

"""Trust weighting: a running estimate of the peer's reliability scales the whole distillation term.

Each epoch the reliability observation is the share of the peer's predictions whose argmax is
the true label; the estimate is an exponential moving average of it. The weight of every
prediction rises linearly from 0 at trust ``low`` to 1 at trust ``high``. A hard on/off floor
was attackable: a peer hovering at the floor switched distillation back on in one epoch (A lost
14 accuracy points in one epoch); the ramp moves the weight by at most
``|change of trust| / (high - low)`` per epoch.
"""

import numpy as np
from pydantic import Field, model_validator

from testbed.filters.base import Filter, PredictionView
from testbed.registry import FILTERS, Params


@FILTERS.register("trust")
class Trust(Filter):
    class Params(Params):
        momentum: float = Field(0.5, ge=0, lt=1, description="weight of the previous estimate")
        low: float = Field(0.7, ge=0, le=1, description="trust at and below which the peer's weight is 0")
        high: float = Field(0.9, ge=0, le=1, description="trust at and above which the peer's weight is 1")
        initial: float = Field(1.0, ge=0, le=1, description="trust before the first answer")

        @model_validator(mode="after")
        def _ordered(self):
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
            return self

    def __init__(self, params: Params):
        super().__init__(params)
        self.trust = params.initial

    def weights(self, view: PredictionView) -> np.ndarray:
        observed = float((view.peer_logits.argmax(axis=1) == view.labels).mean())
        self.trust = self.params.momentum * self.trust + (1 - self.params.momentum) * observed
        weight = np.clip((self.trust - self.params.low) / (self.params.high - self.params.low), 0.0, 1.0)
        return np.full(len(view.labels), weight, dtype=np.float32)

    def state(self) -> dict[str, float]:
        return {"trust": self.trust}

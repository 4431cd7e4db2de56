"""Confidence: keep a peer prediction only if it gives the true label probability at least tau."""

import numpy as np
from pydantic import Field

from testbed.filters.base import Filter, PredictionView
from testbed.metrics import softmax
from testbed.registry import FILTERS, Params


@FILTERS.register("confidence")
class Confidence(Filter):
    class Params(Params):
        tau: float = Field(0.5, ge=0, le=1, description="minimum peer probability (T = 1) of the true label")

    def weights(self, view: PredictionView) -> np.ndarray:
        p_true = softmax(view.peer_logits)[np.arange(len(view.labels)), view.labels]
        return (p_true >= self.params.tau).astype(np.float32)

"""Agreement: keep a peer prediction only if its argmax is the sample's true label."""

import numpy as np

from testbed.filters.base import Filter, PredictionView
from testbed.registry import FILTERS


@FILTERS.register("agreement")
class Agreement(Filter):
    def weights(self, view: PredictionView) -> np.ndarray:
        return (view.peer_logits.argmax(axis=1) == view.labels).astype(np.float32)

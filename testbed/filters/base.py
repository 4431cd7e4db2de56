"""Robustness filters: what a querier keeps of a peer's predictions before distilling toward them.

A filter sees only what the honest querier has: the peer's decoded logits on its own samples,
its own model's logits on them, and its own true labels. It returns a weight per sample in
[0, 1] for the distillation term (0 drops the prediction; the sample still trains with
cross-entropy). A scenario may combine filters: weights multiply, so a sample is kept only
if every filter keeps it. One filter object serves one (querier, peer) pair, so a filter may
keep state across epochs (see ``trust``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.registry import Params, Registry


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class PredictionView:
    peer_logits: np.ndarray  # (n, classes), decoded from the peer's answer
    own_logits: np.ndarray  # (n, classes), the querier's current model
    labels: np.ndarray  # (n,), the querier's true labels
    temperature: float  # the distillation temperature


class Filter:
    Params = Params
    kind: str

    def __init__(self, params: Params):
        self.params = params

    def weights(self, view: PredictionView) -> np.ndarray:
        """Per-sample distillation weights in [0, 1]."""
        raise NotImplementedError

    def state(self) -> dict[str, float]:
        """Values worth reporting per epoch (e.g. the trust estimate)."""
        return {}


FILTERS: Registry[Filter] = Registry("filter")


def combined_weights(filters: list[Filter], view: PredictionView) -> np.ndarray:
    weights = np.ones(len(view.labels), dtype=np.float32)
    for f in filters:
        weights = weights * f.weights(view).astype(np.float32)
    return weights

"""Robustness filters: what a querier keeps of a peer's predictions before distilling toward them.

A filter sees only what the honest querier has: the peer's decoded logits on its own samples,
its own model's logits on them, and its own true labels. It may do two things:

* :meth:`Filter.weights`: a weight per sample in [0, 1] for the distillation term (0 drops the
  prediction; the sample still trains with cross-entropy);
* :meth:`Filter.rewrite`: replace the peer's logits by what may be distilled from them (for
  example keep only the true label's probability), limiting what soft labels can carry.

A scenario may combine filters: every filter's weights are computed on the answer as received
and multiply, so a sample is kept only if every filter keeps it; rewrites then apply in the
listed order. One filter object serves one (querier, peer) pair, so a filter may keep state
across epochs in :meth:`weights` (see ``trust``); :meth:`rewrite` must be a pure function, because
the audit applies it to the clean twin's answers too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from testbed.metrics import softmax
from testbed.registry import Component


@dataclass(frozen=True)
class PredictionView:
    peer_logits: np.ndarray  # (n, classes), decoded from the peer's answer
    own_logits: np.ndarray  # (n, classes), the querier's current model
    labels: np.ndarray  # (n,), the querier's true labels
    temperature: float  # the distillation temperature

    def peer_soft(self) -> np.ndarray:
        """The peer's distribution as the distillation term sees it (softmax at T)."""
        return softmax(self.peer_logits, self.temperature)


def logits_for(soft: np.ndarray, temperature: float) -> np.ndarray:
    """Logits whose softmax at ``temperature`` is ``soft``: how a rewrite hands back a distribution."""
    return (temperature * np.log(np.clip(soft, 1e-12, 1.0))).astype(np.float32)


def spread_rest(soft: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``soft`` where ``keep`` (bool, same shape) is set; every other class of a row gets an equal
    share of that row's remaining mass, so the row still sums to 1 but says nothing about which
    of those classes the sample resembles."""
    rest = np.where(keep, 0.0, soft).sum(axis=1) / np.maximum((~keep).sum(axis=1), 1)
    return np.where(keep, soft, rest[:, None])


def true_label_mask(view: PredictionView) -> np.ndarray:
    """Bool ``(n, classes)``, set at each sample's true label."""
    mask = np.zeros(view.peer_logits.shape, dtype=bool)
    mask[np.arange(len(view.labels)), view.labels] = True
    return mask


class Filter(Component):
    def weights(self, view: PredictionView) -> np.ndarray:
        """Per-sample distillation weights in [0, 1] (default: keep everything)."""
        return np.ones(len(view.labels), dtype=np.float32)

    def rewrite(self, view: PredictionView) -> np.ndarray:
        """The logits to distil toward instead of ``view.peer_logits`` (default: unchanged). Pure."""
        return view.peer_logits

    def state(self) -> dict[str, float]:
        """Values worth reporting per epoch (e.g. the trust estimate)."""
        return {}


def own_confidence(view: PredictionView) -> np.ndarray:
    """``(n,)``: the true label's probability a defence lets the peer teach, ``max(peer, own)`` at
    the distillation temperature: the peer may raise the querier's confidence in its own label,
    never lower it."""
    label = true_label_mask(view)
    return np.maximum(view.peer_soft()[label], softmax(view.own_logits, view.temperature)[label])


def combined_weights(filters: list[Filter], view: PredictionView) -> np.ndarray:
    weights = np.ones(len(view.labels), dtype=np.float32)
    for f in filters:
        weights = weights * f.weights(view).astype(np.float32)
    return weights


def rewritten(filters: list[Filter], view: PredictionView) -> np.ndarray:
    """The peer logits after every filter's rewrite, in order."""
    for f in filters:
        view = replace(view, peer_logits=f.rewrite(view))
    return view.peer_logits

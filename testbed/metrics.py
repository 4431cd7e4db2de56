"""Pure metric functions: arrays in, numbers out."""

from __future__ import annotations

import numpy as np


def harmful_predictions(peer_logits: np.ndarray, labels: np.ndarray, manipulated: np.ndarray, responder_malicious: bool) -> np.ndarray:
    """The simulator's ground truth of which returned predictions are attacks.

    A prediction from an honest responder is never harmful (its mistakes are honest). From a
    malicious responder it is harmful if the responder manipulated it, or if its argmax is not
    the true label (how data poisoning shows in the answers).
    """
    if not responder_malicious:
        return np.zeros(len(labels), dtype=bool)
    return manipulated.astype(bool) | (peer_logits.argmax(axis=1) != labels)


def filter_quality(weights: np.ndarray, harmful: np.ndarray) -> dict[str, float]:
    """Kept share, and precision and recall of the *dropped* predictions (weight 0) against ``harmful``.

    By convention precision is 1 when nothing was dropped (no false alarm) and recall is 1 when
    nothing was harmful (nothing missed).
    """
    dropped = weights <= 0
    caught = int((dropped & harmful).sum())
    return {
        "kept": float(1 - dropped.mean()),
        "precision": caught / int(dropped.sum()) if dropped.any() else 1.0,
        "recall": caught / int(harmful.sum()) if harmful.any() else 1.0,
    }


def success_rate(predicted: np.ndarray, target: int) -> float:
    """Attack success rate: the share of probe inputs classified as the attack's target."""
    return float((predicted == target).mean())

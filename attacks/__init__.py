"""Poisoning and prediction-manipulation attacks; importing this package registers them all."""

from attacks import backdoor, label_flip, manipulation  # noqa: F401  (registers)
from attacks import adaptive  # noqa: F401  (registers the filter-aware attacks)
from attacks.base import ATTACKS, Attack, DataPoisoning, PoisonedData, PredictionManipulation, SuccessProbe

__all__ = ["ATTACKS", "Attack", "DataPoisoning", "PoisonedData", "PredictionManipulation", "SuccessProbe"]

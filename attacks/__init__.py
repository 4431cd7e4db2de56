"""Poisoning and prediction-manipulation attacks, one family per file (registered through
:mod:`testbed.plugins`)."""

from attacks.base import Attack, DataPoisoning, PoisonedData, PredictionManipulation, SuccessProbe

__all__ = ["Attack", "DataPoisoning", "PoisonedData", "PredictionManipulation", "SuccessProbe"]

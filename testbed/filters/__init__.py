"""Robustness filters, one per file (registered through :mod:`testbed.plugins`)."""

from testbed.filters.base import Filter, PredictionView, combined_weights, rewritten

__all__ = ["Filter", "PredictionView", "combined_weights", "rewritten"]

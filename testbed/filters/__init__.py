"""Robustness filters; importing this package registers every built-in filter."""

from testbed.filters import agreement, confidence, divergence, kl_cap, top_k, true_label, trust  # noqa: F401  (registers)
from testbed.filters.base import FILTERS, Filter, PredictionView, combined_weights, rewritten

__all__ = ["FILTERS", "Filter", "PredictionView", "combined_weights", "rewritten"]

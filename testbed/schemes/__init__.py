"""Secure-inference schemes, one per file (registered through :mod:`testbed.plugins`)."""

from testbed.logit_map import LogitMap
from testbed.schemes.base import SecureInferenceScheme, Wire

__all__ = ["LogitMap", "SecureInferenceScheme", "Wire"]

"""Secure-inference schemes, one per file (registered through :mod:`testbed.plugins`)."""

from testbed.schemes.base import LogitMap, SecureInferenceScheme, Wire

__all__ = ["LogitMap", "SecureInferenceScheme", "Wire"]

"""Secure-inference schemes; importing this package registers every built-in scheme."""

from testbed.schemes import ckks, plaintext  # noqa: F401  (registers)
from testbed.schemes.base import SCHEMES, LogitMap, SecureInferenceScheme, Wire

__all__ = ["SCHEMES", "LogitMap", "SecureInferenceScheme", "Wire"]

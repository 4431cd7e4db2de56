"""Training protocols; importing this package registers every built-in protocol."""

from testbed.protocols import fedavg, joint, local, smule  # noqa: F401  (registers)
from testbed.protocols.base import PROTOCOLS, TrainingProtocol

__all__ = ["PROTOCOLS", "TrainingProtocol"]

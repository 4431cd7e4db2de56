"""Training protocols, one per file (registered through :mod:`testbed.plugins`)."""

from testbed.protocols.base import TrainingProtocol

__all__ = ["TrainingProtocol"]

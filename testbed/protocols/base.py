"""What a training protocol is: a loop over epochs that drives parties and routes messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol as TypingProtocol

from testbed.registry import Params, Registry

if TYPE_CHECKING:  # config imports this registry, so only type checkers see these
    from testbed.config import Scenario
    from testbed.messages import Channel


class Parties(TypingProtocol):
    """What a protocol needs from the layer that places parties (see :mod:`testbed.cluster`)."""

    names: list[str]

    def call(self, party: str, method: str, *args: Any) -> Any: ...

    def gather(self, phase: str, calls: list[tuple[str, Any]]) -> list[Any]: ...


#: Called after every epoch with (epoch, {party: metrics}); epoch 0 reports the setup.
EpochReport = Callable[[int, dict[str, dict[str, Any]]], None]


class TrainingProtocol:
    Params = Params
    kind: str

    def __init__(self, params: Params):
        self.params = params

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        raise NotImplementedError


PROTOCOLS: Registry[TrainingProtocol] = Registry("protocol")

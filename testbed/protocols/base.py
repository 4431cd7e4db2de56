"""What a training protocol is: a loop over epochs that drives parties and routes messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol as TypingProtocol

from testbed.registry import Params, Registry

if TYPE_CHECKING:  # config imports this registry, so only type checkers see these
    from testbed.config import Scenario
    from testbed.messages import Channel
    from testbed.party import Party


class Parties(TypingProtocol):
    """What a protocol needs from the layer that places parties (see :mod:`testbed.cluster`).

    ``parties[name]`` is the party seen through :class:`~testbed.party.Party`'s methods, so every
    step of a protocol is a method a reader can jump to; each call returns its result, or a future
    of it (Ray), and :meth:`gather` resolves a list of them, naming the party and phase of the
    first failure.
    """

    names: list[str]

    def __getitem__(self, name: str) -> Party: ...

    def gather(self, phase: str, calls: list[tuple[str, Any]]) -> list[Any]: ...


#: Called after every epoch with (epoch, {party: metrics}); epoch 0 reports the setup.
EpochReport = Callable[[int, dict[str, dict[str, Any]]], None]


def train_and_report(
    parties: Parties, trainers: list[str], epoch: int, report: EpochReport | None, reported_as: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """One epoch of label-only training and evaluation for ``trainers``; reported (if ``report``)
    under the names ``reported_as`` (default: the trainers themselves)."""
    losses = parties.gather("train", [(p, parties[p].train(False)) for p in trainers])
    scores = parties.gather("evaluate", [(p, parties[p].evaluate()) for p in trainers])
    times = parties.gather("timings", [(p, parties[p].take_timings()) for p in trainers])
    metrics = {p: {"loss": loss, **score, "seconds": seconds} for p, loss, score, seconds in zip(trainers, losses, scores, times)}
    if reported_as is not None:
        metrics = {name: metrics[trainers[0]] for name in reported_as}
    if report is not None:
        report(epoch, metrics)
    return metrics


class TrainingProtocol:
    Params = Params
    kind: str
    #: True when every party must use the same model architecture (checked at validation).
    needs_same_architecture: bool = False

    def __init__(self, params: Params):
        self.params = params

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        raise NotImplementedError

    def communication(self, scenario: Scenario) -> dict[str, Any]:
        """Communication figures not carried by the channel (e.g. modelled MPC traffic)."""
        return {}


PROTOCOLS: Registry[TrainingProtocol] = Registry("protocol")

"""What a training protocol is: a loop over epochs that drives parties and routes messages.

A protocol sees each party through :class:`PartyInterface` (implemented by the engine's
:class:`testbed.party.Party`), so the plug-in layer never imports the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, TypeVar
from typing import Protocol as TypingProtocol

import numpy as np
from torch import nn

from testbed.config import Scenario
from testbed.messages import AnswerTruth, Channel, Message
from testbed.registry import Component
from testbed.result_schema import Evaluation, FilterAudit, PartyEpoch

T = TypeVar("T")


class PartyInterface(ABC):
    """One party as a protocol drives it; every step of an epoch is one of these methods.

    The state below is what a protocol's own step may read and change through :meth:`apply`.
    """

    name: str
    scenario: Scenario
    model: nn.Module
    x: np.ndarray  # the party's training samples
    y: np.ndarray

    @abstractmethod
    def query(self, peer: str) -> Message:
        """As querier: keys for ``peer`` and the one-time payload with our (encrypted) samples."""

    @abstractmethod
    def accept(self, message: Message) -> None:
        """As responder: keep the querier's (encrypted) samples for every later answer."""

    @abstractmethod
    def answer(self, peer: str, epoch: int) -> tuple[Message, AnswerTruth]:
        """As responder: our model's (possibly manipulated) logits on ``peer``'s samples, and the
        simulator's ground truth about them (for the querier's audit only)."""

    @abstractmethod
    def receive(self, message: Message) -> None:
        """As querier: decode a peer's logits on our samples and filter them."""

    @abstractmethod
    def audit(self, peer: str, truth: AnswerTruth) -> FilterAudit:
        """Simulator only: how our filters treated ``peer``'s last answer."""

    @abstractmethod
    def train(self, use_peers: bool) -> float:
        """One epoch of local training (with the peers' guidance if ``use_peers``); the mean loss."""

    @abstractmethod
    def evaluate(self) -> Evaluation:
        """Test accuracy and attack success rates of the current model."""

    @abstractmethod
    def take_timings(self) -> dict[str, float]:
        """Seconds per phase since the last call."""

    def apply(self, step: Callable[..., T], *args: Any) -> T:
        """Run ``step(self, *args)`` where this party lives: a protocol's own step (FedAvg's
        averaging, the joint union) keeps its code in the protocol and works on the party's state."""
        return step(self, *args)


class Parties(TypingProtocol):
    """What a protocol needs from the layer that places parties (in-process or Ray actors).

    ``parties[name]`` is the party seen through :class:`PartyInterface`; each call returns its
    result, or a future of it (Ray), and :meth:`gather` resolves a list of them, naming the party
    and phase of the first failure.
    """

    names: list[str]

    def __getitem__(self, name: str) -> PartyInterface: ...

    def gather(self, phase: str, calls: list[tuple[str, Any]]) -> list[Any]: ...


#: Called after every epoch with (epoch, {party: its epoch}); epoch 0 reports the setup.
EpochReport = Callable[[int, dict[str, PartyEpoch]], None]


def train_and_report(
    parties: Parties, trainers: list[str], epoch: int, report: EpochReport | None, reported_as: list[str] | None = None
) -> dict[str, PartyEpoch]:
    """One epoch of label-only training and evaluation for ``trainers``; reported (if ``report``)
    under the names ``reported_as`` (default: the trainers themselves)."""
    losses = parties.gather("train", [(p, parties[p].train(False)) for p in trainers])
    scores = parties.gather("evaluate", [(p, parties[p].evaluate()) for p in trainers])
    times = parties.gather("timings", [(p, parties[p].take_timings()) for p in trainers])
    metrics = {p: PartyEpoch.scored(loss, score, seconds) for p, loss, score, seconds in zip(trainers, losses, scores, times)}
    if reported_as is not None:
        metrics = {name: metrics[trainers[0]] for name in reported_as}
    if report is not None:
        report(epoch, metrics)
    return metrics


#: Whether the parts of a scenario that a check reads passed schema validation (scenario keys,
#: dotted); a check that reads an invalid part would judge the defaults standing in for it.
Valid = Callable[..., bool]


class TrainingProtocol(Component):
    """A training protocol answers for itself what the engine and analysis need to know about it,
    so that a new protocol gets validation, the answer audit, the privacy audit and the regression
    invariants without any name being checked elsewhere."""

    #: Peers exchange answers that a querier filters: each malicious party then carries a clean
    #: twin (simulator only) against which the querier's filters are audited.
    audits_answers: bool = False
    #: Each party ends with a model trained on its own data, so an attacker's own ASR measures
    #: whether its poison works; not so where the parties share one model (joint, FedAvg).
    own_models: bool = True

    @classmethod
    def problems(cls, scenario: Scenario, valid: Valid) -> list[tuple[str, str]]:
        """``(key, message)`` for each of the protocol's own cross-field rules ``scenario`` breaks;
        called at validation (skip a rule when ``valid(*keys it reads)`` is false)."""
        return []

    def final_model_of(self, party: str, parties: list[str]) -> str:
        """Whose model ``party`` ends the run with (itself, unless the protocol shares one)."""
        return party

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        raise NotImplementedError

    def communication(self, scenario: Scenario) -> dict[str, Any]:
        """Communication figures not carried by the channel (e.g. modelled MPC traffic)."""
        return {}



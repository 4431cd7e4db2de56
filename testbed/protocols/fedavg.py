"""FedAvg (McMahan et al., AISTATS 2017) between the parties, without a server.

Every round each party trains ``local_epochs`` epochs, then sends its serialized model to every
peer, and each party replaces its model by the sample-weighted average of all models. Two
parties exchanging models directly move the same bytes as two uploads and two downloads
through a server would, halved. Communication is the measured size of the serialized
``state_dict`` per round and direction.
"""

from __future__ import annotations

import io
from itertools import permutations

import torch
from pydantic import Field

from testbed.config import Scenario
from testbed.messages import Channel, Message
from testbed.protocols.base import EpochReport, Parties, PartyInterface, TrainingProtocol, Valid, train_and_report
from testbed.registry import PROTOCOLS, Params
from testbed.schemes.base import Wire


@PROTOCOLS.register("fedavg")
class FedAvg(TrainingProtocol):
    class Params(Params):
        local_epochs: int = Field(1, ge=1, description="local epochs between two averaging rounds")

    own_models = False  # every party ends with the averaged model

    @classmethod
    def problems(cls, scenario: Scenario, valid: Valid) -> list[tuple[str, str]]:
        architectures = {str(party.model.dump()) for party in scenario.parties.values()}
        if len(architectures) > 1 and valid("protocol", *(f"parties.{n}.model" for n in scenario.parties)):
            return [("parties.*.model", f"protocol '{cls.kind}' averages models, so every party needs the same model; got {', '.join(sorted(architectures))}")]
        return []

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            metrics = train_and_report(parties, parties.names, epoch, report=None)
            if epoch % self.params.local_epochs == 0:
                states = parties.gather("share", [(s, parties[s].apply(share_model, r, epoch)) for s, r in permutations(parties.names, 2)])
                for message in states:
                    channel.record(message)
                by_receiver = {p: [m for m in states if m.receiver == p] for p in parties.names}
                parties.gather("average", [(p, parties[p].apply(average_models, by_receiver[p])) for p in parties.names])
                # Evaluate the averaged models: they are what the parties hold after the round.
                scores = parties.gather("evaluate", [(p, parties[p].evaluate()) for p in parties.names])
                for p, score in zip(parties.names, scores):
                    metrics[p] = metrics[p].model_copy(update=dict(score))
            report(epoch, metrics)


def share_model(party: PartyInterface, peer: str, epoch: int) -> Message:
    """``party``'s serialized model weights and sample count, for ``peer``."""
    buffer = io.BytesIO()
    torch.save({"samples": len(party.y), "state": party.model.state_dict()}, buffer)
    return Message(party.name, peer, "model", epoch, Wire(buffer.getvalue()))


def average_models(party: PartyInterface, messages: list[Message]) -> None:
    """Replace ``party``'s model by the sample-weighted average of its own and the peers'."""
    received = [torch.load(io.BytesIO(m.wire.data), weights_only=True) for m in messages]
    states = [(len(party.y), party.model.state_dict())] + [(r["samples"], r["state"]) for r in received]
    total = sum(n for n, _ in states)
    averaged = {
        key: sum(n * state[key].float() for n, state in states).div(total).to(value.dtype)
        for key, value in party.model.state_dict().items()
    }
    party.model.load_state_dict(averaged)

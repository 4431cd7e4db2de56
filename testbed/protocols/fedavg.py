"""FedAvg (McMahan et al., AISTATS 2017) between the parties, without a server.

Every round each party trains ``local_epochs`` epochs, then sends its serialized model to every
peer, and each party replaces its model by the sample-weighted average of all models. Two
parties exchanging models directly move the same bytes as two uploads and two downloads
through a server would, halved. Communication is the measured size of the serialized
``state_dict`` per round and direction.
"""

from __future__ import annotations

from itertools import permutations
from typing import TYPE_CHECKING

from pydantic import Field

from testbed.protocols.base import PROTOCOLS, EpochReport, Parties, TrainingProtocol, train_and_report
from testbed.registry import Params

if TYPE_CHECKING:
    from testbed.config import Scenario
    from testbed.messages import Channel


@PROTOCOLS.register("fedavg")
class FedAvg(TrainingProtocol):
    class Params(Params):
        local_epochs: int = Field(1, ge=1, description="local epochs between two averaging rounds")

    needs_same_architecture = True

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            metrics = train_and_report(parties, parties.names, epoch, report=None)
            if epoch % self.params.local_epochs == 0:
                states = parties.gather("share", [(s, parties.call(s, "share_model", r, epoch)) for s, r in permutations(parties.names, 2)])
                for message in states:
                    channel.record(message)
                by_receiver = {p: [m for m in states if m.receiver == p] for p in parties.names}
                parties.gather("average", [(p, parties.call(p, "average_models", by_receiver[p])) for p in parties.names])
                # Evaluate the averaged models: they are what the parties hold after the round.
                scores = parties.gather("evaluate", [(p, parties.call(p, "evaluate")) for p in parties.names])
                for p, score in zip(parties.names, scores):
                    metrics[p].update(score)
            report(epoch, metrics)

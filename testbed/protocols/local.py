"""Local baseline: every party trains alone on its own data; nothing crosses the wire."""

from __future__ import annotations

from testbed.config import Scenario
from testbed.messages import Channel
from testbed.protocols.base import EpochReport, Parties, TrainingProtocol, train_and_report
from testbed.registry import PROTOCOLS


@PROTOCOLS.register("local")
class Local(TrainingProtocol):
    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            train_and_report(parties, parties.names, epoch, report)

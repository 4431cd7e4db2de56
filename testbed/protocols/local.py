"""Local baseline: every party trains alone on its own data; nothing crosses the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.protocols.base import PROTOCOLS, EpochReport, Parties, TrainingProtocol, train_and_report

if TYPE_CHECKING:
    from testbed.config import Scenario
    from testbed.messages import Channel


@PROTOCOLS.register("local")
class Local(TrainingProtocol):
    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            train_and_report(parties, parties.names, epoch, report)

"""Parties in the driver's own process: the same protocol loop without Ray, for tests and debugging."""

from __future__ import annotations

from typing import Any

from testbed.config import Scenario
from testbed.party import Party


class InProcessParties:
    def __init__(self, scenario: Scenario):
        self.names = list(scenario.parties)
        self.parties = {name: Party(scenario, name) for name in self.names}

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    def gather(self, phase: str, calls: list[tuple[str, Any]]) -> list[Any]:
        return [result for _, result in calls]

    def close(self) -> None:
        pass

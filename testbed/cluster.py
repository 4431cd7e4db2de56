"""Placing parties on processes: the only module that knows about Ray.

Each party lives in a Ray actor with one torch thread. The driver calls party methods by name
and gets Ray object references back; messages travel between actors through Ray's object
store. Any failure in an actor surfaces as :class:`PartyFailure` naming the party and phase.
"""

from __future__ import annotations

import os
from typing import Any

import ray
import torch

from testbed.config import RayConfig, Scenario


class PartyFailure(RuntimeError):
    def __init__(self, party: str, phase: str, cause: BaseException):
        self.party, self.phase, self.cause = party, phase, cause
        detail = str(cause).strip().splitlines()
        super().__init__(f"party '{party}' failed during '{phase}': {detail[-1] if detail else type(cause).__name__}")


def start_ray(cfg: RayConfig) -> None:
    """Attach to ``cfg.address`` or ``$RAY_ADDRESS`` if set, else start a small local Ray."""
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    quiet = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR", "configure_logging": True}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_mb * 2**20, **quiet)


@ray.remote
class PartyActor:
    def __init__(self, scenario: Scenario, name: str):
        torch.set_num_threads(1)  # parties share the machine's cores; one thread each keeps runs reproducible
        from testbed.party import Party

        self.party = Party(scenario, name)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.party, method)(*args)


class RayParties:
    """The scenario's parties as Ray actors, addressed by name."""

    def __init__(self, scenario: Scenario):
        start_ray(scenario.ray)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        share = min(1.0, cpus / len(scenario.parties))  # all parties must fit at once
        self.names = list(scenario.parties)
        self.actors = {name: PartyActor.options(num_cpus=share).remote(scenario, name) for name in self.names}
        self.gather("start", [(name, actor.call.remote("take_timings")) for name, actor in self.actors.items()])

    def call(self, party: str, method: str, *args: Any) -> ray.ObjectRef:
        return self.actors[party].call.remote(method, *args)

    def gather(self, phase: str, calls: list[tuple[str, ray.ObjectRef]]) -> list[Any]:
        """Results of ``(party, ref)`` calls in order; the first failure raises ``PartyFailure``."""
        results = []
        for party, ref in calls:
            try:
                results.append(ray.get(ref))
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as err:
                cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
                raise PartyFailure(party, phase, cause) from err
        return results

    def close(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor)

"""Placing parties on processes: the only module that knows about Ray.

Each party lives in a Ray actor with one torch thread. The driver calls Party's methods on a
:class:`RemoteParty` and gets Ray object references back; messages travel between actors through Ray's object
store. Any failure in an actor surfaces as :class:`PartyFailure` naming the party and phase.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import ray
import torch

from testbed.config import RayConfig, Scenario
from testbed.party import Party


class PartyFailure(RuntimeError):
    def __init__(self, party: str, phase: str, cause: BaseException):
        self.party, self.phase, self.cause = party, phase, cause
        super().__init__(f"party '{party}' failed during '{phase}': {_last_line(cause)}")


class RayUnavailable(RuntimeError):
    """Ray could not be started or attached to; the message names the address."""


#: How long attaching to a cluster may take: ``ray.init`` retries an unreachable head forever.
ATTACH_TIMEOUT_S = 30.0
#: How long the head's port may take to accept a connection before it counts as unreachable.
REACH_TIMEOUT_S = 5.0


def start_ray(cfg: RayConfig) -> None:
    """Attach to ``cfg.address`` or ``$RAY_ADDRESS`` if set, else start a small local Ray.

    Raises :class:`RayUnavailable` when the cluster cannot be reached within
    :data:`ATTACH_TIMEOUT_S` or Ray does not start. The process's SIGTERM handler survives:
    ``ray.init`` installs its own, which exits without the caller's cleanup.
    """
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    quiet = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR", "configure_logging": True}
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            _attach(address, quiet)
        else:
            ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_mb * 2**20, **quiet)
    except SystemExit:
        # ray.init's SIGTERM handler exits; this process interrupts instead, with its cleanup.
        raise KeyboardInterrupt from None
    except RayUnavailable:
        raise
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RayUnavailable(f"cannot start Ray{f' at {address}' if address else ''}: {_last_line(err)}") from err
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


#: Attaches and detaches, in a child process that can be killed: a ray.init that never returns
#: cannot be stopped inside this one.
_PROBE = "import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, logging_level='ERROR'); ray.shutdown()"


def _attach(address: str, options: dict[str, Any]) -> None:
    """``ray.init(address)``, bounded: the head's port must accept a connection (which fails fast
    when nothing listens there), then a probe process must attach within ATTACH_TIMEOUT_S."""
    where = f"the Ray cluster at {address} (ray.address or $RAY_ADDRESS)"
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
        except OSError as err:
            raise RayUnavailable(f"cannot reach {where}: {err.strerror or err}") from None
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True, timeout=ATTACH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RayUnavailable(f"no answer from {where} within {ATTACH_TIMEOUT_S:.0f} s") from None
    if probe.returncode != 0:
        detail = probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"]
        raise RayUnavailable(f"cannot attach to {where}: {detail[-1]}")
    ray.init(address=address, **options)


def _last_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


class PartyActor(Party):
    def __init__(self, scenario: Scenario, name: str):
        torch.set_num_threads(1)  # parties share the machine's cores; one thread each keeps runs reproducible
        super().__init__(scenario, name)


#: A party in a Ray actor: its methods are Party's, called with ``.remote``.
REMOTE_PARTY = ray.remote(PartyActor)


class RemoteParty:
    """A party actor seen through :class:`~testbed.party.Party`'s methods: each call returns a
    Ray future, resolved by :meth:`RayParties.gather`."""

    def __init__(self, actor: ray.actor.ActorHandle):
        self._actor = actor

    def __getattr__(self, method: str) -> Any:
        return getattr(self._actor, method).remote


class RayParties:
    """The scenario's parties as Ray actors, addressed by name."""

    def __init__(self, scenario: Scenario):
        start_ray(scenario.ray)
        cpus = ray.cluster_resources().get("CPU", 1.0)
        share = min(1.0, cpus / len(scenario.parties))  # all parties must fit at once
        self.names = list(scenario.parties)
        self.actors = {name: REMOTE_PARTY.options(num_cpus=share).remote(scenario, name) for name in self.names}
        self.gather("start", [(name, self[name].take_timings()) for name in self.names])

    def __getitem__(self, name: str) -> Party:
        return RemoteParty(self.actors[name])  # type: ignore[return-value]  (Party's methods, returning futures)

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

"""Placing parties on processes: the only module that places parties with Ray (a CKKS responder
spreads its own evaluation over Ray workers in :mod:`testbed.schemes.ckks.workers`).

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import ray
import torch
from ray._private import ray_constants
from ray._private import utils as ray_utils

from testbed.config import RayConfig, Scenario
from testbed.messages import AnswerTruth, Message
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
    :data:`ATTACH_TIMEOUT_S` or Ray does not start. Ctrl-C and SIGTERM during start-up reach the
    process's own handlers once Ray is up (:func:`_signals_deferred`).
    """
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    quiet = {"include_dashboard": False, "log_to_driver": True, "logging_level": "ERROR", "configure_logging": True}
    try:
        if address:
            _attach(address, quiet)
        else:
            with _signals_deferred():
                ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_mb * 2**20, **quiet)
    except RayUnavailable:
        raise
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RayUnavailable(f"cannot start Ray{f' at {address}' if address else ''}: {_last_line(err)}") from err


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM during ``ray.init`` and deliver them to the process's own handlers
    once it returns. Left to itself, ``ray.init`` installs SIGTERM handlers that exit without the
    caller's cleanup (or inside code that swallows the exit, and the run goes on), and its C++
    core worker a crash handler that dumps a stack on SIGTERM and aborts the process 3 s later.
    Blocking the signals instead (``pthread_sigmask``) would leave them blocked in every process
    Ray starts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    keep_handlers = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    crash_handler = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True  # read as the driver's core worker starts
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = keep_handlers
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = crash_handler
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(held[0])  # the caller's handler runs now: KeyboardInterrupt under testbed.cli.interruptible


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
    with _signals_deferred():
        ray.init(address=address, **options)


def _last_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


class PartyActor(Party):
    """A party in its own process. The messages it sends leave with their payload put in Ray's
    object store and only a reference inside, so that the driver, which routes them and records
    their sizes, never holds a payload (a CIFAR-10 setup is GBs per direction); the receiving
    actor fetches the payload from the store itself."""

    def __init__(self, scenario: Scenario, name: str):
        torch.set_num_threads(1)  # parties share the machine's cores; one thread each keeps runs reproducible
        super().__init__(scenario, name)

    def query(self, peer: str) -> Message:
        return _by_reference(super().query(peer))

    def answer(self, peer: str, epoch: int) -> tuple[Message, AnswerTruth]:
        message, truth = super().answer(peer, epoch)
        return _by_reference(message), truth

    def accept(self, message: Message) -> None:
        super().accept(_resolved(message))

    def receive(self, message: Message) -> None:
        super().receive(_resolved(message))

    def apply(self, step: Callable[..., Any], *args: Any) -> Any:
        result = super().apply(step, *(_resolved(arg) for arg in args))
        return _by_reference(result) if isinstance(result, Message) else result


def _by_reference(message: Message) -> Message:
    """``message`` with its payload in the object store, put by this actor; sizes unchanged."""
    return replace(message, wire=replace(message.wire, data=ray.put(message.wire.data)))


def _resolved(value: Any) -> Any:
    """A message (or list of messages) with its payload fetched from the object store."""
    if isinstance(value, list):
        return [_resolved(item) for item in value]
    if isinstance(value, Message) and isinstance(value.wire.data, ray.ObjectRef):
        return replace(value, wire=replace(value.wire, data=ray.get(value.wire.data)))
    return value


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
            except ray.exceptions.RayError as err:  # an exception Ray cannot unpickle too: its text names the cause
                cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause else err
                raise PartyFailure(party, phase, cause) from err
        return results

    def close(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor)

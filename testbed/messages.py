"""Typed messages between parties and the channel that records them.

A message's size is its scheme's serialized payload (``Wire.charged_bytes``): the channel never
estimates, it adds up what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Wire:
    """Serialized bytes that cross between parties. ``charged_bytes`` is the count the channel
    records: ``len(data)`` for a real payload, or the size computed from the same parameters
    for a scheme that only accounts for them. ``rounds`` is how many round trips the message
    costs: one for a payload sent at once, many for an interactive protocol (the MPC scheme's
    openings), none for a step that sends nothing."""

    data: bytes
    charged_bytes: int = field(default=-1)
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.charged_bytes < 0:
            object.__setattr__(self, "charged_bytes", len(self.data))


Kind = Literal["query", "answer", "model"]


@dataclass(frozen=True)
class Message:
    sender: str
    receiver: str
    kind: Kind  # query: one-time setup (encrypted samples); answer: per-epoch (encrypted) logits
    epoch: int  # 0 for the one-time setup
    wire: Wire

    @property
    def nbytes(self) -> int:
        return self.wire.charged_bytes

    @property
    def rounds(self) -> int:
        return self.wire.rounds


@dataclass(frozen=True)
class MessageRecord:
    sender: str
    receiver: str
    kind: Kind
    epoch: int
    bytes: int
    rounds: int = 1


class Channel:
    """Records every message routed between parties."""

    def __init__(self) -> None:
        self.records: list[MessageRecord] = []

    def record(self, message: Message) -> MessageRecord:
        entry = MessageRecord(message.sender, message.receiver, message.kind, message.epoch, message.nbytes, message.rounds)
        self.records.append(entry)
        return entry

    def traffic(self, party: str, epoch: int) -> dict[str, int]:
        """Bytes and messages ``party`` sent and received in ``epoch`` (0 = setup)."""
        sent = [r for r in self.records if r.epoch == epoch and r.sender == party]
        received = [r for r in self.records if r.epoch == epoch and r.receiver == party]
        return {
            "bytes_sent": sum(r.bytes for r in sent),
            "bytes_received": sum(r.bytes for r in received),
            "messages_sent": len(sent),
            "messages_received": len(received),
        }

    def rounds(self, epoch: int) -> int:
        """Round trips of ``epoch``: the messages of one kind go at once (every direction in
        parallel), so each kind waits for its longest message; kinds follow one another."""
        longest: dict[str, int] = {}
        for r in self.records:
            if r.epoch == epoch:
                longest[r.kind] = max(longest.get(r.kind, 0), r.rounds)
        return sum(longest.values())

    def epoch_totals(self, epoch: int) -> tuple[int, int]:
        """(bytes, messages) over all directions in ``epoch``."""
        records = [r for r in self.records if r.epoch == epoch]
        return sum(r.bytes for r in records), len(records)


@dataclass(frozen=True)
class AnswerTruth:
    """Simulator ground truth about one answer, for the querier's audit only."""

    manipulated: np.ndarray  # bool (n,): the responder's manipulation touched these answers
    twin_logits: np.ndarray | None  # the clean twin's answer; None for an honest responder
    target: int | None  # the responder's attack target, if its attack has one

"""Network time: what a run's recorded bytes and rounds would take on a link of a given bandwidth
and round-trip time (docs/network.md).

It is **network time only**: bytes over bandwidth plus rounds times the round-trip time, with no
computation, encryption, queueing or TCP slow start. It is a lower bound on the wall time of a
deployment on that link, never a measurement; the keys that carry it say ``network``.

The model, the same for every protocol:

* every party has a full-duplex link of the profile's bandwidth in each direction (the profiles
  state per-direction figures), so messages in opposite directions cross at the same time;
* a *leg* is what a protocol sends at once: it lasts as long as its busiest party needs to send
  (or receive) its bytes, plus one round-trip time per round; the legs of an epoch follow one
  another, because each waits for the one before it.

Channel traffic (SMuLe's queries and answers, FedAvg's models) is one leg per setup and per
exchange epoch: each protocol sends every direction of a step together (one ``gather``), and the
querier (SMuLe) or the averaging party (FedAvg) waits for all of it before it trains. MPC training
traffic (the joint baseline's figures, both directions together) is one leg whose bytes are split
evenly between the two parties, as secret-sharing rounds are symmetric, and whose rounds follow
one another. A protocol that sends nothing (local) takes no network time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from testbed.registry import Params
from testbed.result_schema import Communication


class Link(Params):
    """The network between every two parties: per-direction bandwidth and round-trip time."""

    bandwidth_mbps: float = Field(gt=0, description="per direction, in Mbit/s (10^6 bit/s)")
    rtt_ms: float = Field(ge=0, description="round-trip time, in ms")


#: Named networks. Typical figures, not measurements of any particular link:
#: - ``lan``: 1 Gbit/s, 0.2 ms: gigabit Ethernet within one site; the figures issue 25 proposes
#:   (illustrative, no publication behind them).
#: - ``wan``: 100 Mbit/s, 40 ms: two sites in one region over the Internet; issue 25's figures
#:   (illustrative, no publication behind them).
#: - ``mobile``: 5 Mbit/s, 60 ms: a 4G (LTE) handset sending; OpenSignal's US Mobile Network
#:   Experience report (2019, as reported by Telecompetitor, "Report: Average Mobile Download
#:   Speeds Exceed 20 Mbps for Verizon and T-Mobile") measured average upload speeds of 2.4 to
#:   7.0 Mbit/s and latencies of 57.8 to 70 ms across the four US operators. Upload, since a
#:   party's own link limits what it sends.
PROFILES: dict[str, Link] = {
    "lan": Link(bandwidth_mbps=1000.0, rtt_ms=0.2),
    "wan": Link(bandwidth_mbps=100.0, rtt_ms=40.0),
    "mobile": Link(bandwidth_mbps=5.0, rtt_ms=60.0),
}
DEFAULT_PROFILE = "lan"


def parse_network(value: Any) -> Any:
    """A scenario's ``network``: a profile name becomes its :class:`Link`; a mapping is left to
    :class:`Link`'s own validation (which names ``bandwidth_mbps`` or ``rtt_ms``)."""
    allowed = f"{', '.join(PROFILES)}, or {{bandwidth_mbps: > 0, rtt_ms: >= 0}}"
    if isinstance(value, str):
        if value not in PROFILES:
            raise ValueError(f"unknown network profile; allowed: {allowed}")
        return PROFILES[value]
    if isinstance(value, (dict, Link)):
        return value
    raise ValueError(f"expected a network profile or a mapping; allowed: {allowed}")


def profile_name(link: Link) -> str:
    """The profile ``link`` is, or ``custom``."""
    return next((name for name, profile in PROFILES.items() if profile == link), "custom")


def dump_network(link: Link) -> str | dict[str, float]:
    """As a scenario writes it: the profile's name, or the mapping."""
    name = profile_name(link)
    return name if name != "custom" else link.model_dump()


@dataclass(frozen=True)
class Leg:
    """Messages sent at once: bytes per direction (``<sender>-><receiver>``), and the rounds
    (round trips) the leg waits for."""

    bytes_by_direction: Mapping[str, float]
    rounds: int

    @property
    def sends(self) -> bool:
        """Whether the leg sends anything or waits for any round."""
        return any(self.bytes_by_direction.values()) or self.rounds > 0


def leg_seconds(leg: Leg, link: Link) -> float:
    """Seconds ``leg`` takes on ``link``: the busiest party's sending or receiving, plus its rounds."""
    sent: dict[str, float] = defaultdict(float)
    received: dict[str, float] = defaultdict(float)
    for direction, size in leg.bytes_by_direction.items():
        sender, _, receiver = direction.partition("->")
        sent[sender] += size
        received[receiver] += size
    busiest = max([*sent.values(), *received.values()], default=0.0)
    return busiest * 8 / (link.bandwidth_mbps * 1e6) + leg.rounds * link.rtt_ms / 1e3


def mpc_leg(total_bytes: int, rounds: int) -> Leg:
    """MPC training traffic of two parties (``total_bytes`` both directions together) as a leg:
    each round both parties send their share of the openings, so each direction carries half."""
    return Leg({"P0->P1": total_bytes / 2, "P1->P0": total_bytes / 2}, rounds)


def mpc_legs(communication: Communication) -> dict[str, Leg]:
    """One exchange epoch of MPC training traffic per source the summary has both bytes and rounds
    of (``model``, ``measured``); empty for a protocol that reports none."""
    legs = {}
    for source in ("model", "measured"):
        size, rounds = getattr(communication, f"mpc_bytes_per_epoch_{source}"), getattr(communication, f"mpc_rounds_per_epoch_{source}")
        if size is not None and rounds is not None:
            legs[source] = mpc_leg(size, rounds)
    return legs


def channel_legs(communication: Communication) -> tuple[Leg, Leg]:
    """The setup and one exchange epoch of the channel's traffic, each one leg. A summary written
    before directions of the setup were recorded counts its setup as one direction (an upper
    bound), and one round where it sent anything."""
    setup_bytes = communication.setup_bytes_by_direction or {"*->*": communication.setup_bytes}
    setup_rounds = communication.setup_rounds if communication.setup_rounds is not None else int(communication.setup_bytes > 0)
    return Leg(setup_bytes, setup_rounds), Leg(communication.bytes_per_epoch_by_direction, communication.rounds_per_epoch)


def network_time(communication: Communication, link: Link) -> dict[str, Any]:
    """The ``network_*`` keys of :class:`~testbed.result_schema.Communication` for ``link``:
    the profile, the setup's and one exchange epoch's seconds of the channel's traffic, and of
    the MPC training traffic where the summary has its bytes and rounds."""
    setup, epoch = channel_legs(communication)
    out: dict[str, Any] = {
        "network_profile": profile_name(link),
        "network_bandwidth_mbps": link.bandwidth_mbps,
        "network_rtt_ms": link.rtt_ms,
        "network_setup_seconds": leg_seconds(setup, link),
        "network_seconds_per_epoch": leg_seconds(epoch, link),
    }
    for source, leg in mpc_legs(communication).items():
        out[f"mpc_network_seconds_per_epoch_{source}"] = leg_seconds(leg, link)
    return out

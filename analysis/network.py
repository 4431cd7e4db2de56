"""Network time per protocol on every network profile, from the bytes and rounds the runs
recorded (:mod:`testbed.network`; docs/network.md): the table, the break-even epochs, and the
curves the network figure draws. Network time only: no computation is added."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from testbed.network import Leg, Link, channel_legs, leg_seconds, mpc_legs
from testbed.result_schema import Summary

MPC_LABELS = {"model": "modelled", "measured": "measured"}


@dataclass(frozen=True)
class Traffic:
    """One protocol's traffic as legs: its setup, and one exchange epoch."""

    label: str
    setup: Leg
    epoch: Leg

    def seconds(self, link: Link, epochs: int) -> float:
        """Network time of the setup and ``epochs`` exchange epochs."""
        return leg_seconds(self.setup, link) + epochs * leg_seconds(self.epoch, link)


def traffics(runs: list[tuple[str, Summary]]) -> list[Traffic]:
    """Each run's traffic, labelled with its name; a run that reports MPC training traffic (the
    joint baseline, which sends nothing on the channel) gives one per MPC source it has."""
    out = []
    for name, summary in runs:
        if mpc := mpc_legs(summary.communication):
            out += [Traffic(f"{name}, MPC training {MPC_LABELS[source]}", Leg({}, 0), leg) for source, leg in mpc.items()]
        else:
            out.append(Traffic(name, *channel_legs(summary.communication)))
    return out


def network_table(traffic: list[Traffic], profiles: dict[str, Link]) -> pd.DataFrame:
    """One row per protocol and profile: the bytes and rounds of one exchange epoch, and the
    setup's and one exchange epoch's network seconds."""
    return pd.DataFrame([
        {"protocol": t.label, "network": name, "bandwidth_mbps": link.bandwidth_mbps, "rtt_ms": link.rtt_ms,
         "bytes_per_epoch": round(sum(t.epoch.bytes_by_direction.values())), "rounds_per_epoch": t.epoch.rounds,
         "setup_bytes": round(sum(t.setup.bytes_by_direction.values())),
         "network_setup_seconds": leg_seconds(t.setup, link), "network_seconds_per_epoch": leg_seconds(t.epoch, link)}
        for name, link in profiles.items() for t in traffic
    ])


def break_even(table: pd.DataFrame) -> pd.DataFrame:
    """Per profile, each pair where one protocol's setup costs more but its epochs less: the
    exchange epochs after which it has taken less network time in all (the smallest whole number
    n with ``setup_a + n * epoch_a < setup_b + n * epoch_b``)."""
    rows = []
    for network, group in table.groupby("network", sort=False):
        for _, a in group.iterrows():
            for _, b in group.iterrows():
                extra = a["network_setup_seconds"] - b["network_setup_seconds"]
                saved = b["network_seconds_per_epoch"] - a["network_seconds_per_epoch"]
                if extra > 0 and saved > 0:
                    rows.append({"network": network, "protocol": a["protocol"], "against": b["protocol"],
                                 "extra_setup_seconds": extra, "saved_seconds_per_epoch": saved, "epochs": math.floor(extra / saved) + 1})
    return pd.DataFrame(rows, columns=["network", "protocol", "against", "extra_setup_seconds", "saved_seconds_per_epoch", "epochs"])


def per_epoch_curve(traffic: Traffic, bandwidths: list[float], rtt_ms: float) -> list[float]:
    """Seconds of one exchange epoch at each bandwidth (Mbit/s), at round-trip time ``rtt_ms``."""
    return [leg_seconds(traffic.epoch, Link(bandwidth_mbps=bandwidth, rtt_ms=rtt_ms)) for bandwidth in bandwidths]

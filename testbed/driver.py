"""The driver: runs one scenario end to end (parties up, protocol loop, results written, parties down)."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import asdict
from statistics import mean
from typing import Any, Callable

from tqdm import tqdm

from testbed.cluster import RayParties
from testbed.config import Scenario
from testbed.memory import reset_peak_rss
from testbed.messages import Channel
from testbed.network import network_time
from testbed.registry import DATASETS, PROTOCOLS
from testbed.result_schema import SCHEMA_VERSION, Communication, EpochRecord, PartyEpoch, PartySummary, Seconds, Summary
from testbed.results import RunDirectory


def run_scenario(scenario: Scenario, out: RunDirectory, progress: bool = True, placement: Callable[[Scenario], Any] | None = None) -> Summary:
    """Run ``scenario``, writing everything under ``out``; returns the summary.

    ``placement`` builds the parties (default: one Ray actor each, :class:`RayParties`; a sweep
    passes :class:`~testbed.inprocess.InProcessParties` to run a whole scenario inside one Ray task).

    Raises :class:`testbed.cluster.PartyFailure` when a party fails; the run directory then
    has no summary and its status says why.
    """
    out.write_yaml("scenario.yaml", scenario.dump())
    out.set_status("running")
    reset_peak_rss()  # in-process parties: this run's peak, not that of a run before it in this worker
    started = time.perf_counter()
    channel = Channel()
    final: dict[str, PartyEpoch] = {}
    phase_seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    predicted_seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    bar = tqdm(total=scenario.epochs, desc=scenario.name, unit="epoch", file=sys.stderr, disable=not progress)

    def report(epoch: int, metrics: dict[str, PartyEpoch]) -> None:
        rows = []
        for party, values in metrics.items():
            for phase, seconds in values.seconds.items():
                phase_seconds[party][phase] += seconds
            for phase, seconds in values.predicted_seconds.items():
                predicted_seconds[party][phase] += seconds
            rows.append(EpochRecord(epoch=epoch, party=party, **values.written(), **channel.traffic(party, epoch)))
            if epoch:
                final[party] = values
        out.append_lines("metrics.jsonl", [row.written() for row in rows])
        out.append_lines("messages.jsonl", [asdict(r) for r in channel.records if r.epoch == epoch])
        if epoch:
            bar.update(1)
            bar.set_postfix({p: f"{v.accuracy:.3f}" for p, v in metrics.items()})

    protocol = PROTOCOLS.create(scenario.protocol)
    parties = (placement or RayParties)(scenario)
    try:
        protocol.run(scenario, parties, channel, report)
    finally:
        bar.close()
        parties.close()
    wall = time.perf_counter() - started
    summary = summarize(scenario, channel, final, phase_seconds, wall, protocol.communication(scenario), predicted_seconds)
    out.complete(summary)
    return summary


def summarize(scenario: Scenario, channel: Channel, final: dict[str, PartyEpoch], phase_seconds: dict, wall: float, protocol_figures: dict[str, Any], predicted_seconds: dict) -> Summary:
    """The run's summary from its parties' last epoch, the channel's records and the figures the
    protocol adds (:meth:`~testbed.protocols.base.TrainingProtocol.communication`)."""
    # Epochs in which messages flow (SMuLe skips its warm-up; FedAvg may average every k epochs).
    exchange_epochs = sorted({r.epoch for r in channel.records if r.epoch > 0})
    totals = [channel.epoch_totals(e) for e in exchange_epochs] or [(0, 0)]
    setup_bytes, setup_messages = channel.epoch_totals(0)
    last = exchange_epochs[-1] if exchange_epochs else 0
    directions: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in channel.records:
        directions[record.epoch][f"{record.sender}->{record.receiver}"] += record.bytes
    communication = dict(
        setup_bytes=setup_bytes,
        setup_messages=setup_messages,
        setup_bytes_by_direction=dict(directions[0]),
        setup_rounds=channel.rounds(0),
        bytes_per_epoch=round(mean(b for b, _ in totals)),
        messages_per_epoch=round(mean(m for _, m in totals)),
        rounds_per_epoch=sum(channel.rounds(e) for e in exchange_epochs) // max(1, len(exchange_epochs)),
        exchange_epochs=len(exchange_epochs),
        bytes_per_epoch_by_direction=dict(directions[last]) if exchange_epochs else {},
        **protocol_figures,
    )
    return Summary(
        schema_version=SCHEMA_VERSION,
        scenario=scenario.name,
        protocol=scenario.protocol.kind,
        seed=scenario.seed,
        epochs=scenario.epochs,
        dataset=DATASETS.create(scenario.dataset).label(),
        # What "accuracy" and "asr" were measured on: a validation run must never be read as a test result.
        evaluated_on=f"validation ({scenario.validation_samples} train-pool samples)" if scenario.validation_samples else "test",
        scheme=scenario.scheme.kind,
        parties={
            name: PartySummary(
                role=party.role,
                accuracy=final[name].accuracy,
                asr=final[name].asr,
                asr_by_attack=final[name].asr_by_attack,
                loss=final[name].loss,
                peak_rss_mb=final[name].peak_rss_mb,
                **({"filter": final[name].filter} if final[name].filter is not None else {}),
            )
            for name, party in scenario.parties.items()
        },
        # Network time from the recorded bytes and rounds, on the scenario's link.
        communication=Communication(**communication, **network_time(Communication(**communication), scenario.network)),
        seconds=Seconds(
            wall=round(wall, 3),
            by_party_and_phase={p: {k: round(v, 3) for k, v in s.items()} for p, s in phase_seconds.items()},
            predicted_by_party_and_phase={p: {k: round(v, 3) for k, v in s.items()} for p, s in predicted_seconds.items()},
        ),
    )

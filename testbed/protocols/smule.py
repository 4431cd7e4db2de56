"""SMuLe (Zhu and Li, MSN 2023): mutual learning through blind predictions.

The loop below is the protocol of docs/protocol.md ("Roles and messages"), run in every
direction between every pair of parties. Each party queries each peer once with its (encrypted) samples, then in every
exchange epoch each peer answers with its current model's (encrypted) logits on them, and each
party trains on its labels plus the distillation term toward its peers' answers.
"""

from __future__ import annotations

from itertools import permutations
from testbed.config import Scenario
from testbed.messages import Channel
from testbed.protocols.base import EpochReport, Parties, TrainingProtocol, Valid
from testbed.registry import PROTOCOLS
from testbed.result_schema import FilterAudit, PartyEpoch


@PROTOCOLS.register("smule")
class SMuLe(TrainingProtocol):
    audits_answers = True

    @classmethod
    def problems(cls, scenario: Scenario, valid: Valid) -> list[tuple[str, str]]:
        warmup = scenario.training.warmup_epochs
        if warmup >= scenario.epochs and valid("protocol", "epochs", "training.warmup_epochs"):
            return [("training.warmup_epochs", f"{warmup} leaves no exchange epoch of epochs={scenario.epochs}; allowed: 0..{scenario.epochs - 1}")]
        return []

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        directions = list(permutations(parties.names, 2))  # (querier, responder)

        # One-time setup: each querier sends each responder its public context and encrypted samples.
        queries = parties.gather("query", [(q, parties[q].query(r)) for q, r in directions])
        for message in queries:
            channel.record(message)
        parties.gather("accept", [(m.receiver, parties[m.receiver].accept(m)) for m in queries])
        del queries  # the setup payloads are the run's largest objects (GBs for CIFAR-10): keep only their sizes
        times = parties.gather("timings", [(p, parties[p].take_timings()) for p in parties.names])
        report(0, {p: PartyEpoch(seconds=seconds) for p, seconds in zip(parties.names, times)})

        for epoch in range(1, scenario.epochs + 1):
            exchange = epoch > scenario.training.warmup_epochs
            audits: dict[str, dict[str, FilterAudit]] = {p: {} for p in parties.names}
            if exchange:
                answers = parties.gather("answer", [(r, parties[r].answer(q, epoch)) for q, r in directions])
                for message, _ in answers:
                    channel.record(message)
                parties.gather("receive", [(m.receiver, parties[m.receiver].receive(m)) for m, _ in answers])
                # The simulator's ground truth goes to the querier's audit only after it has filtered.
                calls = [(m.receiver, parties[m.receiver].audit(m.sender, truth)) for m, truth in answers]
                for (querier, _), (message, _), audit in zip(calls, answers, parties.gather("audit", calls)):
                    audits[querier][message.sender] = audit
            losses = parties.gather("train", [(p, parties[p].train(exchange)) for p in parties.names])
            scores = parties.gather("evaluate", [(p, parties[p].evaluate()) for p in parties.names])
            times = parties.gather("timings", [(p, parties[p].take_timings()) for p in parties.names])
            report(epoch, {
                p: PartyEpoch.scored(loss, score, seconds, filter=mean_audit(audits[p]))
                for p, loss, score, seconds in zip(parties.names, losses, scores, times)
            })


def mean_audit(audits: dict[str, FilterAudit]) -> FilterAudit | None:
    """Filter metrics of one querier averaged over its peers, and per peer under ``by_peer``
    (None in epochs without exchange)."""
    if not audits:
        return None
    values = [audit.written() for audit in audits.values()]
    return FilterAudit(**{key: sum(a[key] for a in values) / len(values) for key in values[0]}, by_peer=audits)

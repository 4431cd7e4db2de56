"""Joint baseline: one model trained on the union of all parties' data, poison included.

This is the function secure MPC training (SecureML-style, CrypTen) computes, up to fixed-point
error, while hiding the data; since nobody can inspect or filter the union, its accuracy and
attack success come from plaintext training here. The first party hosts the joint model and
every party reports it. Its MPC communication is not simulated message by message: the
driver adds it to the summary from :mod:`testbed.mpc_cost` (cost model, and CrypTen where
installed), each figure labelled with its source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from testbed.config import Scenario
from testbed.datasets import load_data
from testbed.messages import Channel
from testbed.mpc_cost.cost_model import SOURCE, epoch_cost
from testbed.mpc_cost.crypten_measure import bytes_per_epoch, crypten_unavailable_reason, measure_crypten_training, rounds_per_epoch
from testbed.protocols.base import EpochReport, Parties, PartyInterface, TrainingProtocol, train_and_report
from testbed.registry import DATASETS, MODELS, PROTOCOLS, Params
from testbed.shares import party_data


@PROTOCOLS.register("joint")
class Joint(TrainingProtocol):
    class Params(Params):
        measure_crypten: bool = Field(True, description="also measure CrypTen two-party training (when installed)")
        crypten_batches: int = Field(2, ge=1, description="batches CrypTen trains to measure one")

    own_models = False  # the first party hosts the one model every party reports

    def final_model_of(self, party: str, parties: list[str]) -> str:
        return parties[0]

    def run(self, scenario: Scenario, parties: Parties, channel: Channel, report: EpochReport) -> None:
        host = self.final_model_of(parties.names[0], parties.names)
        parties.gather("merge", [(host, parties[host].apply(hold_union))])
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            train_and_report(parties, [host], epoch, report, reported_as=parties.names)

    def communication(self, scenario: Scenario) -> dict[str, Any]:
        """MPC training traffic of one epoch over the union: cost model, and CrypTen if installed."""
        dataset = DATASETS.create(scenario.dataset)
        first = next(iter(scenario.parties.values()))
        model = MODELS.create(first.model).build(dataset.input_shape, dataset.classes)
        samples = sum(p.samples for p in scenario.parties.values())
        batch = scenario.training.batch_size
        modelled = epoch_cost(model, dataset.input_shape, dataset.classes, batch, samples)
        out: dict[str, Any] = {
            "mpc_bytes_per_epoch_model": modelled.bytes,
            "mpc_rounds_per_epoch_model": modelled.rounds,
            "mpc_source_model": SOURCE,
        }
        reason = crypten_unavailable_reason() if self.params.measure_crypten else "not requested (protocol.measure_crypten: false)"
        measured = None if reason else measure_crypten_training(model, dataset.input_shape, dataset.classes, batch, self.params.crypten_batches, scenario.seed)
        if measured is None:
            out["mpc_bytes_per_epoch_measured"] = None
            out["mpc_measured_unavailable"] = reason or "CrypTen unavailable"
        else:
            out["mpc_bytes_per_epoch_measured"] = round(bytes_per_epoch(measured, samples))
            out["mpc_rounds_per_epoch_measured"] = round(rounds_per_epoch(measured, samples))
            out["mpc_source_measured"] = measured["source"]
        return out


def hold_union(party: PartyInterface) -> int:
    """Make ``party`` hold every party's data (as MPC training would see it); returns the size."""
    shares = party_data(party.scenario, load_data(party.scenario)).values()
    party.x = np.concatenate([share.train.x for share in shares])
    party.y = np.concatenate([share.train.y for share in shares])
    return len(party.y)

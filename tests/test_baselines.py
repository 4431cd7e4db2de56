"""Local, joint and FedAvg baselines through the same loop, parties and metrics as SMuLe."""

import io

import numpy as np
import pytest
import torch

from testbed.config import ScenarioError, parse_scenario
from testbed.driver import run_scenario
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.registry import PROTOCOLS
from testbed.results import RunDirectory
from testbed.training import accuracy


def run(raw, overrides=()):
    scenario = parse_scenario(raw, list(overrides))
    parties, channel, epochs = InProcessParties(scenario), Channel(), {}
    PROTOCOLS.create(scenario.protocol).run(scenario, parties, channel, lambda e, m: epochs.__setitem__(e, m))
    return parties, channel, epochs


def test_local_equals_smule_without_mutual_term(tiny_raw):
    _, channel, local = run(tiny_raw, ["protocol=local"])
    _, _, alone = run(tiny_raw, ["training.mutual_weight=0"])
    assert channel.records == []
    assert [local[3][p].accuracy for p in "AB"] == [alone[3][p].accuracy for p in "AB"]
    assert [local[3][p].loss for p in "AB"] == pytest.approx([alone[3][p].loss for p in "AB"])


def test_joint_trains_one_model_on_the_union(tiny_raw):
    parties, channel, epochs = run(tiny_raw, ["protocol=joint"])
    host, other = parties.parties["A"], parties.parties["B"]
    assert len(host.y) == 100 and channel.records == []
    # The union is both parties' shares, and both parties report the one joint model.
    np.testing.assert_array_equal(host.x[50:], other.x)
    assert epochs[3]["B"].accuracy == accuracy(host.model, host.test.x, host.test.y)


def test_joint_summary_has_labelled_mpc_cost(tmp_path, tiny_raw):
    scenario = parse_scenario(tiny_raw, ["protocol={kind: joint, measure_crypten: false}", "epochs=1"])
    summary = run_scenario(scenario, RunDirectory(tmp_path / "run"), progress=False, placement=InProcessParties)
    comm = summary.communication
    assert comm.bytes_per_epoch == 0
    assert comm.mpc_bytes_per_epoch_model > 0 and "model" in comm.mpc_source_model
    assert comm.mpc_bytes_per_epoch_measured is None and "not requested" in comm.mpc_measured_unavailable


def test_fedavg_averages_models_and_counts_serialized_bytes(tiny_raw):
    parties, channel, epochs = run(tiny_raw, ["protocol=fedavg"])
    a, b = (parties.parties[p].model.state_dict() for p in "AB")
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert epochs[3]["A"].accuracy == epochs[3]["B"].accuracy
    buffer = io.BytesIO()
    torch.save({"samples": 50, "state": parties.parties["A"].model.state_dict()}, buffer)
    assert channel.epoch_totals(2) == (2 * len(buffer.getvalue()), 2)


def test_fedavg_weights_by_sample_count(tiny_raw):
    tiny_raw["parties"]["B"]["samples"] = 25
    parties, _, _ = run(tiny_raw, ["protocol=fedavg", "epochs=1"])
    # After one round both hold (50 * A + 25 * B) / 75 of the locally trained weights; rebuild it.
    scenario = parse_scenario(tiny_raw, ["protocol=fedavg", "epochs=1"])
    alone = InProcessParties(scenario)
    for p in "AB":
        alone[p].train(False)
    wa, wb = (alone.parties[p].model[1].weight for p in "AB")
    torch.testing.assert_close(parties.parties["A"].model[1].weight, (50 * wa + 25 * wb) / 75)


def test_fedavg_needs_one_architecture(tiny_raw):
    tiny_raw["parties"]["B"]["model"]["hidden"] = [4]
    with pytest.raises(ScenarioError, match="averages models"):
        parse_scenario(tiny_raw, ["protocol=fedavg"])

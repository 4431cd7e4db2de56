"""The SMuLe loop in-process: message accounting, n parties, determinism, and the mutual term."""

import numpy as np
import pytest

from testbed.config import parse_scenario
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.protocols import PROTOCOLS
from testbed.schemes.plaintext import array_to_bytes
from testbed.training import predict


class PayloadRecorder(InProcessParties):
    """In-process parties that also keep every message they pass, to check the channel against."""

    def __init__(self, scenario):
        super().__init__(scenario)
        self.sent = []

    def call(self, party, method, *args):
        result = super().call(party, method, *args)
        if method == "query":
            self.sent.append(result)
        if method == "answer":
            self.sent.append(result[0])
        return result


def run(raw, overrides=()):
    scenario = parse_scenario(raw, list(overrides))
    parties = PayloadRecorder(scenario)
    channel = Channel()
    epochs = {}
    PROTOCOLS.create(scenario.protocol).run(scenario, parties, channel, lambda e, m: epochs.__setitem__(e, m))
    return scenario, parties, channel, epochs


def test_recorded_bytes_equal_serialized_payloads(tiny_raw):
    scenario, parties, channel, _ = run(tiny_raw)
    for epoch in range(scenario.epochs + 1):
        payload_bytes = sum(len(m.wire.data) for m in parties.sent if m.epoch == epoch)
        assert channel.epoch_totals(epoch)[0] == payload_bytes
    # The plaintext answer is exactly the float32 logits array the responder serialized.
    answer = next(m for m in parties.sent if m.kind == "answer")
    assert len(answer.wire.data) == len(array_to_bytes(np.zeros((50, 3), np.float32)))
    # Warm-up epoch 1 exchanges nothing; epochs 2..3 one answer per direction.
    assert [channel.epoch_totals(e)[1] for e in range(4)] == [2, 0, 2, 2]


def test_three_parties_each_query_every_peer(tiny_raw):
    tiny_raw["parties"]["C"] = {"samples": 20, "model": {"kind": "mlp", "hidden": [4]}}
    _, _, channel, epochs = run(tiny_raw)
    setup = {(r.sender, r.receiver) for r in channel.records if r.epoch == 0}
    assert setup == {(q, r) for q in "ABC" for r in "ABC" if q != r}
    assert len([r for r in channel.records if r.epoch == 2]) == 6
    assert set(epochs[3]) == {"A", "B", "C"}


def test_same_seed_same_results_other_seed_differs(tiny_raw):
    first = run(tiny_raw)[3]
    again = run(tiny_raw)[3]
    other = run(tiny_raw, ["seed=4"])[3]
    losses = lambda e: [e[k][p]["loss"] for k in (1, 2, 3) for p in "AB"]  # noqa: E731
    assert losses(first) == losses(again)
    assert losses(first) != losses(other)


def test_mutual_term_changes_training_only_after_warmup(tiny_raw):
    with_peers = run(tiny_raw)[3]
    alone = run(tiny_raw, ["training.mutual_weight=0"])[3]
    assert with_peers[1]["A"]["loss"] == pytest.approx(alone[1]["A"]["loss"])  # warm-up: labels only
    assert with_peers[2]["A"]["loss"] != pytest.approx(alone[2]["A"]["loss"])


def test_manipulated_answers_reach_querier(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "class_swap", "source": 0, "target": 1, "rate": 1.0}]
    scenario = parse_scenario(tiny_raw)
    parties = InProcessParties(scenario)
    for q, r in (("A", "B"), ("B", "A")):
        parties.call(r, "accept", parties.call(q, "query", r))
    message, manipulated = parties.call("B", "answer", "A", 2)
    assert manipulated.all()
    clean = predict(parties.parties["B"].model, parties.parties["A"].x)
    parties.call("A", "receive", message)
    received = parties.parties["A"].guidance["B"].logits
    np.testing.assert_allclose(received[:, [1, 0, 2]], clean, rtol=1e-6)


def test_filter_audit_reports_against_ground_truth(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "class_swap", "source": 0, "target": 1, "rate": 0.5}]
    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreement"}]
    _, parties, _, epochs = run(tiny_raw)
    audit = epochs[3]["A"]["filter"]
    guidance = parties.parties["A"].guidance["B"]
    assert audit["kept"] == pytest.approx(float((guidance.logits.argmax(1) == parties.parties["A"].y).mean()))
    assert audit["precision"] == 1.0  # every wrong answer comes from the malicious peer
    assert 0.0 < audit["recall"] < 1.0  # swaps that left the argmax right are harmful but kept
    assert epochs[3]["B"]["filter"]["kept"] == 1.0 and epochs[1]["A"]["filter"] is None

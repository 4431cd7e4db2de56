"""The SMuLe loop in-process: message accounting, n parties, determinism, and the mutual term."""

import numpy as np
import pytest
import torch

from testbed.config import parse_scenario
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.metrics import answer_harm
from testbed.models import predict
from testbed.party import Party
from testbed.registry import PROTOCOLS
from testbed.schemes.plaintext import array_to_bytes


class PayloadRecorder(InProcessParties):
    """In-process parties that also keep every message they pass, to check the channel against."""

    def __init__(self, scenario):
        super().__init__(scenario)
        self.sent = []
        for party in self.parties.values():
            party.query = self.recording(party.query, lambda message: message)
            party.answer = self.recording(party.answer, lambda result: result[0])

    def recording(self, method, message_of):
        def call(*args):
            result = method(*args)
            self.sent.append(message_of(result))
            return result

        return call


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
    losses = lambda e: [e[k][p].loss for k in (1, 2, 3) for p in "AB"]  # noqa: E731
    assert losses(first) == losses(again)
    assert losses(first) != losses(other)


def test_mutual_term_changes_training_only_after_warmup(tiny_raw):
    # No filter: the default's trust weight switches a poor tiny peer off, which is not what this tests.
    for party in tiny_raw["parties"].values():
        party["filters"] = []
    with_peers = run(tiny_raw)[3]
    alone = run(tiny_raw, ["training.mutual_weight=0"])[3]
    assert with_peers[1]["A"].loss == pytest.approx(alone[1]["A"].loss)  # warm-up: labels only
    assert with_peers[2]["A"].loss != pytest.approx(alone[2]["A"].loss)


def test_manipulated_answers_reach_querier(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "class_swap", "source": 0, "target": 1, "rate": 1.0}]
    scenario = parse_scenario(tiny_raw)
    parties = InProcessParties(scenario)
    for q, r in (("A", "B"), ("B", "A")):
        parties[r].accept(parties[q].query(r))
    message, truth = parties["B"].answer("A", 2)
    assert truth.manipulated.all() and truth.target == 1
    clean = predict(parties.parties["B"].model, parties.parties["A"].x)
    parties["A"].receive(message)
    received = parties.parties["A"].received["B"].peer_logits
    np.testing.assert_allclose(received[:, [1, 0, 2]], clean, rtol=1e-6)


def test_filter_audit_judges_answers_against_the_clean_twin(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "class_swap", "source": 0, "target": 1, "rate": 0.5}]
    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreement"}]
    tiny_raw["training"]["learning_rate"] = 0.05
    scenario = parse_scenario(tiny_raw)
    parties = InProcessParties(scenario)
    a, b = parties.parties["A"], parties.parties["B"]
    for q, r in (("A", "B"), ("B", "A")):
        parties[r].accept(parties[q].query(r))
    for _ in range(5):  # confident models, so that a swap moves real probability mass
        for p in "AB":
            parties[p].train(False)
    message, truth = parties["B"].answer("A", 6)
    parties["A"].receive(message)
    audit = parties["A"].audit("B", truth)
    # The ground truth, by hand: B's twin answers what B's unmanipulated model would (a
    # manipulation-only attack leaves B's training untouched, so twin and B hold the same model).
    twin = predict(b.twin.model, a.x)
    np.testing.assert_allclose(twin, predict(b.model, a.x), rtol=1e-6)
    harm = answer_harm(a.received["B"].peer_logits, twin, scenario.training.temperature, target=1)
    assert 0 < harm.harmful.mean() <= truth.manipulated.mean()  # only swapped answers can be harmful
    assert not harm.harmful[~truth.manipulated].any()
    kept = a.guidance["B"].weights > 0
    assert audit.harmful == pytest.approx(harm.harmful.mean())
    assert audit.kept == pytest.approx(kept.mean())
    assert audit.recall == pytest.approx((~kept & harm.harmful).sum() / harm.harmful.sum())
    assert audit.precision == pytest.approx((~kept & harm.harmful).sum() / max((~kept).sum(), 1))
    # An honest responder's answers are never harmful.
    reply, honest_truth = parties["A"].answer("B", 6)
    parties["B"].receive(reply)
    assert honest_truth.twin_logits is None and parties["B"].audit("A", honest_truth).harmful == 0.0


def test_audit_runs_every_exchange_epoch_per_peer(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "class_swap", "source": 0, "target": 1, "rate": 0.5}]
    _, _, _, epochs = run(tiny_raw)
    assert epochs[1]["A"].filter is None  # warm-up: nothing exchanged
    assert set(epochs[3]["A"].filter.by_peer) == {"B"} and epochs[3]["B"].filter.harmful == 0.0


def test_clean_twin_shares_initialisation_and_guidance_but_not_poison(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "label_flip", "source": 0, "target": 1, "rate": 0.3}]
    scenario = parse_scenario(tiny_raw)
    b = Party(scenario, "B")
    twin = b.twin
    for mine, theirs in zip(b.model.state_dict().values(), twin.model.state_dict().values()):
        assert torch.equal(mine, theirs)
    np.testing.assert_array_equal(b.x, twin.x)
    assert (b.y != twin.y).sum() > 0 and twin.twin is None and twin.config.attacks == []
    # An attack at rate 0 leaves the party its own twin: no second model is trained.
    assert Party(parse_scenario(tiny_raw, ["parties.B.attacks.0.rate=0"]), "B").twin is None


def test_twin_never_reaches_any_party(tiny_raw, monkeypatch):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "label_flip", "source": 0, "target": 1, "rate": 0.3}]
    tiny_raw["parties"]["A"]["filters"] = [{"kind": "divergence", "percentile": 80}, {"kind": "true_label"}]
    _, _, _, honest = run(tiny_raw)
    # Replace every twin answer by noise: training, filters and evaluation must not change.
    rng = np.random.default_rng(0)
    original = Party._twin_answer

    def noise(self, peer):
        answer = original(self, peer)
        return None if answer is None else rng.normal(size=answer.shape) * 10

    monkeypatch.setattr(Party, "_twin_answer", noise)
    _, _, _, noisy = run(tiny_raw)
    for epoch in (1, 2, 3):
        for party in "AB":
            for key in ("loss", "accuracy", "asr"):
                    assert getattr(honest[epoch][party], key) == getattr(noisy[epoch][party], key)
    assert honest[3]["A"].filter.kept == noisy[3]["A"].filter.kept
    assert honest[3]["A"].filter.harm_kept != noisy[3]["A"].filter.harm_kept  # only the audit saw the noise


def test_query_fraction_sends_a_seeded_subset_and_distils_only_on_it(tiny_raw):
    tiny_raw["parties"]["B"].update(role="malicious", attacks=[{"kind": "label_flip", "source": 0, "target": 1, "rate": 0.5}])
    tiny_raw["parties"]["A"]["filters"] = []  # distil the answers as received
    _, _, full, _ = run(tiny_raw)
    scenario, parties, channel, epochs = run(tiny_raw, ["training.query_fraction=0.4"])
    a = parties.parties["A"]
    assert len(a.queried) == 20 and len(set(a.queried)) == 20
    assert not np.array_equal(a.queried, np.arange(20))  # a seeded draw, not the first samples
    # Each answer carries logits for exactly the queried samples, in their order.
    answer = next(m for m in parties.sent if m.kind == "answer" and m.receiver == "A")
    assert len(answer.wire.data) == len(array_to_bytes(np.zeros((20, 3), np.float32)))
    assert channel.epoch_totals(0)[0] < full.epoch_totals(0)[0]
    guidance = a.guidance["B"]
    unqueried = np.setdiff1d(np.arange(50), a.queried)
    assert guidance.weights[unqueried].max() == 0 and guidance.weights[a.queried].max() > 0
    np.testing.assert_allclose(guidance.logits[a.queried], a.received["B"].peer_logits, rtol=1e-5, atol=1e-6)
    # The audit judges the queried answers against the twin's answers on the same samples.
    assert epochs[3]["A"].filter.harmful > 0
    assert Party(scenario, "A", with_twin=False).queried.tolist() == a.queried.tolist()

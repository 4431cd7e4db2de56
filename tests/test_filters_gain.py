"""The defences built to keep SMuLe's gain (own_confidence, lacking_classes, class_floor) on
hand-computed examples."""

import numpy as np
import pytest

from testbed.filters import PredictionView, rewritten
from testbed.metrics import softmax
from testbed.registry import FILTERS


def make(raw):
    return FILTERS.create(FILTERS.parse_spec(raw))


def view(peer, own, labels):
    """A view at T = 1 from probability rows (logits are their logs)."""
    return PredictionView(np.log(np.asarray(peer, dtype=float)), np.log(np.asarray(own, dtype=float)), np.asarray(labels), temperature=1.0)


def distilled(raw, v):
    return softmax(make(raw).rewrite(v), v.temperature)


def test_own_confidence_raises_the_label_to_the_querier_own_and_keeps_the_other_proportions():
    v = view([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8]], [[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]], [0, 0, 1])
    out = distilled("own_confidence", v)
    np.testing.assert_allclose(out[0], [0.7, 0.2, 0.1], rtol=1e-5)  # the peer is surer: unchanged
    np.testing.assert_allclose(out[1], [0.8, 0.5 * 0.2 / 0.6, 0.1 * 0.2 / 0.6], rtol=1e-5)
    np.testing.assert_allclose(out[2], [0.1 * 0.2 / 0.9, 0.8, 0.8 * 0.2 / 0.9], rtol=1e-5)


def test_own_confidence_before_true_label_stops_a_drained_label():
    # The peer all but denies the label of the first sample; true_label alone passes that doubt.
    v = view([[0.01, 0.98, 0.01], [0.2, 0.7, 0.1]], [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]], [0, 1])
    alone = softmax(rewritten([make("true_label")], v), 1.0)
    anchored = softmax(rewritten([make("own_confidence"), make("true_label")], v), 1.0)
    assert alone[0, 0] == pytest.approx(0.01, rel=1e-4)
    np.testing.assert_allclose(anchored[0], [0.9, 0.05, 0.05], rtol=1e-5)
    np.testing.assert_allclose(anchored[1], [0.1, 0.8, 0.1], rtol=1e-5)  # own 0.8 > peer 0.7: the label gets 0.8, the rest even


# Four samples of classes 0 and 1: classes 2 and 3 are below min_share 0.25 of them, i.e. lacking.
LABELS = [0, 0, 1, 1]


def test_lacking_classes_keeps_the_peer_mass_on_lacking_classes_and_flattens_the_rest():
    peer = [[0.4, 0.1, 0.3, 0.1, 0.1], [0.5, 0.3, 0.0001, 0.0001, 0.1998]]
    own = [[0.4, 0.3, 0.1, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]]
    out = distilled({"kind": "lacking_classes", "min_share": 0.25, "confidence": "peer"}, view(peer, own, [0, 0]))
    # classes 1..4 are all lacking (no sample of them): everything is kept as sent
    np.testing.assert_allclose(out, peer, rtol=1e-4)
    v = view([[0.4, 0.1, 0.3, 0.1, 0.1]] * 4, [[0.4, 0.3, 0.1, 0.1, 0.1]] * 4, LABELS)
    out = distilled({"kind": "lacking_classes", "min_share": 0.25, "confidence": "peer"}, v)
    # label 0: lacking 2, 3, 4 kept (0.3, 0.1, 0.1), class 1 gets what is left, 0.1
    np.testing.assert_allclose(out[0], [0.4, 0.1, 0.3, 0.1, 0.1], rtol=1e-5)
    # label 1 (p 0.1): lacking 2, 3, 4 kept; class 0, the other held class, gets 1 - 0.1 - 0.5
    np.testing.assert_allclose(out[2], [0.4, 0.1, 0.3, 0.1, 0.1], rtol=1e-5)
    v = view([[0.5, 0.3, 0.1, 0.05, 0.05]] * 4, [[0.5, 0.3, 0.1, 0.05, 0.05]] * 4, [0, 0, 0, 1])
    out = distilled({"kind": "lacking_classes", "min_share": 0.3, "confidence": "peer"}, v)
    # class 1 holds 1 of 4 samples (< 0.3): lacking, so kept; 2..4 lacking too: unchanged
    np.testing.assert_allclose(out[0], [0.5, 0.3, 0.1, 0.05, 0.05], rtol=1e-5)


def test_lacking_classes_spreads_the_held_classes_mass_and_raises_the_label_to_its_own():
    # 5 classes; the querier holds 0, 1, 2 (two samples each), lacks 3 and 4
    labels = [0, 0, 1, 1, 2, 2]
    peer = [[0.3, 0.4, 0.1, 0.15, 0.05]] * 6
    own = [[0.6, 0.2, 0.1, 0.05, 0.05]] * 6
    v = view(peer, own, labels)
    spread = distilled({"kind": "lacking_classes", "min_share": 0.2, "confidence": "peer"}, v)
    # label 0: lacking 3, 4 kept (0.15, 0.05); 1 - 0.3 - 0.2 = 0.5 spread over classes 1 and 2
    np.testing.assert_allclose(spread[0], [0.3, 0.25, 0.25, 0.15, 0.05], rtol=1e-5)
    anchored = distilled({"kind": "lacking_classes", "min_share": 0.2}, v)
    # own 0.6 > peer 0.3: the label gets 0.6; the lacking mass stays as sent; 0.2 left for 1 and 2
    np.testing.assert_allclose(anchored[0], [0.6, 0.1, 0.1, 0.15, 0.05], rtol=1e-5)
    own_rest = distilled({"kind": "lacking_classes", "min_share": 0.2, "rest": "own"}, v)
    # the 0.2 left shared as the own model shares classes 1 and 2 (0.2 : 0.1)
    np.testing.assert_allclose(own_rest[0], [0.6, 0.2 * 2 / 3, 0.2 / 3, 0.15, 0.05], rtol=1e-5)
    # a confident label leaves less than the lacking mass: the lacking classes shrink to fit
    sure = view(peer, [[0.9, 0.04, 0.04, 0.01, 0.01]] * 6, labels)
    np.testing.assert_allclose(distilled({"kind": "lacking_classes", "min_share": 0.2}, sure)[0], [0.9, 0, 0, 0.075, 0.025], atol=1e-6)


def test_lacking_classes_on_an_iid_share_is_true_label_with_own_confidence():
    rng = np.random.default_rng(0)
    peer, own = rng.dirichlet(np.ones(4), 40), rng.dirichlet(np.ones(4), 40)
    v = view(peer, own, np.arange(40) % 4)
    np.testing.assert_allclose(
        distilled("lacking_classes", v), softmax(rewritten([make("own_confidence"), make("true_label")], v), 1.0), rtol=1e-5
    )


def test_class_floor_removes_the_mass_a_class_gets_from_every_class_alike():
    # Class 2 gets 0.2 on every sample (a push); classes 0 and 1 only where they resemble.
    peer = [[0.7, 0.1, 0.2], [0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.2, 0.6, 0.2], [0.3, 0.1, 0.6], [0.1, 0.3, 0.6]]
    v = view(peer, peer, [0, 0, 1, 1, 2, 2])
    floor = make({"kind": "class_floor", "min_count": 1})
    np.testing.assert_allclose(floor.floors(v.peer_soft(), v.labels), [0.175, 0.175, 0.2])
    out = distilled({"kind": "class_floor", "min_count": 1}, v)
    np.testing.assert_allclose(out[0], [0.7, 0.15, 0.15], rtol=1e-5)  # 0.1 + 0.2 removed, 0.15 to each other class
    np.testing.assert_allclose(out[4], [0.3 - 0.175 + 0.1375, 0.1375, 0.6], rtol=1e-5)
    # only classes with min_count samples vote: with min_count 3 none does, and nothing moves
    np.testing.assert_allclose(distilled({"kind": "class_floor", "min_count": 3}, v), peer, rtol=1e-5)


@pytest.mark.parametrize("raw, culprit", [
    ({"kind": "lacking_classes", "min_share": 1.5}, "min_share=1.5"),
    ({"kind": "lacking_classes", "rest": "peer"}, "rest='peer'"),
    ({"kind": "lacking_classes", "confidence": "max"}, "confidence='max'"),
    ({"kind": "class_floor", "min_count": 0}, "min_count=0"),
    ({"kind": "own_confidence", "tau": 1}, "tau"),
])
def test_parameters_are_checked_at_the_edge(raw, culprit):
    with pytest.raises(ValueError, match=culprit.replace("[", r"\[")):
        FILTERS.parse_spec(raw)


def test_an_attacker_finds_a_class_the_querier_lacks_from_its_answers():
    """The weak point of lacking_classes is an attack aimed at a class the querier lacks. The
    attacker need not be told which: SMuLe runs both ways, so after one exchange it holds the
    querier's answers on its own labelled samples, and the class they recall worst is lacking."""
    from testbed.config import parse_scenario
    from testbed.inprocess import InProcessParties
    from testbed.messages import Channel
    from testbed.registry import PROTOCOLS

    for seed in (0, 1, 2):
        raw = {"name": "t", "seed": seed, "epochs": 2, "split": {"kind": "dirichlet", "alpha": 0.3}, "training": {"mutual_weight": 1.0},
               "parties": {"A": {"samples": 600}, "B": {"role": "malicious", "samples": 600}}}
        scenario = parse_scenario(raw)
        parties = InProcessParties(scenario)
        PROTOCOLS.create(scenario.protocol).run(scenario, parties, Channel(), lambda epoch, metrics: None)
        seen = parties["B"].received["A"]  # A's answers on B's samples, and B's labels
        recall = [softmax(seen.peer_logits)[seen.labels == c, c].mean() if (seen.labels == c).sum() >= 5 else np.inf for c in range(10)]
        guess = int(np.argmin(recall))
        assert make("lacking_classes").lacking(parties["A"].y, 10)[guess], (seed, guess, np.bincount(parties["A"].y, minlength=10))

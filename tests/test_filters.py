"""Each filter's decisions on hand-computed examples, and the filter metrics."""

import numpy as np
import pytest

from testbed.config import ScenarioError, parse_scenario
from testbed.filters import PredictionView, combined_weights, rewritten
from testbed.metrics import HARM_KL, HARM_TARGET_MASS, Harm, answer_harm, filter_quality, softmax
from testbed.registry import FILTERS


def make(raw):
    return FILTERS.create(FILTERS.parse_spec(raw))


# Three samples, three classes. Peer probabilities at T=1 (rows): softmax of these logits.
PEER = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8]]))
OWN = np.log(np.array([[0.6, 0.3, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]))
LABELS = np.array([0, 0, 1])
VIEW = PredictionView(PEER, OWN, LABELS, temperature=1.0)


def test_agreement_keeps_argmax_equal_to_label():
    np.testing.assert_array_equal(make("agreement").weights(VIEW), [1, 0, 0])


def test_confidence_thresholds_true_label_probability():
    # p(true) = 0.7, 0.4, 0.1
    np.testing.assert_array_equal(make({"kind": "confidence", "tau": 0.4}).weights(VIEW), [1, 1, 0])
    np.testing.assert_array_equal(make({"kind": "confidence", "tau": 0.5}).weights(VIEW), [1, 0, 0])


def test_divergence_threshold_and_percentile():
    kl = [
        0.7 * np.log(0.7 / 0.6) + 0.2 * np.log(0.2 / 0.3),
        0.4 * np.log(0.4 / 0.8) + 0.5 * np.log(0.5 / 0.1),
        0.1 * np.log(0.1 / 0.8) + 0.8 * np.log(0.8 / 0.1),
    ]  # about 0.027, 0.527, 1.456
    np.testing.assert_array_equal(make({"kind": "divergence", "threshold": 0.5}).weights(VIEW), [1, 0, 0])
    np.testing.assert_array_equal(make({"kind": "divergence", "threshold": 0.6}).weights(VIEW), [1, 1, 0])
    assert kl[0] < 0.5 < kl[1] < 0.6 < kl[2]
    np.testing.assert_array_equal(make({"kind": "divergence", "percentile": 50}).weights(VIEW), [1, 1, 0])


def test_divergence_needs_exactly_one_limit():
    with pytest.raises(ValueError, match="exactly one"):
        FILTERS.parse_spec({"kind": "divergence"})
    with pytest.raises(ValueError, match="exactly one"):
        FILTERS.parse_spec({"kind": "divergence", "threshold": 1, "percentile": 5})


def test_trust_is_a_moving_average_with_a_linear_ramp():
    trust = make({"kind": "trust", "momentum": 0.5, "low": 0.5, "high": 0.9})
    # agreement share 1/3: trust = 0.5 * 1 + 0.5 * 1/3 = 2/3; weight (2/3 - 0.5) / 0.4 = 5/12
    np.testing.assert_allclose(trust.weights(VIEW), [5 / 12] * 3)
    # again 1/3: trust = 0.5 * 2/3 + 0.5 * 1/3 = 0.5 -> weight 0
    np.testing.assert_array_equal(trust.weights(VIEW), [0, 0, 0])
    assert trust.state() == {"trust": pytest.approx(0.5)}


def test_trust_oscillating_around_a_threshold_no_longer_toggles():
    """A peer whose agreement hovers around 0.8 once toggled a hard floor of 0.8 between weight 0
    and 0.8; the ramp moves the weight by at most the change of trust / (high - low)."""
    trust = make({"kind": "trust", "momentum": 0.5, "low": 0.7, "high": 0.9, "initial": 0.8})
    labels = np.zeros(100, dtype=int)
    weights, trusts = [], []
    for epoch in range(20):
        agree = 82 if epoch % 2 else 78  # agreement share 0.82, 0.78, 0.82, ...
        logits = np.zeros((100, 3))
        logits[np.arange(100) >= agree, 1] = 1.0
        weights.append(trust.weights(PredictionView(logits, logits, labels, 1.0))[0])
        trusts.append(trust.state()["trust"])
    steps = np.abs(np.diff(weights))
    assert steps.max() <= np.abs(np.diff(trusts)).max() / 0.2 + 1e-6 and steps.max() < 0.15
    assert min(weights) > 0.35  # never switched off


def test_trust_needs_low_below_high():
    with pytest.raises(ValueError, match="must be below"):
        FILTERS.parse_spec({"kind": "trust", "low": 0.9, "high": 0.9})


def test_combined_filters_multiply():
    weights = combined_weights([make({"kind": "confidence", "tau": 0.4}), make({"kind": "trust", "momentum": 0.0, "low": 0.0, "high": 1.0})], VIEW)
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3, 0])


def test_true_label_keeps_only_the_true_class_probability():
    T = 2.0
    view = PredictionView(PEER, OWN, LABELS, temperature=T)
    out = softmax(make("true_label").rewrite(view), T)
    p = softmax(PEER, T)
    for i, label in enumerate(LABELS):
        assert out[i, label] == pytest.approx(p[i, label])
        others = np.delete(out[i], label)
        np.testing.assert_allclose(others, (1 - p[i, label]) / 2)
    assert make("true_label").weights(view).tolist() == [1, 1, 1]


def test_top_k_keeps_the_k_largest_and_the_true_label_and_flattens_the_rest():
    peer = np.log(np.array([[0.5, 0.3, 0.1, 0.06, 0.04], [0.1, 0.2, 0.3, 0.15, 0.25]]))
    view = PredictionView(peer, peer, np.array([0, 0]), temperature=1.0)
    out = softmax(make({"kind": "top_k", "k": 2}).rewrite(view))
    np.testing.assert_allclose(out[0], [0.5, 0.3, 0.2 / 3, 0.2 / 3, 0.2 / 3], rtol=1e-5)
    # second row: top-2 are classes 2 and 4, the true label 0 is kept as well
    np.testing.assert_allclose(out[1], [0.1, 0.175, 0.3, 0.175, 0.25], rtol=1e-5)


def test_kl_cap_shrinks_only_answers_beyond_the_cap():
    # KL(peer || own) at T = 1: about 0.027, 0.527, 1.456 (see the divergence test)
    weights = make({"kind": "kl_cap", "cap": 0.5}).weights(VIEW)
    assert weights[0] == 1.0
    assert weights[1] == pytest.approx(0.5 / 0.527, rel=0.01) and weights[2] == pytest.approx(0.5 / 1.456, rel=0.01)


def test_rewrites_apply_in_order_after_weights_on_the_answer_as_received():
    view = PredictionView(PEER, OWN, LABELS, temperature=1.0)
    filters = [make("agreement"), make("true_label")]
    np.testing.assert_array_equal(combined_weights(filters, view), [1, 0, 0])  # agreement saw the raw answer
    np.testing.assert_allclose(rewritten(filters, view), make("true_label").rewrite(view))


def test_harm_is_measured_against_the_twin_not_the_label():
    twin = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8]]))
    # Row 0 unchanged; row 1 keeps its (wrong) argmax and is untouched: an honest mistake;
    # row 2 keeps its argmax but moves mass to class 1, the attack's target.
    answer = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.05, 0.3, 0.65]]))
    harm = answer_harm(answer, twin, temperature=1.0, target=1)
    np.testing.assert_allclose(harm.divergence[:2], 0, atol=1e-9)
    assert harm.target_shift[2] == pytest.approx(0.2)
    np.testing.assert_array_equal(harm.harmful, [False, False, True])
    # Without a target, only the divergence threshold counts.
    small = np.log(np.array([[0.69, 0.21, 0.1]]))
    assert not answer_harm(small, twin[:1], 1.0, None).harmful[0]
    assert HARM_KL > 0 and HARM_TARGET_MASS > 0


def test_filter_quality_against_ground_truth():
    harmful = np.array([False, True, False, True, False])
    harm = Harm(np.array([0.0, 1.0, 0.0, 0.5, 0.0]), np.zeros(5), harmful)
    q = filter_quality(np.array([1, 0, 0, 1, 0.5]), harm, harm.divergence)
    # dropped shares 0, 1, 1, 0, 0.5: caught 1 of 2.5 dropped, 1 of 2 harmful
    assert q["kept"] == pytest.approx(0.5) and q["precision"] == pytest.approx(0.4) and q["recall"] == pytest.approx(0.5)
    assert q["dropped_useful"] == pytest.approx(1.5 / 3)
    assert q["harm_kept"] == pytest.approx(0.5 / 2.5) and q["harm_dropped"] == pytest.approx(1.0 / 2.5)
    assert q["harm_distilled"] == pytest.approx(0.5 / 5)
    none = filter_quality(np.ones(3), Harm.none(3), np.zeros(3))
    assert (none["precision"], none["recall"], none["dropped_useful"]) == (1.0, 1.0, 0.0)


def test_unknown_filter_is_a_scenario_error(tiny_raw):
    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreemnt"}]
    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw)
    path, message = info.value.problems[0]
    assert path == "parties.A.filters.0" and "unknown filter 'agreemnt'" in message and "confidence" in message

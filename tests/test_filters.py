"""Each filter's decisions on hand-computed examples, and the filter metrics."""

import numpy as np
import pytest

from testbed.config import ScenarioError, parse_scenario
from testbed.filters import FILTERS, PredictionView, combined_weights
from testbed.metrics import filter_quality, harmful_predictions


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


def test_trust_is_a_moving_average_that_switches_off_below_floor():
    trust = make({"kind": "trust", "momentum": 0.5, "floor": 0.6})
    # agreement share 1/3: trust = 0.5 * 1 + 0.5 * 1/3 = 2/3 >= 0.6
    np.testing.assert_allclose(trust.weights(VIEW), [2 / 3] * 3)
    # again 1/3: trust = 0.5 * 2/3 + 0.5 * 1/3 = 0.5 < 0.6 -> off
    np.testing.assert_array_equal(trust.weights(VIEW), [0, 0, 0])
    assert trust.state() == {"trust": pytest.approx(0.5)}


def test_combined_filters_multiply():
    weights = combined_weights([make({"kind": "confidence", "tau": 0.4}), make({"kind": "trust", "momentum": 0.0, "floor": 0.0})], VIEW)
    np.testing.assert_allclose(weights, [1 / 3, 1 / 3, 0])


def test_filter_quality_against_ground_truth():
    weights = np.array([1, 0, 0, 1, 0.5])
    harmful = np.array([False, True, False, True, False])
    q = filter_quality(weights, harmful)
    assert q == {"kept": 0.6, "precision": 0.5, "recall": 0.5}
    assert filter_quality(np.ones(3), np.zeros(3, bool)) == {"kept": 1.0, "precision": 1.0, "recall": 1.0}


def test_harmful_predictions():
    manipulated = np.array([False, False, True])
    np.testing.assert_array_equal(harmful_predictions(PEER, LABELS, manipulated, True), [False, True, True])
    np.testing.assert_array_equal(harmful_predictions(PEER, LABELS, manipulated, False), [False, False, False])


def test_unknown_filter_is_a_scenario_error(tiny_raw):
    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreemnt"}]
    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw)
    path, message = info.value.problems[0]
    assert path == "parties.A.filters.0" and "unknown filter 'agreemnt'" in message and "confidence" in message

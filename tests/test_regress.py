"""The regression runner's bands, verdicts and invariants, on hand-made measurements."""

import pandas as pd
import pytest
from clitools import make_summary

from analysis.regress import baseline_rows, invariants, metrics_of, suite, verdicts


@pytest.fixture(scope="module")
def scenarios():
    return suite(["flip_default", "flip_none", "ckks_real"])


def runs(accuracy, asr_delta, bytes_per_epoch=1000):
    return [{("A", "accuracy"): a, ("A", "asr_delta"): d, ("B", "asr_delta"): 0.8, ("*", "bytes_per_epoch"): bytes_per_epoch}
            for a, d in zip(accuracy, asr_delta)]


def test_every_regression_scenario_validates():
    assert len(suite()) >= 16


def test_bands_come_from_the_seed_spread_or_one_sample(scenarios):
    measured = {"flip_default": runs([0.90, 0.91, 0.92, 0.93, 0.94], [0, 0, 0, 0, 0]), "ckks_real": runs([0.5] * 5, [0] * 5, 2_000_000)}
    rows = {(r["scenario"], r["party"], r["metric"]): r for r in baseline_rows(scenarios, measured)}
    acc = rows["flip_default", "A", "accuracy"]
    sd = pd.Series([0.90, 0.91, 0.92, 0.93, 0.94]).std()
    assert acc["mean"] == pytest.approx(0.92) and acc["upper"] - acc["mean"] == pytest.approx(3 * sd) and acc["seeds"] == 5
    # No spread: the band is one sample of the probe set (the source-class test samples).
    asr = rows["flip_default", "A", "asr_delta"]
    assert 0 < asr["upper"] <= 1 / 20 and asr["band"].startswith("max(3 sd, 1/")
    assert rows["flip_default", "*", "bytes_per_epoch"]["lower"] == rows["flip_default", "*", "bytes_per_epoch"]["upper"] == 1000
    real = rows["ckks_real", "*", "bytes_per_epoch"]
    assert real["upper"] == pytest.approx(2_002_000) and "0.1%" in real["band"]


def test_bytes_that_vary_between_seeds_in_an_exact_mode_are_refused(scenarios):
    with pytest.raises(RuntimeError, match="must be exact"):
        baseline_rows(scenarios, {"flip_none": runs([0.9] * 5, [0] * 5, 1000) + runs([0.9], [0], 1001)})


def test_verdicts_name_the_regressed_metric(scenarios):
    baseline = pd.DataFrame(baseline_rows(scenarios, {"flip_default": runs([0.90, 0.91, 0.92, 0.93, 0.94], [0] * 5)}))
    same = verdicts(baseline, {"flip_default": runs([0.92], [0.0])})
    assert (same["verdict"] == "ok").all()
    worse = verdicts(baseline, {"flip_default": runs([0.80], [0.0], 1001)})
    bad = worse[worse["verdict"] != "ok"]
    assert set(zip(bad["party"], bad["metric"])) == {("A", "accuracy"), ("*", "bytes_per_epoch")}
    extra = verdicts(baseline, {"flip_default": [{**runs([0.92], [0.0])[0], ("*", "messages_per_epoch"): 3}]})
    assert extra[extra["metric"] == "messages_per_epoch"]["verdict"].item().startswith("NEW")


def test_invariants_attacker_still_poisons_and_default_defence_holds(scenarios):
    holding = dict(invariants(scenarios, {"flip_default": runs([0.9], [0.01])}))
    assert all(holding.values()) and len(holding) == 2
    failing = dict(invariants(scenarios, {"flip_default": [{("A", "asr_delta"): 0.2, ("B", "asr_delta"): 0.1}]}))
    assert not any(failing.values())


def test_metrics_of_a_summary():
    summary = make_summary({"A": {"role": "honest", "accuracy": 0.9, "asr": 0.1, "filter": {"precision": 1.0, "recall": 0.5, "kept": 0.9}},
                            "B": {"role": "malicious", "accuracy": 0.8, "asr": 0.7}},
                           {"bytes_per_epoch": 10, "setup_bytes": 20, "messages_per_epoch": 2, "rounds_per_epoch": 1})
    reference = make_summary({"A": {"accuracy": 0.9, "asr": 0.05}, "B": {"accuracy": 0.8, "asr": 0.0}})
    m = metrics_of(summary, reference)
    assert m["A", "asr_delta"] == pytest.approx(0.05) and m["B", "asr_delta"] == pytest.approx(0.7)
    assert m["A", "filter_recall"] == 0.5 and ("B", "filter_recall") not in m and m["*", "rounds_per_epoch"] == 1

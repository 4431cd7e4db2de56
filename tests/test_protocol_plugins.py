"""A protocol registered outside the project answers for itself what the engine and analysis ask
of it: its own validation rules, whether answers are audited against a clean twin, which model
each party ends with (privacy audit) and whether an attacker keeps a model of its own
(regression invariants). No other file names it."""

from __future__ import annotations

import pytest

from analysis.privacy_runs import run_protocol
from analysis.regress import invariants
from testbed.config import ScenarioError, parse_scenario
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.protocols.base import TrainingProtocol, Valid, train_and_report
from testbed.protocols.smule import SMuLe
from testbed.registry import PROTOCOLS


@PROTOCOLS.register("toy_even_smule")
class EvenSMuLe(SMuLe):
    """SMuLe's loop with one rule of its own: an even number of epochs."""

    @classmethod
    def problems(cls, scenario, valid: Valid):
        odd = [("epochs", f"{scenario.epochs} is odd; toy_even_smule runs in pairs of epochs")] if scenario.epochs % 2 else []
        return odd + super().problems(scenario, valid)


@PROTOCOLS.register("toy_shared")
class Shared(TrainingProtocol):
    """The last party trains one model that every party reports (as a joint baseline would)."""

    own_models = False

    def final_model_of(self, party, parties):
        return parties[-1]

    def run(self, scenario, parties, channel, report):
        report(0, {})
        for epoch in range(1, scenario.epochs + 1):
            train_and_report(parties, [parties.names[-1]], epoch, report, reported_as=parties.names)


def raw(protocol: str, epochs: int = 4) -> dict:
    return {
        "name": "toy", "epochs": epochs, "protocol": protocol, "dataset": {"kind": "synthetic"},
        "parties": {"A": {"samples": 60}, "B": {"role": "malicious", "samples": 60, "attacks": [{"kind": "label_flip", "source": 0, "target": 1, "rate": 0.5}]}},
    }


def test_its_own_rules_are_checked_at_validation_with_the_inherited_ones():
    with pytest.raises(ScenarioError) as info:
        parse_scenario({**raw("toy_even_smule", epochs=3), "training": {"warmup_epochs": 3}})
    problems = dict(info.value.problems)
    assert "odd" in problems["epochs"] and "leaves no exchange epoch" in problems["training.warmup_epochs"]
    parse_scenario(raw("toy_even_smule"))


def test_an_answering_protocol_gets_the_clean_twin_and_the_filter_audit():
    scenario = parse_scenario(raw("toy_even_smule"))
    parties = InProcessParties(scenario)
    assert parties["B"].twin is not None and parties["A"].twin is None
    reports = {}
    PROTOCOLS.create(scenario.protocol).run(scenario, parties, Channel(), lambda epoch, metrics: reports.update({epoch: metrics}))
    audit = reports[4]["A"].filter
    assert 0 <= audit.recall <= 1 and audit.harm_distilled is not None
    shared = InProcessParties(parse_scenario(raw("toy_shared")))
    assert shared["B"].twin is None  # nothing is answered, so nothing is audited


def test_privacy_reads_the_model_each_party_ends_with_and_regression_knows_no_own_model():
    scenario = parse_scenario(raw("toy_shared", epochs=2))
    models, _ = run_protocol(scenario, {})
    assert models["A"] is models["B"]
    runs = [{("B", "asr_delta"): 0.0, ("A", "asr_delta"): 0.0}]
    assert not [text for text, _ in invariants({"toy": scenario}, {"toy": runs}) if "attacker" in text]
    smule = parse_scenario(raw("toy_even_smule", epochs=2))
    assert [text for text, _ in invariants({"toy": smule}, {"toy": runs}) if "attacker B" in text]

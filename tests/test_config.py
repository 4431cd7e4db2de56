import pytest

from testbed.config import ScenarioError, parse_scenario
from testbed.run import main


def problems_of(raw, overrides=()):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw, list(overrides))
    return dict(info.value.problems)


def test_valid_scenario_fills_defaults(tiny_raw):
    scenario = parse_scenario(tiny_raw)
    assert scenario.scheme.kind == "plaintext"
    assert scenario.parties["A"].model.params.activation == "poly2"
    assert scenario.training.temperature == 2.0


def test_unknown_key_is_named(tiny_raw):
    tiny_raw["training"]["learning_rat"] = 0.1
    assert "training.learning_rat" in problems_of(tiny_raw)


def test_wrong_type_names_key_and_value(tiny_raw):
    tiny_raw["epochs"] = "many"
    message = problems_of(tiny_raw)["epochs"]
    assert "'many'" in message and "integer" in message


def test_unknown_model_lists_allowed(tiny_raw):
    tiny_raw["parties"]["B"]["model"] = {"kind": "resnet"}
    message = problems_of(tiny_raw)["parties.B.model"]
    assert "unknown model 'resnet'" in message and "mlp" in message and "he_cnn" in message


def test_bad_model_parameter_names_it(tiny_raw):
    tiny_raw["parties"]["A"]["model"]["activation"] = "tanh"
    message = problems_of(tiny_raw)["parties.A.model"]
    assert "activation='tanh'" in message and "square" in message


def test_more_samples_than_dataset(tiny_raw):
    tiny_raw["parties"]["A"]["samples"] = 100
    message = problems_of(tiny_raw)["parties.*.samples"]
    assert "A=100, B=50" in message and "150" in message and "120" in message


def test_missing_cifar_copy_fails_validation(tiny_raw, monkeypatch, tmp_path):
    monkeypatch.delenv("SMULE_CIFAR10", raising=False)
    tiny_raw["dataset"] = {"kind": "cifar10", "path": str(tmp_path / "nowhere.zip")}
    assert str(tmp_path / "nowhere.zip") in problems_of(tiny_raw)["dataset"]


def test_attack_on_honest_party_rejected(tiny_raw):
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "label_flip", "source": 0, "target": 1, "rate": 0.1}]
    assert "parties.B.attacks" in problems_of(tiny_raw)


def test_two_prediction_manipulations_rejected(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "scale", "factor": 2, "rate": 1}, {"kind": "noise", "std": 1, "rate": 1}]
    assert "scale, noise" in problems_of(tiny_raw)["parties.B.attacks"]


def test_plain_relu_model_rejected_for_he_scheme_free_for_plaintext(tiny_raw):
    tiny_raw["parties"]["A"]["model"] = {"kind": "mlp", "activation": "relu"}
    assert parse_scenario(tiny_raw).parties["A"].model.params.activation == "relu"  # plaintext runs any torch model
    problems = problems_of(tiny_raw, ["scheme={kind: ckks, mode: accounted, depth: 3}"])
    assert "HE-friendly" in problems["parties.A.model"] and "parties.B.model" not in problems


def test_override_sets_nested_and_list_keys(tiny_raw):
    scenario = parse_scenario(tiny_raw, ["training.temperature=4", "parties.A.model.hidden=[16, 4]", "seed=9"])
    assert scenario.training.temperature == 4.0
    assert scenario.parties["A"].model.params.hidden == [16, 4]
    assert scenario.seed == 9


def test_override_of_bad_value_is_reported(tiny_raw):
    message = problems_of(tiny_raw, ["split.kind=dirichlet", "split.alpha=-1"])["split"]
    assert "alpha=-1" in message and "greater than 0" in message


@pytest.mark.parametrize(
    "edit, key",
    [
        ("epochs: 0", "epochs"),
        ("parties: {A: {samples: 10}}", "parties"),
        ("scheme: {kind: paillier}", "scheme"),
    ],
)
def test_cli_rejects_malformed_scenarios_with_exit_2(tmp_path, capsys, edit, key):
    path = tmp_path / "bad.yaml"
    base = "name: bad\nparties: {A: {samples: 10}, B: {samples: 10}}\n"
    path.write_text(base.replace("parties: {A: {samples: 10}, B: {samples: 10}}", edit) if edit.startswith("parties") else base + edit + "\n")
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"  {key}:" in err
    assert not (tmp_path / "out").exists()


def test_honest_parties_filter_by_default_and_filters_empty_turns_it_off(tiny_raw):
    from testbed.config import DEFAULT_FILTERS

    tiny_raw["parties"]["B"].update(role="malicious", attacks=[{"kind": "class_swap", "source": 0, "target": 1, "rate": 1.0}])
    scenario = parse_scenario(tiny_raw)
    assert [f.dump()["kind"] for f in scenario.parties["A"].filters] == [f["kind"] for f in DEFAULT_FILTERS]
    assert scenario.parties["B"].filters == []  # the attacker does not defend
    assert parse_scenario(tiny_raw, ["parties.A.filters=[]"]).parties["A"].filters == []
    # The resolved scenario names the default explicitly, so re-reading it gives the same run.
    assert parse_scenario(scenario.dump()) == scenario

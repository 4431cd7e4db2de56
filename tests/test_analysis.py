"""Sweeps (variants, resume) and the robustness aggregation and plot."""

import json

import pandas as pd
import pytest
import yaml
from clitools import make_summary

from analysis.figures import harm_figure
from analysis.plot_axes import plan, table_axes
from analysis.sweep import RunsFailed, finished_results, rate_zero, run_sweep, scenario_key, variants, varying_keys
from analysis.sweep import main as sweep_main
from testbed.config import load_scenario, parse_scenario


def test_variants_are_the_grid_product():
    sweep = {"set": ["epochs=2"], "grid": {"a": {"x": ["k=1"], "y": ["k=2"]}, "b": {"u": ["m=1"], "v": ["m=2", "n=3"]}}}
    runs = variants(sweep)
    assert list(runs) == ["a=x,b=u", "a=x,b=v", "a=y,b=u", "a=y,b=v"]
    assert runs["a=y,b=v"] == ({"a": "y", "b": "v"}, ["epochs=2", "k=2", "m=2", "n=3"])


def write_sweep(tmp_path, raw, sweep):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"name": "t", "base": "base.yaml", **sweep}))
    return tmp_path / "sweep.yaml"


def test_sweep_resumes_identical_runs_reruns_changed_ones_and_tabulates(tmp_path, tiny_raw, ray_local):
    grid = {"temp": {"low": ["training.temperature=1"], "high": ["training.temperature=4"]}}
    path = write_sweep(tmp_path, tiny_raw, {"set": ["epochs=2"], "grid": grid})
    out = tmp_path / "out"
    # A finished run of exactly this scenario is kept (its summary is a marker we can recognise).
    done = out / "temp=low"
    done.mkdir(parents=True)
    # Its scenario.yaml predates a key added to the schema since (at its default): still the same run.
    before = {key: value for key, value in load_scenario(tmp_path / "base.yaml", ["epochs=2", "training.temperature=1"]).dump().items() if key != "validation_samples"}
    (done / "scenario.yaml").write_text(yaml.safe_dump(before))
    fake = make_summary({p: {"role": "honest", "accuracy": 0.125, "asr": None} for p in "AB"}, {"bytes_per_epoch": 7, "setup_bytes": 9}, seed=3)
    (done / "summary.json").write_text(json.dumps(fake.written()))
    table = run_sweep(path, out, progress=False)
    low, high = table[table["temp"] == "low"], table[table["temp"] == "high"]
    assert list(low["accuracy"]) == [0.125, 0.125]  # not re-run
    assert (high["bytes_per_epoch"] > 0).all() and set(high["party"]) == {"A", "B"}
    assert json.loads((out / "temp=high" / "status.json").read_text())["state"] == "complete"
    assert pd.read_csv(out / "table.csv").shape == table.shape
    # Every varying scenario key is a column, not only the axis labels.
    assert dict(zip(table["temp"], table["key.training.temperature"])) == {"low": 1.0, "high": 4.0}
    # The definition changes (epochs 2 -> 3, into the same directory): nothing stale is reused.
    path = write_sweep(tmp_path, tiny_raw, {"set": ["epochs=3"], "grid": grid})
    table = run_sweep(path, out, progress=False)
    assert 0.125 not in set(table["accuracy"])
    assert yaml.safe_load((out / "temp=low" / "scenario.yaml").read_text())["epochs"] == 3


def test_reference_keys_do_not_move_when_the_schema_grows(tiny_raw):
    """Rate-0 references live under DIR/rate0/<scenario_key>: the key of a scenario must stay what
    it was before keys such as validation_samples existed (6133ea53ba7c before that key was added),
    and a non-default value of the new key must give another key. The parties' filters are pinned
    to the default of that time (true_label alone): a changed default is a different run."""
    for party in tiny_raw["parties"].values():
        party["filters"] = [{"kind": "true_label"}]
    assert scenario_key(parse_scenario(tiny_raw)) == "6133ea53ba7c"
    assert scenario_key(parse_scenario(tiny_raw, ["validation_samples=10"])) != "6133ea53ba7c"
    assert scenario_key(parse_scenario(tiny_raw, ["network=lan"])) == "6133ea53ba7c" != scenario_key(parse_scenario(tiny_raw, ["network=wan"]))


def test_finished_results_tabulate_a_grid_under_way_without_running(tmp_path, tiny_raw):
    """A run counts once it and its rate-0 reference have finished, as exactly the scenario asked for."""
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "label_flip", "source": 1, "target": 2, "rate": 0.5}]
    scenarios = {"clean": parse_scenario(tiny_raw, ["parties.B.attacks=[]"]), "attacked": parse_scenario(tiny_raw), "other": parse_scenario(tiny_raw, ["epochs=2"])}

    def finish(directory, scenario, accuracy):
        directory.mkdir(parents=True)
        (directory / "scenario.yaml").write_text(yaml.safe_dump(scenario.dump()))
        (directory / "summary.json").write_text(json.dumps(make_summary({"A": {"accuracy": accuracy}}).written()))

    finish(tmp_path / "clean", scenarios["clean"], 0.5)
    finish(tmp_path / "attacked", scenarios["attacked"], 0.25)
    finish(tmp_path / "other", scenarios["clean"], 0.75)  # a run of another definition
    accuracy = lambda summary: summary.parties["A"].accuracy if summary is not None else None  # noqa: E731
    assert {name: tuple(map(accuracy, pair)) for name, pair in finished_results(scenarios, tmp_path).items()} == {"clean": (0.5, None)}  # attacked: no reference yet
    finish(tmp_path / "rate0" / scenario_key(rate_zero(scenarios["attacked"])), rate_zero(scenarios["attacked"]), 0.375)
    assert tuple(map(accuracy, finished_results(scenarios, tmp_path)["attacked"])) == (0.25, 0.375)
    assert "other" not in finished_results(scenarios, tmp_path)


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, tiny_raw, ray_local):
    """One combination fails at run time (accounted CKKS refuses logits scaled beyond its bound)."""
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["scheme"] = {"kind": "ckks", "mode": "accounted", "depth": 3}
    grid = {"factor": {"small": ["parties.B.attacks=[{kind: scale, factor: 2.0, rate: 1.0}]"],
                       "huge": ["parties.B.attacks=[{kind: scale, factor: 100000.0, rate: 1.0}]"]}}
    path = write_sweep(tmp_path, tiny_raw, {"set": ["epochs=2"], "grid": grid})
    with pytest.raises(RunsFailed) as info:
        run_sweep(path, tmp_path / "out", progress=False)
    assert list(info.value.failures) == ["factor=huge"] and "too large" in info.value.failures["factor=huge"]
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert set(table.loc[table["factor"] == "small", "status"]) == {"complete"}
    failed = table[table["factor"] == "huge"]
    assert list(failed["status"]) == ["failed"] and "too large" in failed["error"].item()
    assert json.loads((tmp_path / "out" / "factor=huge" / "status.json").read_text())["state"] == "failed"
    # The CLI: the other runs done, a summary of the failures, exit 1.
    assert sweep_main([str(path), "--out", str(tmp_path / "out")]) == 1


def test_varying_keys_name_what_differs(tiny_raw):
    a = parse_scenario(dict(tiny_raw), ["epochs=2"])
    b = parse_scenario(dict(tiny_raw), ["epochs=3", "seed=5"])
    assert varying_keys({"a": a, "b": b}) == {"a": {"epochs": 2, "seed": 3}, "b": {"epochs": 3, "seed": 5}}


def test_harm_bars_per_attack_and_filter_from_honest_parties():
    table = pd.DataFrame({
        "attack": ["f"] * 8, "filter": ["none", "none", "agr", "agr"] * 2, "seed": ["0"] * 4 + ["1"] * 4,
        "role": ["honest", "malicious"] * 4, "accuracy": [0.8, 0.1, 0.9, 0.1, 0.7, 0.1, 0.9, 0.1],
        "accuracy_delta": [-0.1, 0.0, 0.0, 0.0, -0.2, 0.0, 0.0, 0.0], "asr_delta": [0.5, 1.0, 0.25, 1.0, 0.3, 1.0, 0.25, 1.0],
    })
    layout = plan(table, table_axes(table))
    assert (layout.x, layout.series, layout.fixed) == ([], ["filter"], {"attack": "f"})  # one attack: stated, not a panel
    figure, stats = harm_figure(table, layout)
    assert stats["filter"].tolist() == ["none", "agr"]
    assert stats["accuracy_mean"].tolist() == pytest.approx([0.75, 0.9]) and stats["asr_delta_mean"].tolist() == pytest.approx([0.4, 0.25])
    assert len(figure.axes) == 3 and [round(b.get_height(), 6) for b in figure.axes[2].patches] == [40.0, 25.0]  # points


def test_compare_variants_and_rows(tmp_path, tiny_raw):
    from analysis.compare import comparison_row, protocol_variants

    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreement"}]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    variants = protocol_variants(path, [])
    assert list(variants) == ["smule", "smule_nofilter", "local", "joint", "fedavg"]
    assert variants["smule_nofilter"] == ["parties.A.filters=[]", "parties.B.filters=[]"]  # B filters by default
    summary = make_summary({"A": {"role": "honest", "accuracy": 0.9, "asr": 0.1}, "C": {"role": "honest", "accuracy": 0.7, "asr": 0.3},
                            "B": {"role": "malicious", "accuracy": 0.1, "asr": 1.0}},
                           {"bytes_per_epoch": 10, "rounds_per_epoch": 1, "setup_bytes": 5, "mpc_bytes_per_epoch_model": 99})
    row = comparison_row("joint", summary, None)
    assert row["accuracy"] == pytest.approx(0.8) and row["asr"] == pytest.approx(0.2)
    assert row["asr_delta"] == 0.0
    rate0 = make_summary({"A": {"accuracy": 0.95, "asr": 0.0}, "C": {"accuracy": 0.75, "asr": 0.1}, "B": {"accuracy": 0.9, "asr": 0.0}})
    row = comparison_row("joint", summary, rate0)
    assert row["accuracy_delta"] == pytest.approx(-0.05) and row["asr_delta"] == pytest.approx(0.15)
    assert row["mpc_bytes_per_epoch_model"] == 99 and row["mpc_bytes_per_epoch_measured"] is None


def test_seeds_are_a_first_class_axis():
    runs = variants({"grid": {"a": {"x": ["k=1"]}}, "seeds": [0, 4]})
    assert runs == {"a=x,seed=0": ({"a": "x", "seed": "0"}, ["k=1", "seed=0"]), "a=x,seed=4": ({"a": "x", "seed": "4"}, ["k=1", "seed=4"])}


@pytest.mark.parametrize("sweep, key", [
    ({"name": "t", "base": "base.yaml", "grid": {"a": {"x": []}}, "grdi": {}}, "grdi"),
    ({"name": "t", "base": "base.yaml", "seeds": [0, 0]}, "seeds: repeats seed 0; allowed: each seed once"),  # under its key, not <top>
    ({"name": "t", "base": "base.yaml", "seeds": [1], "grid": {"seed": {"1": ["seed=1"]}}}, "seeds: given both"),
])
def test_sweep_file_mistakes_exit_2_naming_them(tmp_path, tiny_raw, capsys, sweep, key):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_raw))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert sweep_main([str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert key in capsys.readouterr().err and not (tmp_path / "out").exists()

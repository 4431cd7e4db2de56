"""Sweeps (variants, resume) and the robustness aggregation and plot."""

import json

import pandas as pd
import pytest
import yaml

from analysis.plots import honest_means, robustness_figure
from analysis.sweep import run_sweep, variants


def test_variants_are_the_grid_product():
    sweep = {"set": ["epochs=2"], "grid": {"a": {"x": ["k=1"], "y": ["k=2"]}, "b": {"u": ["m=1"], "v": ["m=2", "n=3"]}}}
    runs = variants(sweep)
    assert list(runs) == ["a=x,b=u", "a=x,b=v", "a=y,b=u", "a=y,b=v"]
    assert runs["a=y,b=v"] == ({"a": "y", "b": "v"}, ["epochs=2", "k=2", "m=2", "n=3"])


def test_sweep_resumes_and_tabulates(tmp_path, tiny_raw, ray_local):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_raw))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "t", "base": "base.yaml", "set": ["epochs=2"],
        "grid": {"temp": {"low": ["training.temperature=1"], "high": ["training.temperature=4"]}},
    }))
    out = tmp_path / "out"
    finished = out / "temp=low"
    finished.mkdir(parents=True)
    fake = {"protocol": "smule", "scheme": "plaintext", "communication": {"bytes_per_epoch": 7, "setup_bytes": 9},
            "parties": {p: {"role": "honest", "accuracy": 0.125, "asr": None} for p in "AB"}}
    (finished / "summary.json").write_text(json.dumps(fake))
    table = run_sweep(tmp_path / "sweep.yaml", out, progress=False)
    low, high = table[table["temp"] == "low"], table[table["temp"] == "high"]
    assert list(low["accuracy"]) == [0.125, 0.125]  # not re-run
    assert (high["bytes_per_epoch"] > 0).all() and set(high["party"]) == {"A", "B"}
    assert json.loads((out / "temp=high" / "status.json").read_text())["state"] == "complete"
    assert pd.read_csv(out / "table.csv").shape == table.shape


def test_honest_means_and_figure():
    table = pd.DataFrame({
        "attack": ["f", "f", "f", "f"], "filter": ["none", "none", "agr", "agr"], "role": ["honest", "malicious"] * 2,
        "accuracy": [0.8, 0.1, 0.9, 0.1], "asr": [0.5, 1.0, 0.25, 1.0],
    })
    means = honest_means(table)
    assert means.to_dict("records") == [{"attack": "f", "filter": "none", "accuracy": 0.8, "asr": 0.5},
                                        {"attack": "f", "filter": "agr", "accuracy": 0.9, "asr": 0.25}]
    figure = robustness_figure(means)
    assert len(figure.axes) == 2 and [b.get_height() for b in figure.axes[1].patches] == [0.5, 0.25]


def test_compare_variants_and_rows(tmp_path, tiny_raw):
    from analysis.compare import comparison_row, protocol_variants

    tiny_raw["parties"]["A"]["filters"] = [{"kind": "agreement"}]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    variants = protocol_variants(path, [])
    assert list(variants) == ["smule", "smule_nofilter", "local", "joint", "fedavg"]
    assert variants["smule_nofilter"] == ["parties.A.filters=[]"]
    summary = {
        "parties": {"A": {"role": "honest", "accuracy": 0.9, "asr": 0.1}, "C": {"role": "honest", "accuracy": 0.7, "asr": 0.3},
                    "B": {"role": "malicious", "accuracy": 0.1, "asr": 1.0}},
        "communication": {"bytes_per_epoch": 10, "rounds_per_epoch": 1, "setup_bytes": 5, "mpc_bytes_per_epoch_model": 99},
    }
    row = comparison_row("joint", summary)
    assert row["accuracy"] == pytest.approx(0.8) and row["asr"] == pytest.approx(0.2)
    assert row["mpc_bytes_per_epoch_model"] == 99 and row["mpc_bytes_per_epoch_measured"] is None

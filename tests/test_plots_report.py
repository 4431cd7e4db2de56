"""Loading run directories, aggregation over seeds, the figures' axis rules and the report."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from clitools import make_summary

from analysis import figures, plots, report
from analysis.communication import communication_rows
from analysis.figures import harm_figure, metric_figure
from analysis.load import AggregationError, aggregate, load_runs, load_summaries
from analysis.plot_axes import plan, table_axes


def table_rows(axes: dict, seed: int, accuracy: float, asr_delta: float | None = 0.0, kept: float | None = 1.0) -> list[dict]:
    """One run's two rows (honest A, malicious B) of a sweep table."""
    common = {**axes, "seed": seed, "accuracy_rate0": accuracy, "asr_rate0": 0.0, "filter_precision": 1.0, "filter_recall": 1.0,
              "bytes_per_epoch": 10, "setup_bytes": 5, "protocol": "smule", "scheme": "plaintext"}
    return [{**common, "party": "A", "role": "honest", "accuracy": accuracy, "asr": asr_delta, "accuracy_delta": accuracy - 0.9,
             "asr_delta": asr_delta, "filter_kept": kept},
            {**common, "party": "B", "role": "malicious", "accuracy": 0.1, "asr": 1.0, "accuracy_delta": -0.5, "asr_delta": 1.0, "filter_kept": None}]


def write_run(path, seed: int, accuracies: list[float], state: str = "complete", kept: float = 0.75, measured=None):
    """A run directory as testbed.driver leaves it, two parties (A honest, B malicious)."""
    path.mkdir(parents=True)
    scenario = {"name": "t", "seed": seed, "epochs": len(accuracies), "protocol": {"kind": "smule"}, "scheme": {"kind": "plaintext"},
                "dataset": {"kind": "synthetic"}, "training": {"learning_rate": 0.01},
                "parties": {"A": {"role": "honest", "samples": 40, "filters": []}, "B": {"role": "malicious", "samples": 60, "filters": []}}}
    (path / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    (path / "status.json").write_text(json.dumps({"state": state, "error": None}))
    traffic = {"bytes_sent": 100, "bytes_received": 100, "messages_sent": 1, "messages_received": 1}
    lines = [{"epoch": 0, "party": p, **traffic} for p in "AB"]
    for epoch, accuracy in enumerate(accuracies, start=1):
        lines.append({"epoch": epoch, "party": "A", "accuracy": accuracy, "asr": None, "filter": {"kept": kept, "by_peer": {"B": {"kept": kept}}}, **traffic})
        lines.append({"epoch": epoch, "party": "B", "accuracy": 0.1, "asr": None, "filter": None, **traffic})
    (path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if state == "complete":
        communication = {"setup_bytes": 1000, "bytes_per_epoch": 50, "exchange_epochs": len(accuracies) - 1, "rounds_per_epoch": 1}
        summary = make_summary({"A": {}, "B": {"role": "malicious"}}, communication, seed=seed, epochs=len(accuracies))
        (path / "summary.json").write_text(json.dumps(summary.written()))


def test_aggregate_means_stds_and_counts_over_seeds():
    frame = pd.DataFrame({"defence": ["none"] * 3 + ["agr"] * 2, "seed": [0, 1, 2, 0, 1],
                          "accuracy": [0.7, 0.8, 0.9, 0.5, np.nan], "asr": [0.0, 0.3, 0.6, 1.0, 0.0]})
    stats = aggregate(frame, ["defence"], ["accuracy", "asr"]).set_index("defence")
    assert stats.loc["none", "accuracy_mean"] == pytest.approx(0.8) and stats.loc["none", "accuracy_std"] == pytest.approx(0.1)
    assert stats.loc["none", "asr_std"] == pytest.approx(0.3) and stats.loc["none", "accuracy_n"] == 3
    assert stats.loc["agr", "accuracy_n"] == 1 and stats.loc["agr", "accuracy_mean"] == pytest.approx(0.5)  # NaN left out, not a zero
    assert stats.loc["agr", "asr_mean"] == pytest.approx(0.5) and stats.loc["agr", "asr_n"] == 2


def test_aggregate_refuses_to_average_anything_but_seeds():
    frame = pd.DataFrame({"defence": ["none"] * 4, "lr": ["0.87", "0.1"] * 2, "seed": [0, 0, 1, 1], "accuracy": [0.87, 0.1, 0.87, 0.1]})
    with pytest.raises(AggregationError, match="differ in lr"):
        aggregate(frame, ["defence"], ["accuracy"])
    assert list(aggregate(frame, ["defence", "lr"], ["accuracy"])["accuracy_mean"]) == pytest.approx([0.87, 0.1])


def test_unfamiliar_axes_are_drawn_as_series_then_panels_never_averaged(tmp_path, capsys):
    rows = [row for seed in range(3) for lr, acc in (("0.87", 0.9), ("0.1", 0.3)) for row in table_rows({"attack": "flip", "defence": "none", "lr": lr}, seed, acc)]
    table = pd.DataFrame(rows)
    layout = plan(table, table_axes(table))
    assert (layout.series, layout.defaulted) == (["lr"], ["lr"]) and "lr as series" in layout.footnote()
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    assert plots.main([str(path), "--out", str(tmp_path / "figs"), "--only", "harm"]) == 0
    stats = pd.read_csv(tmp_path / "figs" / "harm.csv", dtype={"lr": str})
    # Each lr keeps its own mean (0.9 and 0.3, never their 0.6 average).
    assert dict(zip(stats["lr"], stats["accuracy_mean"])) == pytest.approx({"0.87": 0.9, "0.1": 0.3})
    # A second unfamiliar axis, or one beside a known series, becomes panels; --facet still chooses.
    rows = [row for seed in range(2) for arm in ("local", "none", "default") for defence in ("a", "b")
            for row in table_rows({"arm": arm, "defence": defence}, seed, 0.5)]
    table = pd.DataFrame(rows)
    assert (plan(table, table_axes(table)).series, plan(table, table_axes(table)).facets) == (["defence"], ["arm"])
    two = pd.DataFrame([{**r, "lr": lr} for r in table_rows({"arm": "x"}, 0, 0.5) + table_rows({"arm": "y"}, 0, 0.5) for lr in ("1", "2")])
    assert (plan(two, table_axes(two)).series, plan(two, table_axes(two)).facets) == (["arm"], ["lr"])
    layout = plan(table, table_axes(table), facet=("defence",))
    assert (layout.series, layout.facets) == (["arm"], ["defence"])


def test_table_without_attack_axis_draws_defences_on_the_x_axis():
    rows = [row for seed in range(2) for defence, acc in (("none", 0.95), ("agreement", 0.93)) for split in ("iid", "dirichlet")
            for row in table_rows({"defence": defence, "split": split}, seed, acc - (0.3 if split == "dirichlet" else 0) + 0.01 * seed)]
    table = pd.DataFrame(rows).astype({"seed": str})
    layout = plan(table, table_axes(table))
    assert (layout.x, layout.series, layout.facets, layout.fixed) == ([], ["defence"], ["split"], {"protocol": "smule", "scheme": "plaintext"})
    fig, stats = harm_figure(table, layout)
    iid, bottom = fig.axes[0], fig.axes[4]  # rows accuracy, accuracy delta, ASR delta; columns split=iid, split=dirichlet
    assert iid.get_title() == "split=iid" and [t.get_text() for t in bottom.get_xticklabels()] == ["none", "agreement"]
    assert [round(bar.get_height(), 6) for bar in iid.patches] == [95.5, 93.5]  # percent, honest party only, mean of 2 seeds
    assert iid.get_ylim()[0] == 0  # accuracy is not drawn from near its minimum
    assert stats["accuracy_n"].tolist() == [2, 2, 2, 2]


def test_all_zero_and_empty_panels_say_so():
    rows = [row for seed in range(2) for defence in ("none", "agreement") for row in table_rows({"defence": defence}, seed, 0.9, asr_delta=None)]
    table = pd.DataFrame(rows).astype({"seed": str})
    fig, _ = harm_figure(table, plan(table, table_axes(table)))
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert texts[1] == ["every value is 0\n(2 of 2 drawn)"]  # accuracy delta: 0.9 - 0.9 everywhere
    assert any("ASR is" in t for t in texts[2]) and texts[2][0].startswith("no values")
    assert not any("every value" in t for t in texts[0])
    lo, hi = fig.axes[1].get_ylim()
    assert lo <= -2 and hi >= 2  # a zero panel is not stretched to fill the axis


def test_rate_axis_is_drawn_as_lines_in_percent():
    rows = [row for seed in range(2) for rate, asr in (("0", 0.0), ("0.1", 0.2), ("0.3", 0.5)) for defence in ("none", "agreement")
            for row in table_rows({"rate": rate, "defence": defence}, seed, 0.9, asr_delta=asr if defence == "none" else 0.0)]
    table = pd.DataFrame(rows).astype({"seed": str})
    layout = plan(table, table_axes(table))
    assert layout.x == ["rate"] and layout.series == ["defence"]
    fig, _ = harm_figure(table, layout)
    none = next(line for line in fig.axes[2].get_lines() if line.get_label() == "none")
    assert list(none.get_xdata()) == [0, 10, 30] and list(none.get_ydata()) == pytest.approx([0, 20, 50])


def test_filter_figure_uses_honest_filtering_parties():
    rows = [row for seed in range(2) for defence, kept in (("none", 1.0), ("agreement", 0.8 + 0.1 * seed)) for row in table_rows({"defence": defence}, seed, 0.9, kept=kept)]
    table = pd.DataFrame(rows).astype({"seed": str})
    _, stats = metric_figure(table, plan(table, table_axes(table)), figures.FILTERS, "t")
    assert stats.set_index("defence")["filter_kept_mean"].to_dict() == pytest.approx({"none": 1.0, "agreement": 0.85})


def test_load_runs_skips_incomplete_runs_and_flattens(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "defence=agr,seed=0", 0, [0.5, 0.7])
    write_run(sweep / "defence=agr,seed=1", 1, [0.6, 0.9])
    write_run(sweep / "defence=agr,seed=2", 2, [0.1], state="running")
    write_run(sweep / "rate0" / "abc", 0, [0.5, 0.8])
    runs = load_runs([sweep])
    assert len(runs.attrs["skipped"]) == 1 and "seed=2 (running)" in runs.attrs["skipped"][0]
    assert set(runs["run"].str.rsplit("/", n=1).str[-1]) == {"defence=agr,seed=0", "defence=agr,seed=1", "abc"}
    assert len(runs) == 3 * 2 * 3  # runs x parties x epochs (0 = setup)
    assert runs.attrs["axes"] == ["defence", "seed"] and "epochs" in runs.columns and "protocol.kind" in runs.columns
    main = runs[~runs["reference"] & (runs["party"] == "A") & (runs["epoch"] == 2)]
    assert main["filter_kept"].tolist() == [0.75, 0.75] and "filter" not in runs.columns and "filter_by_peer_B_kept" in runs.columns
    assert set(main["role"]) == {"honest"} and set(runs.loc[runs["party"] == "B", "role"]) == {"malicious"}
    stats = aggregate(main, ["defence", "epoch"], ["accuracy"])
    assert stats["accuracy_mean"].item() == pytest.approx(0.8) and stats["accuracy_std"].item() == pytest.approx(np.std([0.7, 0.9], ddof=1))


def test_epoch_curves_and_communication_from_run_directories(tmp_path, monkeypatch):
    sweep = tmp_path / "sweep"
    write_run(sweep / "defence=agr,seed=0", 0, [0.5, 0.7])
    write_run(sweep / "defence=agr,seed=1", 1, [0.6, 0.9])
    monkeypatch.setattr(plots, "save", lambda fig, table, out, name: [out / f"{name}.png"])  # rendering is the report test's part
    written, skipped = plots.plot_runs([sweep], tmp_path / "figs")
    assert [w.name for w in written] == ["epochs", "communication"] and skipped == []
    epochs = written[0].table
    assert epochs["accuracy_mean"].tolist() == pytest.approx([0.55, 0.8]) and epochs["accuracy_n"].tolist() == [2, 2]
    ours, notes = communication_rows(load_summaries([sweep]))
    row = ours.iloc[0]
    assert len(ours) == 1 and row["label"] == "SMuLe, plaintext" and row["n"] == 2
    assert row["per_run"] == 1000 + 50 * 1 and row["per_sample_epoch"] == pytest.approx(50 / 100)
    published = written[1].table[written[1].table["source"] != "testbed"]
    assert published["source"].str.contains("Piranha").all() and published["caveat"].str.contains("unit inferred").any()


def make_results(tmp_path):
    results = tmp_path / "results"
    sweep = results / "sweeps" / "s"
    write_run(sweep / "defence=agr,seed=0", 0, [0.5, 0.7])
    write_run(sweep / "defence=agr,seed=1", 1, [0.6, 0.9])
    write_run(sweep / "defence=none,seed=0", 0, [0.5, 0.6])
    write_run(sweep / "defence=none,seed=1", 1, [0.5, 0.8])
    rows = [row for seed in range(2) for defence, acc in (("agr", 0.8), ("none", 0.7)) for row in table_rows({"defence": defence}, seed, acc)]
    pd.DataFrame(rows).to_csv(sweep / "table.csv", index=False)
    return results


def test_report_embeds_each_figure_with_its_data_and_refuses_overwrite(tmp_path, capsys, monkeypatch):
    results = make_results(tmp_path)
    out = tmp_path / "report"
    assert report.main([str(results), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    pngs = sorted(out.rglob("*.png"))
    assert {p.stem for p in pngs} == {"harm", "filters", "epochs", "communication"}
    for png in pngs:
        relative = png.relative_to(out).as_posix()
        assert f"]({relative})" in text and png.with_suffix(".svg").is_file()
        assert f"]({png.with_suffix('.csv').relative_to(out).as_posix()})" in text
        assert f"--only {png.stem}" in text
    # The harm table inline, in the figure's units: mean ± std (n) over the two seeds, accuracy in %, deltas in points.
    assert "| defence | accuracy (%) | accuracy_delta (points) | asr_delta (points) |" in text
    assert "| agr | 80.0 ± 0.0 (2) | -10.0 ± 0.0 (2) | +0.0 ± 0.0 (2) |" in text
    assert "| agr | 1.00 ± 0.00 (2) |" in text  # shares (the filter table) as drawn
    before = (out / "report.md").read_text()
    capsys.readouterr()
    assert report.main([str(results), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "report.md").read_text() == before
    monkeypatch.setattr(report, "build", lambda results, out: ("rebuilt", []))  # drawing it all again would only cost time
    assert report.main([str(results), "--out", str(out), "--overwrite"]) == 0 and (out / "report.md").read_text() == "rebuilt\n"


def test_report_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    assert report.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no table.csv or comparison.csv" in err and "Traceback" not in err and not (tmp_path / "empty" / "report").exists()

"""analysis.frontier on hand-made sweep tables: the share of the gain kept, the worst-case harm
and the attack behind it, the rule that chooses the default, and the inputs it refuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import frontier

# Honest accuracy per (defence, seed), one honest party A (and B on the gain side, both honest).
GAIN = {
    "local": [0.60, 0.62],
    "none": [0.70, 0.66],  # gains 10 and 4 points: 7 on average
    "strict": [0.59, 0.62],  # -1 and 0: keeps -0.5/7 of the mean gain
    "keeper": [0.68, 0.65],  # 8 and 3: keeps 5.5/7
}
# Honest (ASR delta, accuracy delta) per (attack, defence, seed), as fractions.
HARM = {
    ("flip", "none"): [(0.20, -0.01), (0.30, -0.03)],
    ("push", "none"): [(0.05, -0.30), (0.10, -0.24)],
    ("flip", "strict"): [(0.01, 0.0), (0.01, -0.01)],
    ("push", "strict"): [(0.00, -0.01), (0.02, -0.02)],
    ("flip", "keeper"): [(0.00, 0.0), (0.02, 0.0)],
    ("push", "keeper"): [(0.04, -0.01), (0.06, 0.0)],
}


def gain_table(tmp_path: Path, arms: dict = GAIN, name: str = "gain") -> Path:
    rows = [
        {"defence": arm, "split": "dirichlet0.3", "party": party, "role": "honest", "seed": seed, "accuracy": acc, "status": "complete"}
        for arm, accs in arms.items() for seed, acc in enumerate(accs) for party in "AB"
    ]
    return write(tmp_path / name / "table.csv", rows)


def harm_table(tmp_path: Path, harm: dict = HARM, reference: bool = True, name: str = "harm") -> Path:
    rows = []
    for (attack, defence), runs in harm.items():
        for seed, (asr, acc) in enumerate(runs):
            rows.append({"attack": attack, "defence": defence, "party": "A", "role": "honest", "seed": seed, "accuracy": 0.6 + acc,
                         "asr": 0.1 + asr, "accuracy_delta": acc, "asr_delta": asr, "accuracy_rate0": 0.6, "asr_rate0": 0.1,
                         "reference": f"rate0/{attack}{defence}{seed}" if reference else None, "status": "complete"})
            rows.append({**rows[-1], "party": "B", "role": "malicious", "asr_delta": 0.9})
    return write(tmp_path / name / "table.csv", rows)


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_share_kept_and_worst_case_harm_by_hand(tmp_path):
    gain, harm = frontier.read_tables([gain_table(tmp_path), harm_table(tmp_path)])
    points = frontier.frontier(frontier.gain_points(gain), frontier.harm_points(harm)).set_index("defence")
    assert points.loc["none", "kept_mean"] == pytest.approx(1.0)
    assert points.loc["keeper", "kept_mean"] == pytest.approx(5.5 / 7)
    assert points.loc["keeper", "kept_std"] == pytest.approx(pd.Series([0.8, 0.75]).std())
    assert points.loc["strict", "kept_mean"] == pytest.approx(-0.5 / 7)
    assert points.loc["keeper", "gain_mean"] == pytest.approx(5.5)
    # Per attack the larger of the two means (flip: ASR 25; push: accuracy loss 27), then the worst attack.
    assert points.loc["none", "worst_harm"] == pytest.approx(27.0) and points.loc["none", "worst_attack"] == "harm: attack=push"
    assert points.loc["strict", "worst_harm"] == pytest.approx(1.5) and points.loc["strict", "worst_by"] == "accuracy loss"
    assert points.loc["keeper", "worst_harm"] == pytest.approx(5.0) and points.loc["keeper", "worst_by"] == "ASR delta"
    assert points.loc["keeper", "worst_attack"] == "harm: attack=push" and points.loc["keeper", "attacks"] == 2
    # The malicious party's own ASR delta (0.9) never enters.
    assert points["worst_harm"].max() < 90


def test_the_rule_takes_the_most_gain_within_the_bound(tmp_path):
    gain, harm = frontier.read_tables([gain_table(tmp_path), harm_table(tmp_path)])
    points = frontier.frontier(frontier.gain_points(gain), frontier.harm_points(harm))
    assert frontier.choose(points, "split=dirichlet0.3", 2.0)["defence"] == "strict"
    assert frontier.choose(points, "split=dirichlet0.3", 5.0)["defence"] == "keeper"
    fallback = frontier.choose(points, "split=dirichlet0.3", 1.0)  # none within: the least harm
    assert fallback["defence"] == "strict" and not fallback["within_bound"]
    assert frontier.choose(points, "split=other", 2.0) is None
    front = frontier.pareto(points[points["setting"] == "split=dirichlet0.3"])
    assert list(front["defence"]) == ["strict", "keeper", "none"]


def test_command_writes_the_table_figure_and_the_chosen_default(tmp_path, capsys):
    out = tmp_path / "out"
    assert frontier.main([str(gain_table(tmp_path)), str(harm_table(tmp_path)), "--out", str(out), "--bound", "5"]) == 0
    text = (out / "frontier.md").read_text()
    assert "Chosen: **keeper**, keeping 79% of the gain" in text and "harm: attack=push" in text
    assert {p.name for p in out.iterdir()} >= {"frontier.md", "frontier.csv", "frontier.png", "frontier.svg"}
    assert frontier.main([str(gain_table(tmp_path)), str(harm_table(tmp_path)), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_report_has_every_attack_against_every_defence(tmp_path):
    out = tmp_path / "out"
    assert frontier.main([str(gain_table(tmp_path)), str(harm_table(tmp_path)), "--out", str(out)]) == 0
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in (out / "frontier.md").read_text().split("## Harm of every attack")[1].splitlines()
            if line.startswith("| harm: ")}
    header = ["keeper", "none", "strict"]  # pivot columns, sorted
    # push through none: ASR 7.5 points, accuracy loss 27 points -> the loss; flip through keeper: ASR 1 point.
    assert dict(zip(header, rows["harm: attack=push"]))["none"] == "27a"
    assert dict(zip(header, rows["harm: attack=flip"]))["keeper"] == "1"


def refusal(tmp_path, capsys, *args) -> str:
    assert frontier.main([*map(str, args), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "frontier.md").exists()
    return capsys.readouterr().err


@pytest.mark.parametrize("missing", ["local", "none"])
def test_a_gain_table_without_its_local_or_no_filter_arm_is_refused(tmp_path, capsys, missing):
    arms = {k: v for k, v in GAIN.items() if k != missing}
    err = refusal(tmp_path, capsys, gain_table(tmp_path, arms), harm_table(tmp_path))
    assert f"no '{missing}' arm" in err and "split=dirichlet0.3" in err


def test_harm_rows_without_a_rate_zero_reference_are_refused(tmp_path, capsys):
    err = refusal(tmp_path, capsys, gain_table(tmp_path), harm_table(tmp_path, reference=False))
    assert "no rate-0 reference" in err and "attack=flip" in err
    table = pd.read_csv(harm_table(tmp_path, name="old")).drop(columns=["accuracy_delta", "reference"])
    write(tmp_path / "old" / "table.csv", table.to_dict("records"))
    assert "no rate-0 reference" in refusal(tmp_path, capsys, gain_table(tmp_path), tmp_path / "old" / "table.csv")


def test_missing_sides_files_and_settings_are_named(tmp_path, capsys):
    assert "no harm table" in refusal(tmp_path, capsys, gain_table(tmp_path))
    assert "no gain table" in refusal(tmp_path, capsys, harm_table(tmp_path))
    assert "no such table" in refusal(tmp_path, capsys, tmp_path / "nope.csv")
    garbage = tmp_path / "garbage" / "table.csv"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00\xff not, a\ntable")
    assert "not a sweep table" in refusal(tmp_path, capsys, garbage, harm_table(tmp_path))
    no_defence = write(tmp_path / "nd" / "table.csv", [{"role": "honest", "accuracy": 0.5, "seed": 0}])
    assert "no 'defence' axis" in refusal(tmp_path, capsys, no_defence, harm_table(tmp_path))
    err = refusal(tmp_path, capsys, gain_table(tmp_path), harm_table(tmp_path), "--choose-on", "split=iid")
    assert "no such setting" in err and "split=dirichlet0.3" in err
    assert "--bound" in refusal(tmp_path, capsys, gain_table(tmp_path), harm_table(tmp_path), "--bound", "nan")


def test_gain_map_reports_each_arm_against_local_per_setting(tmp_path, capsys):
    from analysis import gain

    out = tmp_path / "gainout"
    assert gain.main([str(gain_table(tmp_path)), "--out", str(out)]) == 0
    text = (out / "gain.md").read_text()
    # none: 10 and 4 points -> 7.0 +- 4.2; keeper: 8 and 3 -> 5.5 +- 3.5
    assert "| split=dirichlet0.3 | 2 | 61.0 | 68.0 +- 2.8 | **+7.0 +- 4.2** |" in text and "+5.5 +- 3.5" in text
    assert gain.main([str(harm_table(tmp_path)), "--out", str(tmp_path / "g2")]) == 2
    assert "reads clean sweeps only" in capsys.readouterr().err

    only_none = tmp_path / "only_none"
    assert gain.main([str(gain_table(tmp_path, {"local": GAIN["local"], "none": GAIN["none"]}, name="g3")), "--out", str(only_none)]) == 0
    table = [line for line in (only_none / "gain.md").read_text().splitlines() if line.startswith("|")]
    assert {line.count("|") for line in table} == {6}  # five columns on every line, no empty sixth


def test_a_setting_whose_gain_is_within_noise_has_no_share_to_keep(tmp_path):
    small = {"local": [0.60, 0.60], "none": [0.605, 0.61], "keeper": [0.60, 0.61]}  # +0.75 points
    gain, harm = frontier.read_tables([gain_table(tmp_path, small), harm_table(tmp_path)])
    points = frontier.gain_points(gain).set_index("defence")
    assert points["kept_mean"].isna().all() and points.loc["none", "full_gain_mean"] == pytest.approx(0.75)
    assert frontier.gain_points(gain, min_gain=0.5).set_index("defence").loc["keeper", "kept_mean"] == pytest.approx(0.5 / 0.75)

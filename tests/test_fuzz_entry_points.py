"""Issue 26: a Hypothesis fuzz test per entry point, like testbed.run's in test_hardening.py.

Each draws command-line arguments and malformed input files (sweep files, scenarios, tables,
baselines, meta.json, the CIFAR-10 copy) and output locations (fresh, a file, a dangling link,
below a file, empty, unwritable) and asserts: exit status 0, 1 or 2, no traceback, the inputs
untouched and nothing written outside the output root (:class:`clitools.Sandbox`). Long
computations are replaced by fakes that write what the real ones would, so a case that passes
validation costs milliseconds (the tables' figures are drawn for real).
"""

import io
import json
import zipfile

import pandas as pd
import pytest
import yaml
from clitools import BASE, FUZZ, GARBAGE, OUTPUTS, PLAUSIBLE, SCALARS, VALUES, call, fake_run_scenarios, load_bench, sandbox, scenario_cases, set_path, yaml_text
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from analysis import compare, frontier, gain, plots, privacy, regress, report, robustness
from analysis import sweep as sweep_cli
from analysis.privacy_runs import prepare_out

def fuzzed(main, args: list[str], box) -> int:
    inputs = box.snapshot()
    code, _, err = call(main, args)
    box.check(code, err, inputs)
    return code


def optional(flag: str, values) -> st.SearchStrategy[list[str]]:
    """``[]`` or ``[flag, value]``."""
    return st.just([]) | values.map(lambda value: [flag, value])


NUMBERS = st.sampled_from(["0", "1", "2", "-1", "x", "1.5", "99999999999", ""])


# --- analysis.sweep ---------------------------------------------------------------------------

SWEEP_KEYS = ["name", "base", "set", "grid", "grid.t", "grid.t.low", "grid.party", "grid.a.b", "seeds", "bogus"]


@st.composite
def sweep_cases(draw):
    raw = {"name": "s", "base": "base.yaml", "grid": {"t": {"low": ["training.temperature=1"], "high": ["training.temperature=3"]}}, "seeds": [0]}
    for path, value in draw(st.lists(st.tuples(st.sampled_from(SWEEP_KEYS), VALUES | st.sampled_from(PLAUSIBLE).map(lambda o: [o])), max_size=3)):
        set_path(raw, path, value)
    return raw, draw(OUTPUTS | st.none()), draw(optional("--parallel", NUMBERS))


@settings(FUZZ, max_examples=40)
@given(case=sweep_cases())
def test_fuzzed_sweeps_fail_cleanly_inside_the_root(case, monkeypatch):
    monkeypatch.setattr(sweep_cli, "run_scenarios", fake_run_scenarios)
    raw, out, extra = case
    if (text := yaml_text(raw)) is None:
        return
    with sandbox() as box:
        box.write("base.yaml", yaml.safe_dump(BASE))
        args = [str(box.write("sweep.yaml", text)), *extra] + (["--out", box.output_argument(out)] if out else [])
        if fuzzed(sweep_cli.main, args, box) == 0:
            assert any(p.name == "table.csv" for p in box.out.rglob("*"))


# --- analysis.compare and analysis.privacy audit / flood: a scenario and --set ---------------

@settings(FUZZ, max_examples=30)
@given(case=scenario_cases(), out=OUTPUTS | st.none(), extra=optional("--parallel", NUMBERS))
def test_fuzzed_comparisons_fail_cleanly_inside_the_root(case, out, extra, monkeypatch):
    monkeypatch.setattr(sweep_cli, "run_scenarios", fake_run_scenarios)
    raw, overrides, _ = case
    if (text := yaml_text(raw)) is None:
        return
    with sandbox() as box:
        args = [str(box.write("s.yaml", text)), *extra, *(a for o in overrides for a in ("--set", o))]
        args += ["--out", box.output_argument(out)] if out else []
        if fuzzed(compare.main, args, box) == 0:
            assert any(p.name == "comparison.csv" for p in box.out.rglob("*"))


def fake_audit(base, seeds, *args):
    """What audit and flood leave: their results directory, checked and prepared as the real ones do."""
    out, overwrite = args[-2:] if isinstance(args[-1], bool) else args[-3:-1]
    prepare_out(out, ("meta.json",), overwrite)
    (out / "meta.json").write_text(json.dumps({"kind": "audit", "setting": "fake", "seeds": seeds}))


@settings(FUZZ, max_examples=30)
@given(case=scenario_cases(), command=st.sampled_from(["audit", "flood"]), out=OUTPUTS | st.none(),
       extra=st.lists(st.sampled_from(["--seeds", "0", "-1", "4294967296", "--threads", "0", "--references", "3", "--nonmembers", "10",
                                       "--levels", "nan", "-0.5", "0.1", "--error-samples", "--overwrite"]), max_size=4))
def test_fuzzed_privacy_runs_fail_cleanly_inside_the_root(case, command, out, extra, monkeypatch):
    monkeypatch.setattr(privacy, "audit", fake_audit)
    monkeypatch.setattr(privacy, "flood", fake_audit)
    monkeypatch.setattr(privacy.torch, "set_num_threads", lambda n: None)  # the session's one thread stays
    raw, overrides, _ = case
    if (text := yaml_text(raw)) is None:
        return
    with sandbox() as box:
        args = [command, str(box.write("s.yaml", text)), *extra, *(a for o in overrides for a in ("--set", o))]
        fuzzed(privacy.main, args + (["--out", box.output_argument(out)] if out else []), box)


# --- tables: robustness, plots, report, frontier, gain ----------------------------------------

def sweep_table(attack: bool) -> str:
    """A sweep table as analysis.sweep writes it: defences local, none and default over two seeds,
    an honest A, and B malicious under an ``attack`` axis (rows carry their rate-0 reference)."""
    rows = []
    for seed in range(2):
        for defence, accuracy in (("local", 0.6), ("none", 0.7), ("default", 0.65)):
            for party, role in (("A", "honest"), ("B", "malicious" if attack else "honest")):
                rows.append({**({"attack": "flip"} if attack else {}), "defence": defence, "party": party, "role": role, "seed": seed,
                             "accuracy": accuracy + 0.01 * seed, "asr": 0.1, "accuracy_rate0": 0.7, "asr_rate0": 0.05,
                             "accuracy_delta": accuracy - 0.7, "asr_delta": 0.05, "filter_kept": 0.9, "filter_precision": 1.0,
                             "filter_recall": 1.0, "filter_dropped_useful": 0.0, "bytes_per_epoch": 10, "setup_bytes": 5,
                             "protocol": "smule", "scheme": "plaintext", "reference": f"rate0/{defence}{seed}" if attack else "",
                             "status": "complete", "error": ""})
    return pd.DataFrame(rows).to_csv(index=False)


@st.composite
def tables(draw, attack: bool = True):
    """A sweep table: as written, without a column, with a cell replaced, cut short, or garbage."""
    how = draw(st.sampled_from(["valid", "drop", "cell", "cut", "garbage"]))
    if how == "garbage":
        return draw(GARBAGE)
    frame = pd.read_csv(io.StringIO(sweep_table(attack))).astype(object)
    if how == "drop":
        frame = frame.drop(columns=[draw(st.sampled_from(list(frame.columns)))])
    if how == "cell":
        frame.iat[draw(st.integers(0, len(frame) - 1)), draw(st.integers(0, len(frame.columns) - 1))] = draw(SCALARS)
    text = frame.to_csv(index=False)
    return text[: draw(st.integers(0, len(text)))] if how == "cut" else text


@settings(FUZZ, max_examples=30)
@given(contents=st.lists(tables(), min_size=1, max_size=2), out=OUTPUTS | st.none(), missing=st.booleans())
def test_fuzzed_robustness_tables_fail_cleanly_inside_the_root(contents, out, missing):
    with sandbox() as box:
        paths = [str(box.write(f"s{i}/table.csv", text)) for i, text in enumerate(contents)] + (["nowhere.csv"] if missing else [])
        args = paths + (["--out", box.output_argument(out)] if out else ["--out", str(box.out)])
        fuzzed(robustness.main, args, box)


AXES = st.sampled_from(["defence", "attack", "party", "seed", "nope", "split"])


@settings(FUZZ, max_examples=20)
@given(content=tables(), out=OUTPUTS, extra=st.lists(
    st.tuples(st.sampled_from(["--facet", "--series", "--select", "--only"]),
              AXES | st.sampled_from(["defence=none", "defence=x", "harm", "filters", "epochs", "bogus", "="])), max_size=2))
def test_fuzzed_plots_fail_cleanly_inside_the_root(content, out, extra):
    with sandbox() as box:
        args = [str(box.write("sweep/table.csv", content)), "--out", box.output_argument(out), *(a for pair in extra for a in pair)]
        fuzzed(plots.main, args, box)


COMPARISON = "protocol,accuracy,asr,bytes_per_epoch\nsmule,0.9,,10\nlocal,0.8,,0\n"


@settings(FUZZ, max_examples=12)
@given(content=tables(), comparison=st.none() | st.just(COMPARISON) | GARBAGE, out=OUTPUTS | st.none(), overwrite=st.booleans())
def test_fuzzed_reports_fail_cleanly_inside_the_root(content, comparison, out, overwrite):
    with sandbox() as box:
        box.write("results/sweep/table.csv", content)
        if comparison is not None:
            box.write("results/compare/comparison.csv", comparison)
        args = [str(box.inputs / "results")] + ["--out", box.output_argument(out) if out else str(box.out / "report")]
        fuzzed(report.main, args + (["--overwrite"] if overwrite else []), box)


@settings(FUZZ, max_examples=20)
@given(gains=tables(attack=False), harms=tables(), out=OUTPUTS, extra=st.lists(
    st.sampled_from(["--bound", "2", "-1", "nan", "inf", "--choose-on", "bogus", "--overwrite"]), max_size=3))
def test_fuzzed_frontiers_fail_cleanly_inside_the_root(gains, harms, out, extra):
    with sandbox() as box:
        args = [str(box.write("gain/table.csv", gains)), str(box.write("harm/table.csv", harms)), "--out", box.output_argument(out), *extra]
        fuzzed(frontier.main, args, box)


@settings(FUZZ, max_examples=20)
@given(content=tables(attack=False), out=OUTPUTS, overwrite=st.booleans())
def test_fuzzed_gain_maps_fail_cleanly_inside_the_root(content, out, overwrite):
    with sandbox() as box:
        args = [str(box.write("gain/table.csv", content)), "--out", box.output_argument(out)] + (["--overwrite"] if overwrite else [])
        fuzzed(gain.main, args, box)


# --- analysis.regress: arguments and baselines ------------------------------------------------

@st.composite
def baselines(draw):
    committed = regress.BASELINE.read_text()
    how = draw(st.sampled_from(["committed", "nan", "swap", "drop", "garbage"]))
    if how == "garbage":
        return draw(GARBAGE)
    frame = pd.read_csv(io.StringIO(committed)).astype(object)
    row = draw(st.integers(0, len(frame) - 1))
    if how == "nan":
        frame.loc[row, draw(st.sampled_from(["lower", "upper", "mean"]))] = draw(st.sampled_from(["nan", "inf", "x", ""]))
    if how == "swap":
        frame.loc[row, ["lower", "upper"]] = frame.loc[row, ["upper", "lower"]].to_numpy()
    if how == "drop":
        frame = frame.drop(columns=[draw(st.sampled_from(list(frame.columns)))])
    return frame.to_csv(index=False)


@settings(FUZZ, max_examples=25)
@given(baseline=baselines(), out=OUTPUTS | st.none(), update=st.booleans(), extra=st.lists(
    st.sampled_from(["--only", "clean", "flip_default", "bogus", "--seeds", "--parallel", "0", "1", "5", "x"]), max_size=4))
def test_fuzzed_regressions_fail_cleanly_inside_the_root(baseline, out, update, extra, monkeypatch):
    monkeypatch.setattr(regress, "run_scenarios", fake_run_scenarios)
    monkeypatch.setattr(regress, "sample_sizes", lambda scenario: {"test": 100, "probe": 10, **{name: 50 for name in scenario.parties}})
    with sandbox() as box:
        path = box.write("baseline.csv", baseline)
        args = [*extra, "--baseline", str(box.out / "baseline.csv") if update else str(path)] + (["--update"] if update else [])
        fuzzed(regress.main, args + (["--out", box.output_argument(out)] if out else []), box)


# --- analysis.privacy report ------------------------------------------------------------------

FLOOD_META = json.dumps({"kind": "flood", "setting": "synthetic, 2 x 40", "seeds": [0, 1]})
FLOOD = {
    "flood": "setting,seed,flood_std,party,accuracy\n" + "".join(f"s,{seed},{level},A,{0.9 - level / 10 - seed / 100}\n" for seed in (0, 1) for level in (0.0, 0.1)),
    "flood_flags": "setting,seed,flood_std,querier,responder,flagged\n" + "".join(f"s,{seed},{level},A,B,{level}\n" for seed in (0, 1) for level in (0.0, 0.1)),
    "ckks_error": "",
}


@settings(FUZZ, max_examples=25)
@given(meta=st.just(FLOOD_META) | st.just('{"kind": "audit", "setting": "s"}') | GARBAGE | VALUES.map(json.dumps),
       damaged=st.sampled_from([None, *FLOOD]), damage=GARBAGE, tables_out=OUTPUTS, figures_out=OUTPUTS, overwrite=st.booleans())
def test_fuzzed_privacy_reports_fail_cleanly_inside_the_root(meta, damaged, damage, tables_out, figures_out, overwrite):
    with sandbox() as box:
        box.write("flood/meta.json", meta)
        for name, text in FLOOD.items():
            box.write(f"flood/{name}.csv", damage if name == damaged else text)
        args = ["report", str(box.inputs / "flood"), "--tables", box.output_argument(tables_out), "--figures", box.output_argument(figures_out)]
        fuzzed(privacy.main, args + (["--overwrite"] if overwrite else []), box)


# --- bench/ckks.py and bench/cifar10.py -------------------------------------------------------

@pytest.fixture(scope="module")
def ckks_bench():
    return load_bench("ckks")


@settings(FUZZ, max_examples=25)
@given(out=OUTPUTS | st.just("json"), extra=st.lists(st.sampled_from(["--quick", "--cifar", "he_cnn", "shallow", "bogus"]), max_size=3))
def test_fuzzed_ckks_bench_arguments_fail_cleanly_inside_the_root(ckks_bench, out, extra, monkeypatch):
    case = {"throughput_samples_per_s": 1.0, "max_abs_error": 0.0, "argmax_agreement": 1.0,
            "bytes": {"setup_accounted": 1, "answer_accounted": 1, "setup_real": 1, "answer_real": 1}}
    monkeypatch.setattr(ckks_bench, "digits_case", lambda: case)
    monkeypatch.setattr(ckks_bench, "cifar_data", lambda: None)
    monkeypatch.setattr(ckks_bench, "cifar_case", lambda *args, **kwargs: case)
    with sandbox() as box:
        target = str(box.out / "ckks.json") if out == "json" else box.output_argument(out)
        if fuzzed(ckks_bench.main, ["--out", target, *extra], box) == 0:
            assert json.loads((box.out / "ckks.json").read_text())["quick"] == ("--quick" in extra) if out == "json" else True


def tiny_cifar_zip() -> bytes:
    """An ImageFolder zip of two 32x32 JPEGs: a CIFAR-10 copy that passes validation."""
    image, archive = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (32, 32)).save(image, format="JPEG")
    with zipfile.ZipFile(archive, "w") as zipped:
        for member in ("train/cat/0.jpg", "test/dog/0.jpg"):
            zipped.writestr(member, image.getvalue())
    return archive.getvalue()


@pytest.fixture(scope="module")
def cifar_bench():
    return load_bench("cifar10")


@settings(FUZZ, max_examples=25)
@given(data=st.sampled_from(["zip", "garbage", "missing", "directory"]), out=OUTPUTS, extra=st.lists(st.sampled_from(
    ["--seeds", "0", "-1", "1", "--protocols", "smule", "mpc", "--scenarios", "clean", "dirty", "--parallel", "0", "--table-only",
     "--set", "epochs=2", "epochs=x", "parties.A.samples=1"]), max_size=4))
def test_fuzzed_cifar10_bench_arguments_fail_cleanly_inside_the_root(cifar_bench, data, out, extra, monkeypatch):
    monkeypatch.setattr(cifar_bench, "run_scenarios", fake_run_scenarios)
    with sandbox() as box:
        path = {"zip": box.write("cifar.zip", tiny_cifar_zip()), "garbage": box.write("cifar.zip", b"PK\x03\x04 not a zip"),
                "missing": box.inputs / "nowhere.zip", "directory": box.inputs}[data]
        fuzzed(cifar_bench.main, ["--data", str(path), "--out", box.output_argument(out), *extra], box)

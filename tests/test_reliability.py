"""Issue 26: every entry point as strict as testbed.run, inputs checked before compute is spent,
signals during Ray's start-up, and one ASR per attack. Each defect of the issue has a test here
(named after it); the fuzz tests per entry point are in test_fuzz_entry_points.py."""

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import pandas as pd
import pytest
import yaml
from clitools import BASE, ROOT, call, load_bench, make_summary
from PIL import Image

from analysis import figures, plot_axes, plots, privacy, regress, report
from analysis import sweep as sweep_cli
from analysis.regress import invariants, metrics_of, read_baseline
from analysis.sweep import summary_rows
from testbed import driver
from testbed.attackers import success_probes
from testbed.cli import interruptible
from testbed.cluster import _signals_deferred, ray_utils
from testbed.config import ScenarioError, parse_scenario
from testbed.datasets import load_data
from testbed.files import read_json_lines
from testbed.inprocess import InProcessParties
from testbed.memory import machine_memory_mb
from testbed.result_schema import Summary
from testbed.results import RunDirectory, read_status
from testbed.run import main


def no_run(*args, **kwargs):
    raise AssertionError("an invalid input reached the computation")


def files_under(path):
    return {p for p in path.rglob("*") if p.is_file()}


def scenario_file(tmp_path, raw=None):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw or BASE))
    return path


def run_cli(tmp_path, monkeypatch, *args):
    """testbed.run in ``tmp_path`` with the driver replaced: validation only."""
    monkeypatch.setattr(driver, "run_scenario", no_run)
    monkeypatch.chdir(tmp_path)
    return call(main, [str(a) for a in args])


# --- 1. signals during Ray's start-up ---------------------------------------------------------

def test_1_signals_during_ray_init_are_held_and_delivered_to_our_handler_after_it():
    """The mechanism, without Ray: inside the window a signal only records itself, Ray cannot
    install its handlers, and our handler (KeyboardInterrupt) runs as the window closes."""
    before, rays = signal.getsignal(signal.SIGTERM), ray_utils.set_sigterm_handler
    with interruptible() as received, pytest.raises(KeyboardInterrupt):
        ours = signal.getsignal(signal.SIGTERM)
        with _signals_deferred():
            ray_utils.set_sigterm_handler(lambda *a: os._exit(99))  # what ray.init does: a no-op here
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)  # a handler that raised would have done so by now
            reached = True
        pytest.fail("the held signal was not delivered")
    assert reached and received == ["SIGTERM"]  # the first signal, once, to our handler
    assert ours is not before and signal.getsignal(signal.SIGTERM) is before and ray_utils.set_sigterm_handler is rays


def _spawn(args, tmp_path, ray_tmp):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "RAY_TMPDIR": ray_tmp}
    return subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ray_processes(ray_tmp: str) -> list[int]:
    """Processes started for this run's Ray (their command lines name its temporary directory)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if ray_tmp.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _assert_interrupted_without_orphans(proc, out, ray_tmp):
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "received at time" not in err  # no SystemExit, no C++ crash dump
    assert read_status(out)["state"] == "interrupted" and not (out / "summary.json").exists()
    deadline = time.monotonic() + 60  # Ray's processes end shortly after the driver
    while _ray_processes(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _ray_processes(ray_tmp)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


#: SIGTERM inside ray.init, right after its core worker started: the moment Ray's C++ crash
#: handler (a stack dump, then an abort 3 s later) and its Python handlers (exit without cleanup) held.
INSIDE_INIT = textwrap.dedent("""
    import os, signal, sys, time
    import ray._private.worker as worker
    connect = worker.connect
    def connect_then_signal(*args, **kwargs):
        result = connect(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(4)  # past the crash handler's 3 s alarm, still inside ray.init
        return result
    worker.connect = connect_then_signal
    from testbed.run import main
    sys.exit(main(sys.argv[1:]))
""")


def test_1_sigterm_inside_ray_init_exits_130_interrupted_without_orphans(tmp_path):
    scenario = scenario_file(tmp_path, {**BASE, "epochs": 10000})
    out = tmp_path / "run"
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as ray_tmp:  # short: Ray's socket paths are bounded
        proc = _spawn(["-c", INSIDE_INIT, str(scenario), "--out", str(out), "--quiet"], tmp_path, ray_tmp)
        _assert_interrupted_without_orphans(proc, out, ray_tmp)


@pytest.mark.slow
@pytest.mark.parametrize("sig, offset", [(signal.SIGTERM, s) for s in (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)] + [(signal.SIGINT, 1.0)])
def test_1_signal_at_offsets_into_start_up_exits_130_without_orphans(tmp_path, sig, offset):
    scenario = scenario_file(tmp_path, {**BASE, "epochs": 10000})
    out = tmp_path / "run"
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as ray_tmp:
        proc = _spawn(["-m", "testbed.run", str(scenario), "--out", str(out), "--quiet"], tmp_path, ray_tmp)
        deadline = time.monotonic() + 300
        while (read_status(out) or {}).get("state") != "running" and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(offset)
        proc.send_signal(sig)
        _assert_interrupted_without_orphans(proc, out, ray_tmp)


# --- 2-4. what validation can know ------------------------------------------------------------

def _jpeg(size=32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (10, 20, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("first, content, expected", [
    ("test/cat/0001.jpg", b"<html>not an image</html>", "test/cat/0001.jpg is not a decodable image"),
    ("train/cat/0001.jpg", _jpeg(8), "train/cat/0001.jpg is 8x8 pixels; allowed: 32x32"),
])
def test_2_cifar_zip_of_undecodable_images_is_refused_at_validation_naming_the_member(tmp_path, monkeypatch, first, content, expected):
    archive = tmp_path / "cifar.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for member in ("test/cat/0001.jpg", "test/cat/0002.jpg", "train/cat/0001.jpg", "train/dog/0002.jpg"):
            zipped.writestr(member, content if member == first else _jpeg())
    scenario = scenario_file(tmp_path)
    code, _, err = run_cli(tmp_path, monkeypatch, scenario, "--set", f"dataset={{kind: cifar10, path: '{archive}'}}", "--set", "parties.A.model.hidden=[2]")
    assert code == 2 and "Traceback" not in err
    assert f"dataset: CIFAR-10 at {archive}: {expected}" in err


def test_2_a_valid_image_zip_passes_validation(tmp_path):
    archive = tmp_path / "cifar.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for member in ("test/cat/0001.jpg", "train/dog/0002.jpg"):
            zipped.writestr(member, _jpeg())
    parse_scenario({**BASE, "dataset": {"kind": "cifar10", "path": str(archive)}})


def test_3_one_sample_with_batch_norm_is_refused_at_validation(tiny_raw):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw, ["parties.A.samples=1", "parties.A.model.batch_norm=true"])
    (key, message), = info.value.problems
    assert key == "parties.A.samples" and "Expected more than 1 value per channel" in message and "allowed: at least 2 samples" in message
    parse_scenario(tiny_raw, ["parties.A.samples=2", "parties.A.model.batch_norm=true"])  # two train a batch-norm model
    parse_scenario(tiny_raw, ["parties.A.samples=1"])  # one trains a model without batch-norm


def test_4_object_store_is_bounded_by_the_machines_memory(tiny_raw):
    total = machine_memory_mb()
    parse_scenario(tiny_raw, [f"ray.object_store_mb={total}"])
    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw, ["ray.object_store_mb=100000000"])
    (key, message), = info.value.problems
    assert key == "ray.object_store_mb" and f"allowed: 100..{total}" in message and "100000000" in message


# --- 5-6. output locations of testbed.run -----------------------------------------------------

def test_5_empty_out_is_refused_and_nothing_is_written_in_the_working_directory(tmp_path, monkeypatch):
    scenario = scenario_file(tmp_path)
    code, _, err = run_cli(tmp_path, monkeypatch, scenario, "--out", "")
    assert code == 2 and "argument --out: '' is an empty path" in err
    assert files_under(tmp_path) == {scenario}


def test_6_out_a_dangling_link_is_refused_naming_its_target(tmp_path, monkeypatch):
    scenario = scenario_file(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "run")
    code, _, err = run_cli(tmp_path, monkeypatch, scenario, "--out", tmp_path / "link")
    assert code == 2 and "File exists" not in err
    assert f"--out {tmp_path / 'link'}: {tmp_path / 'link'} is a symbolic link to {tmp_path / 'gone' / 'run'}, which does not exist" in err
    assert not (tmp_path / "gone").exists()


# --- 7-9. sweeps ------------------------------------------------------------------------------

def _sweep(tmp_path, text):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "sweep.yaml").write_text(text)
    return tmp_path / "sweep.yaml"


def test_7_sweep_with_an_empty_axis_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_cli, "run_scenarios", no_run)
    path = _sweep(tmp_path, "name: s\nbase: base.yaml\ngrid: {a: {}}\n")
    code, _, err = call(sweep_cli.main, [str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "Traceback" not in err
    assert "grid.a: Dictionary should have at least 1 item" in err
    assert not (tmp_path / "out").exists()


def test_8_sweep_out_a_file_exits_2_naming_it_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_cli, "run_scenarios", no_run)
    path = _sweep(tmp_path, "name: s\nbase: base.yaml\ngrid: {a: {x: [epochs=2]}}\n")
    (tmp_path / "taken").write_text("mine")
    code, _, err = call(sweep_cli.main, [str(path), "--out", str(tmp_path / "taken")])
    assert code == 2 and f"--out {tmp_path / 'taken'}: {tmp_path / 'taken'} is a file; allowed: a directory" in err
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("axis", ["party", "role", "accuracy", "asr_delta", "status", "filter_kept"])
def test_9_an_axis_named_after_a_table_column_is_refused(tmp_path, monkeypatch, axis):
    monkeypatch.setattr(sweep_cli, "run_scenarios", no_run)
    path = _sweep(tmp_path, f"name: s\nbase: base.yaml\ngrid: {{{axis}: {{x: [epochs=2]}}}}\n")
    code, _, err = call(sweep_cli.main, [str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and f"'{axis}' is a column of the sweep table" in err and not (tmp_path / "out").exists()


def test_9_protocol_and_scheme_axes_label_their_rows():
    summary = make_summary({"A": {"role": "honest", "accuracy": 0.9, "asr": None}}, {"bytes_per_epoch": 1, "setup_bytes": 2}, scheme="ckks")
    (row,) = summary_rows({"protocol": "smule_nofilter", "scheme": "ckks_real"}, summary)
    assert (row["party"], row["protocol"], row["scheme"]) == ("A", "smule_nofilter", "ckks_real")


# --- 10-11. the report ------------------------------------------------------------------------

def test_10_report_on_a_garbage_table_exits_2_naming_it_and_writes_nothing(tmp_path):
    table = tmp_path / "results" / "sweep" / "table.csv"
    table.parent.mkdir(parents=True)
    table.write_bytes(b'a,b\n"unclosed,1\n\x00\xff,,,\n')
    code, _, err = call(report.main, [str(tmp_path / "results"), "--out", str(tmp_path / "report")])
    assert code == 2 and "Traceback" not in err and str(table) in err
    assert not (tmp_path / "report").exists()


def test_11_report_out_a_file_exits_2_naming_it(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "file").write_text("mine")
    code, _, err = call(report.main, [str(tmp_path / "results"), "--out", str(tmp_path / "file")])
    assert code == 2 and "Traceback" not in err and f"--out {tmp_path / 'file'}" in err
    assert (tmp_path / "file").read_text() == "mine"


# --- 12-13. the regression baseline is read first ---------------------------------------------

BASELINE = "scenario,party,metric,mean,sd,seeds,lower,upper,band\nclean,A,accuracy,0.9,0.01,5,0.87,0.93,rule\n"


@pytest.mark.parametrize("text, expected", [
    ("scenario,party,metric,mean\nclean,A,accuracy,0.9\n", "no 'lower', 'upper', 'band' column"),
    ("", "no header line"),
    ('scenario,party\n"unclosed\n\x00', "line"),
    (BASELINE.replace("0.87,0.93", "nan,nan"), "data row 1, column 'lower': nan; allowed: finite numbers"),
    (BASELINE.replace("0.87,0.93", "0.93,0.87"), "lower > upper"),
    (BASELINE.splitlines()[0] + "\n", "no rows"),
])
def test_12_13_a_malformed_baseline_exits_2_before_the_suite_runs(tmp_path, monkeypatch, text, expected):
    monkeypatch.setattr(regress, "run_scenarios", no_run)
    monkeypatch.setattr(regress, "suite", no_run)
    baseline = tmp_path / "baseline.csv"
    baseline.write_text(text)
    code, _, err = call(regress.main, ["--baseline", str(baseline), "--out", str(tmp_path / "out")])
    assert code == 2 and "Traceback" not in err and expected in err and str(baseline) in err
    assert not (tmp_path / "out").exists()


def test_12_the_committed_baseline_reads():
    assert len(read_baseline(regress.BASELINE)) > 100


# --- 14. the privacy report -------------------------------------------------------------------

@pytest.mark.parametrize("meta", ["{not json", "[]", '{"kind": "other", "setting": "s"}', '{"kind": "audit"}'])
def test_14_privacy_report_on_an_invalid_meta_json_exits_2_naming_it(tmp_path, meta):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").write_text(meta)
    code, _, err = call(privacy.main, ["report", str(tmp_path / "run"), "--tables", str(tmp_path / "t"), "--figures", str(tmp_path / "f")])
    assert code == 2 and "Traceback" not in err and f"{tmp_path / 'run' / 'meta.json'}: malformed" in err
    assert not (tmp_path / "t").exists()


# --- 15-16. bench/ckks.py checks its arguments before running ---------------------------------

@pytest.mark.parametrize("where", ["directory", "proc", "under-file"])
def test_15_bench_ckks_out_is_checked_before_the_benchmark_runs(tmp_path, monkeypatch, where):
    ckks = load_bench("ckks")
    monkeypatch.setattr(ckks, "digits_case", no_run)
    monkeypatch.setattr(ckks, "cifar_data", no_run)
    (tmp_path / "file").write_text("mine")
    out = {"directory": tmp_path, "proc": "/proc/smule/ckks.json", "under-file": tmp_path / "file" / "ckks.json"}[where]
    code, _, err = call(ckks.main, ["--out", str(out), "--quick"])
    assert code == 2 and "Traceback" not in err and f"--out {out}" in err


def test_16_bench_ckks_quick_and_cifar_do_not_combine(tmp_path, monkeypatch):
    ckks = load_bench("ckks")
    monkeypatch.setattr(ckks, "digits_case", no_run)
    code, _, err = call(ckks.main, ["--out", str(tmp_path / "x.json"), "--quick", "--cifar", "he_cnn"])
    assert code == 2 and "--cifar he_cnn: --quick runs the digits case only" in err and not (tmp_path / "x.json").exists()


# --- 17. messages -----------------------------------------------------------------------------

def test_17_messages_say_what_is_allowed_in_words_that_work(tiny_raw, tmp_path, monkeypatch):
    def problem(*overrides):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(dict(tiny_raw), list(overrides))
        return dict(info.value.problems)

    # A quoted integer: the hint is a number that validates (3.0e+2 would be a float).
    hint = problem("parties.A.samples='30'")["parties.A.samples"]
    assert "e.g. 30" in hint and "1.0e+6" not in hint
    parse_scenario(tiny_raw, ["parties.A.samples=30"])
    assert "ASCII letters" in problem("name=é")["name"]
    assert "ASCII letters" in problem("parties={é: {samples: 5}, B: {samples: 5}}")["parties.é"]
    finite = problem("training.weight_decay=.inf")["training.weight_decay"]
    assert finite.count("finite") == 1
    assert "he_convnet" in problem("scheme=ckks", "parties.A.model.activation=relu")["parties.A.model"]
    # --results-root errors name --results-root, not --out.
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(tmp_path, monkeypatch, scenario_file(tmp_path), "--results-root", tmp_path / "file")
    assert code == 2 and err.startswith(f"--results-root {tmp_path / 'file'}") and "--out" not in err
    # One key twice in --set: refused, not the last silently winning.
    code, _, err = run_cli(tmp_path, monkeypatch, scenario_file(tmp_path), "--set", "epochs=2", "--set", "epochs=3")
    assert code == 2 and "epochs given twice ('epochs=2', then 'epochs=3'); allowed: each key once" in err
    # The report on a file says so.
    code, _, err = call(report.main, [str(tmp_path / "file")])
    assert code == 2 and "is a file, not a directory" in err


def test_17_a_truncated_table_row_is_refused_not_called_incomplete(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("defence,seed,party,role,accuracy,status\nnone,0,A,honest,0.9,complete\nnone,1,A,hon\n")
    code, _, err = call(plots.main, [str(path), "--out", str(tmp_path / "figs")])
    assert code == 2 and "line 3 has 4 fields, the header 6: truncated" in err and "did not complete" not in err
    assert not (tmp_path / "figs").exists()


# --- 18. every sweep is drawn -----------------------------------------------------------------

def test_18_the_report_draws_a_sweep_with_an_unfamiliar_axis(tmp_path):
    from test_plots_report import table_rows

    sweep = tmp_path / "results" / "skew"
    sweep.mkdir(parents=True)
    rows = [row for seed in range(2) for arm, acc in (("local", 0.6), ("none", 0.7), ("default", 0.65), ("divergence", 0.68))
            for row in table_rows({"arm": arm}, seed, acc + 0.01 * seed)]
    pd.DataFrame(rows).to_csv(sweep / "table.csv", index=False)
    code, _, err = call(report.main, [str(tmp_path / "results"), "--out", str(tmp_path / "report")])
    assert code == 0, err
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Not drawn:** " not in text and (tmp_path / "report" / "skew" / "harm.png").is_file()
    assert "| local | 60.5 ± 0.7 (2) |" in text  # accuracy in %, one decimal


# --- 19. one ASR per attack -------------------------------------------------------------------

TWO_ATTACKERS = {
    **BASE, "epochs": 2, "dataset": {"kind": "synthetic", "train_samples": 150, "test_samples": 60, "classes": 3, "side": 3},
    "parties": {
        "A": {"samples": 50, "model": {"kind": "mlp", "hidden": [8]}},
        "B": {"samples": 50, "role": "malicious", "model": {"kind": "mlp", "hidden": [8]},
              "attacks": [{"kind": "backdoor_patch", "rate": 0.5, "target": 1, "size": 1}]},
        "D": {"samples": 50, "role": "malicious", "model": {"kind": "mlp", "hidden": [8]},
              "attacks": [{"kind": "label_flip", "rate": 0.3, "source": 0, "target": 2}]},
    },
}


def test_19_every_targeted_attack_has_its_own_asr_in_the_summary_and_metrics(tmp_path):
    scenario = parse_scenario(TWO_ATTACKERS)
    summary = driver.run_scenario(scenario, RunDirectory(tmp_path / "run"), progress=False, placement=InProcessParties)
    probes = success_probes(scenario, load_data(scenario))
    assert list(probes) == ["B/backdoor_patch", "D/label_flip"]
    assert (probes["B/backdoor_patch"].target, probes["D/label_flip"].target) == (1, 2)
    for name, party in summary.parties.items():
        assert party.asr is None  # ambiguous with two attacks
        assert set(party.asr_by_attack) == {"B/backdoor_patch", "D/label_flip"}
        assert all(0.0 <= v <= 1.0 for v in party.asr_by_attack.values())
    lines = [m for m in read_json_lines(tmp_path / "run" / "metrics.jsonl") if m["epoch"] == 2]
    assert {m["party"]: m["asr_by_attack"] for m in lines} == {n: p.asr_by_attack for n, p in summary.parties.items()}
    # The success of the label flip is what D's probe measures: source-class samples called the target.
    flipped = summary.parties["A"].asr_by_attack["D/label_flip"]
    assert flipped * len(probes["D/label_flip"].x) == pytest.approx(round(flipped * len(probes["D/label_flip"].x)))


def test_19_one_targeted_attack_keeps_the_single_asr_and_kinds_twice_get_a_suffix(tiny_raw):
    raw = {**tiny_raw, "parties": {**tiny_raw["parties"], "B": {**tiny_raw["parties"]["B"], "role": "malicious", "attacks": [
        {"kind": "label_flip", "rate": 0.1, "source": 0, "target": 1}, {"kind": "label_flip", "rate": 0.1, "source": 2, "target": 1}]}}}
    scenario = parse_scenario(raw)
    assert list(success_probes(scenario, load_data(scenario))) == ["B/label_flip", "B/label_flip#2"]
    single = parse_scenario(raw, ["parties.B.attacks=[{kind: label_flip, rate: 0.1, source: 0, target: 1}]"])
    party = InProcessParties(single)["A"]
    result = party.evaluate()
    assert list(result.asr_by_attack) == ["B/label_flip"] and result.asr == result.asr_by_attack["B/label_flip"]


def _two_attack_summary(asr_a: dict, asr_b: dict) -> Summary:
    return make_summary({"A": {"role": "honest", "accuracy": 0.9, "asr": None, "asr_by_attack": asr_a},
                         "B": {"role": "malicious", "accuracy": 0.8, "asr": None, "asr_by_attack": asr_b}},
                        {"bytes_per_epoch": 1, "setup_bytes": 2, "messages_per_epoch": 2, "rounds_per_epoch": 1})


def test_19_sweep_tables_regression_and_plots_read_each_attack():
    run = _two_attack_summary({"B/backdoor_patch": 0.30, "D/label_flip": 0.10}, {"B/backdoor_patch": 0.95, "D/label_flip": 0.05})
    rate0 = _two_attack_summary({"B/backdoor_patch": 0.10, "D/label_flip": 0.05}, {"B/backdoor_patch": 0.10, "D/label_flip": 0.05})
    a, b = summary_rows({"attack": "both"}, run, rate0)
    assert a["asr"] is None and a["asr_delta"] is None
    assert a["asr:B/backdoor_patch"] == 0.30 and a["asr_rate0:B/backdoor_patch"] == 0.10
    assert a["asr_delta:B/backdoor_patch"] == pytest.approx(0.20) and a["asr_delta:D/label_flip"] == pytest.approx(0.05)
    metrics = metrics_of(run, rate0)
    assert metrics["A", "asr_delta:B/backdoor_patch"] == pytest.approx(0.20) and ("A", "asr") not in metrics
    assert metrics["B", "asr_delta:B/backdoor_patch"] == pytest.approx(0.85)
    # The invariants read the attack's own value: B's backdoor works on B; A holds under the default.
    scenarios = {"patch_default": parse_scenario(TWO_ATTACKERS, ["parties.B.attacks.0.rate=0.3"])}
    checks = dict(invariants(scenarios, {"patch_default": [metrics]}))
    assert any("attacker B's own ASR delta +0.850 (B/backdoor_patch)" in text and holds for text, holds in checks.items())
    assert any("honest A's ASR delta +0.200 (B/backdoor_patch)" in text and not holds for text, holds in checks.items())
    # The harm figure draws one ASR row per attack where a run has several.
    table = pd.DataFrame([{**row, "seed": str(seed)} for seed in range(2) for row in summary_rows({"defence": "none"}, run, rate0)])
    assert [m.column for m in figures.asr_metrics(table)] == ["asr_delta:B/backdoor_patch", "asr_delta:D/label_flip"]
    fig, stats = figures.harm_figure(table, plot_axes.plan(table, plot_axes.table_axes(table)))
    assert stats["asr_delta:B/backdoor_patch_mean"].item() == pytest.approx(0.20) and len(fig.axes) == 4
    single = table.drop(columns=[c for c in table if c.endswith("D/label_flip")])
    assert [m.column for m in figures.asr_metrics(single)] == ["asr_delta"]

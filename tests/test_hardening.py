"""Issue 11: every malformed input exits 2 with one line per problem, signals and hangs end a run
cleanly, writes stay inside their results root, reruns keep earlier results until they complete,
and results are strict JSON."""

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from clitools import BASE, fake_summary, scenario_cases
from hypothesis import HealthCheck, given, settings

from analysis import sweep as sweep_cli
from testbed import driver, results
from testbed.cluster import PartyFailure
from testbed.config import parse_scenario
from testbed.files import read_json_lines
from testbed.inprocess import InProcessParties
from testbed.results import ResultsPathError, RunDirectory, inside
from testbed.run import main

ROOT = Path(__file__).resolve().parent.parent


def no_run(*args, **kwargs):
    raise AssertionError("an invalid input reached the driver")


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def assert_clean_failure(err: str, key: str):
    assert "Traceback" not in err
    assert key in err, err


# --- every malformed input exits 2 -----------------------------------------------------------

# (id, text written as the scenario file or None for BASE, --set overrides, the key the message names)
SCENARIO_PROBES = [
    ("unclosed-list", None, ["epochs=[1"], "epochs"),
    ("colon-in-string", None, ["description=a: b: c"], "description"),
    ("negative-width", None, ["parties.A.model.hidden=[-5]"], "parties.A.model"),
    ("width-1e11-string", None, ["parties.A.model.hidden=[1e11]"], "parties.A.model"),
    ("width-1e11-float", None, ["parties.A.model.hidden=[1.0e+11]"], "parties.A.model"),
    ("width-1e11-int", None, ["parties.A.model.hidden=[100000000000]"], "parties.A.model"),
    ("kernel-too-large", None, ["dataset=digits", "parties.A.model={kind: he_cnn, kernel: 20}"], "parties.A.model"),
    ("pool-too-large", None, ["dataset=digits", "parties.A.model={kind: he_cnn, kernel: 3, pool: 9}"], "parties.A.model"),
    ("zero-channels", None, ["parties.A.model={kind: relu_cnn, channels: [0]}"], "parties.A.model"),
    ("inf-weight-decay", None, ["training.weight_decay=.inf"], "training.weight_decay"),
    ("inf-mutual-weight", None, ["training.mutual_weight=.inf"], "training.mutual_weight"),
    ("inf-temperature", None, ["training.temperature=.inf"], "training.temperature"),
    ("nan-learning-rate", None, ["training.learning_rate=.nan"], "training.learning_rate"),
    ("inf-attack-rate", None, ["parties.B.role=malicious", "parties.B.attacks=[{kind: scale, factor: .inf, rate: 1}]"], "parties.B.attacks"),
    ("bool-epochs", None, ["epochs=true"], "epochs"),
    ("bool-samples", None, ["parties.A.samples=yes"], "parties.A.samples"),
    ("bool-width", None, ["parties.A.model.hidden=[true]"], "parties.A.model"),
    ("fraction-samples", None, ["parties.A.samples=1.5"], "parties.A.samples"),
    ("string-epochs", None, ["epochs='10'"], "epochs"),
    ("duplicate-key", "name: tiny\nepochs: 3\nepochs: 30\nparties: {A: {samples: 5}, B: {samples: 5}}\n", [], "epochs"),
    ("duplicate-key-flow", "name: tiny\nparties: {A: {samples: 5}, A: {samples: 6}, B: {samples: 5}}\n", [], "'A'"),
    ("divergence-both", None, ["parties.A.filters=[{kind: divergence, threshold: 0.5, percentile: 90}]"], "parties.A.filters.0"),
    ("rate-of-missing-attack", None, ["parties.B.attacks.0.rate=0.3"], "parties.B.attacks"),
    ("list-index-out-of-range", None, ["parties.A.model.hidden.5=1"], "parties.A.model.hidden.5"),
    ("key-below-a-number", None, ["epochs.x=1"], "epochs"),
    ("no-equals", None, ["epochs"], "epochs"),
    ("empty-key", None, ["training..x=1"], "training..x"),
    ("unknown-key", None, ["training.nope=1"], "training.nope"),
    ("name-dotdot", None, ["name=.."], "name"),
    ("name-traversal", None, ["name=../x"], "name"),
    ("name-absolute", None, ["name=/tmp/x"], "name"),
    ("name-empty", None, ["name=''"], "name"),
    ("name-hidden", None, ["name=.x"], "name"),
    ("party-name-space", None, ["parties.A B.samples=5"], "parties.A B"),
    ("party-not-mapping", None, ["parties.A=5"], "parties.A"),
    ("no-parties", None, ["parties={}"], "parties"),
    ("bad-role", None, ["parties.A.role=attacker"], "parties.A.role"),
    ("attack-on-honest", None, ["parties.A.attacks=[{kind: label_flip, source: 0, target: 1, rate: 0.1}]"], "parties.A.attacks"),
    ("attack-class-out-of-range", None, ["parties.B.role=malicious", "parties.B.attacks=[{kind: label_flip, source: 0, target: 9, rate: 0.1}]"], "parties.B.attacks.0"),
    ("too-many-samples", None, ["parties.A.samples=1000"], "parties.*.samples"),
    ("warmup-too-long", None, ["training.warmup_epochs=3"], "training.warmup_epochs"),
    ("ckks-relu", None, ["scheme=ckks", "parties.A.model.activation=relu"], "parties.A.model"),
    ("unknown-protocol", None, ["protocol=bogus"], "protocol"),
    ("bad-split", None, ["split={kind: dirichlet, alpha: 0}"], "split"),
    ("bad-optimizer", None, ["training.optimizer=rmsprop"], "training.optimizer"),
    ("seed-too-large", None, ["seed=4294967296"], "seed"),
    ("negative-seed", None, ["seed=-1"], "seed"),
    ("ray-address-malformed", None, ["ray.address=nohost"], "ray.address"),
    ("ray-address-bad-port", None, ["ray.address=localhost:99999"], "ray.address"),
    ("object-store-too-small", None, ["ray.object_store_mb=1"], "ray.object_store_mb"),
    ("empty-file", "", [], "<top>"),
    ("top-level-list", "- a\n- b\n", [], "<top>"),
    ("yaml-syntax", "name: [tiny\n", [], "scenario.yaml"),
    ("python-tag", "name: !!python/object/apply:os.system [echo]\n", [], "scenario.yaml"),
    ("nested-too-deeply", "[" * 5000 + "]" * 5000, [], "scenario.yaml"),
]


@pytest.mark.parametrize("text, overrides, key", [p[1:] for p in SCENARIO_PROBES], ids=[p[0] for p in SCENARIO_PROBES])
def test_malformed_scenario_exits_2_naming_the_key(tmp_path, monkeypatch, capsys, text, overrides, key):
    monkeypatch.setattr(driver, "run_scenario", no_run)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(BASE) if text is None else text)
    args = [str(path), "--results-root", str(tmp_path / "results")] + [a for o in overrides for a in ("--set", o)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert_clean_failure(err, key)
    assert files_under(tmp_path) == {path}  # nothing written


def test_cross_field_problems_are_reported_with_schema_errors(tiny_raw):
    from testbed.config import ScenarioError

    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw, ["epochs=0", "parties.A.samples=1000", "training.temperature=.inf", "parties.B.model.hidden=[-1]"])
    keys = [key for key, _ in info.value.problems]
    assert set(keys) == {"epochs", "training.temperature", "parties.B.model", "parties.*.samples"}
    # A cross-field check reading an invalid key is skipped, not run on a substituted default.
    with pytest.raises(ScenarioError) as info:
        parse_scenario(tiny_raw, ["epochs=0", "training.warmup_epochs=5"])
    assert [key for key, _ in info.value.problems] == ["epochs"]


def test_messages_name_the_key_the_value_and_the_fix(tiny_raw):
    from testbed.config import ScenarioError

    def problems(overrides):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(copy.deepcopy(tiny_raw), overrides)
        return dict(info.value.problems)

    divergence = problems(["parties.A.filters=[{kind: divergence, threshold: 0.5, percentile: 90}]"])["parties.A.filters.0"]
    assert divergence.startswith("filter 'divergence': give exactly one of threshold or percentile")
    assert "'threshold': 0.5" in divergence and "={" not in divergence and "Value error" not in divergence
    attacks = problems(["parties.B.attacks.0.rate=0.3"])["parties.B.attacks"]
    assert "is not set" in attacks and "--set 'parties.B.attacks=[...]'" in attacks and "valid list" not in attacks
    assert "a boolean, not a number" in problems(["epochs=true"])["epochs"]
    assert "finite" in problems(["training.weight_decay=.inf"])["training.weight_decay"]
    assert "whole numbers unquoted, in digits, e.g. 100000000000" in problems(["parties.A.model.hidden=[1e11]"])["parties.A.model"]
    assert "1.0e+6" in problems(["training.temperature='1e6'"])["training.temperature"]
    assert "quote a string" in problems(["description=a: b: c"])["description"]
    assert "allowed: kernel <= 3" in problems(["parties.A.model={kind: he_cnn, kernel: 20}"])["parties.A.model"]


def test_cifar10_path_must_have_the_layout(tmp_path, tiny_raw, monkeypatch, capsys):
    monkeypatch.setattr(driver, "run_scenario", no_run)
    monkeypatch.delenv("SMULE_CIFAR10", raising=False)
    not_cifar = tmp_path / "notes.txt"
    not_cifar.write_text("not CIFAR-10")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    wrong_zip = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong_zip, "w") as archive:
        archive.writestr("train/cat/0.jpg", b"")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    for copy_path, expected in [(not_cifar, "neither"), (empty_dir, "data_batch_1"), (wrong_zip, "for test")]:
        assert main([str(path), "--set", f"dataset={{kind: cifar10, path: '{copy_path}'}}"]) == 2
        err = capsys.readouterr().err
        assert_clean_failure(err, "dataset")
        assert expected in err and str(copy_path) in err


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_out_that_cannot_hold_results_exits_2(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setattr(driver, "run_scenario", no_run)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    existing = tmp_path / "existing"
    existing.write_text("a file")
    out = {"file": existing, "under-file": existing / "run", "proc": Path("/proc/smule-run")}[where]
    assert main([str(scenario), "--out", str(out)]) == 2
    assert_clean_failure(capsys.readouterr().err, str(out))
    assert existing.read_text() == "a file"


SWEEP_PROBES = [
    ("missing-file", None, [], "cannot read the sweep file"),
    ("yaml-error", "name: s\nbase: [\n", [], "not valid YAML"),
    ("duplicate-key", "name: s\nname: t\nbase: base.yaml\n", [], "duplicate key 'name'"),
    ("no-name", "base: base.yaml\n", [], "name: required"),
    ("no-base", "name: s\n", [], "base: required"),
    ("base-missing", "name: s\nbase: nowhere.yaml\n", [], "base: no scenario file"),
    ("not-a-mapping", "- name\n", [], "<top>"),
    ("unknown-key", "name: s\nbase: base.yaml\ngird: {}\n", [], "gird: unknown key"),
    ("name-traversal", "name: ../../x\nbase: base.yaml\n", [], "name:"),
    ("variant-traversal", "name: s\nbase: base.yaml\ngrid: {a: {x/../../y: [epochs=1]}}\n", [], "grid.a"),
    ("axis-with-equals", "name: s\nbase: base.yaml\ngrid: {'a=b': {x: [epochs=1]}}\n", [], "grid"),
    ("overrides-not-list", "name: s\nbase: base.yaml\ngrid: {a: {x: epochs=1}}\n", [], "grid.a.x"),
    ("invalid-variant", "name: s\nbase: base.yaml\ngrid: {a: {x: [epochs=0]}}\n", [], "a=x: epochs"),
    ("parallel-0", "name: s\nbase: base.yaml\n", ["--parallel", "0"], "--parallel"),
    ("parallel-word", "name: s\nbase: base.yaml\n", ["--parallel", "many"], "--parallel"),
]


@pytest.mark.parametrize("text, args, expected", [p[1:] for p in SWEEP_PROBES], ids=[p[0] for p in SWEEP_PROBES])
def test_malformed_sweep_exits_2(tmp_path, monkeypatch, capsys, text, args, expected):
    monkeypatch.setattr(sweep_cli, "run_scenarios", no_run)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "sweep.yaml"
    if text is not None:
        path.write_text(text)
    before = files_under(tmp_path)
    try:
        code = sweep_cli.main([str(path), "--out", str(tmp_path / "out"), *args])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    assert_clean_failure(capsys.readouterr().err, expected)
    assert files_under(tmp_path) == before


# --- paths stay inside their root -----------------------------------------------------------

def test_writes_resolve_inside_the_results_root(tmp_path):
    root = tmp_path / "results"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    assert inside(root, root / "a" / "b") == root / "a" / "b"
    for escaping in (root / ".." / "x", root / "link" / "run", Path("/tmp")):
        with pytest.raises(ResultsPathError):
            inside(root, escaping)
    with pytest.raises(ValueError):
        results.default_run_dir(root, "..", 0)
    assert results.default_run_dir(root, "ok.name", 0).parent == root / "ok.name"
    with pytest.raises(ValueError, match="cannot name a directory"):
        sweep_cli.variants({"grid": {"a": {"x/../../y": ["epochs=1"]}}})


def test_scenario_directory_linked_outside_the_root_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(driver, "run_scenario", no_run)
    root, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "tiny").symlink_to(elsewhere)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    assert main([str(scenario), "--results-root", str(root)]) == 2
    assert_clean_failure(capsys.readouterr().err, "outside the results root")
    assert not any(elsewhere.iterdir())


# --- reruns keep the earlier results until they complete ------------------------------------

def test_overwrite_keeps_earlier_results_until_the_rerun_completes(tmp_path, monkeypatch, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**BASE, "epochs": 2}))
    out = tmp_path / "run"
    monkeypatch.setattr(driver, "RayParties", InProcessParties)
    assert main([str(scenario), "--out", str(out), "--quiet"]) == 0
    first = (out / "summary.json").read_text()
    (out / "notes.txt").write_text("mine")  # not the run's: never touched

    class Failing(InProcessParties):
        def gather(self, phase, calls):
            if phase == "train":
                raise PartyFailure("B", phase, RuntimeError("boom"))
            return super().gather(phase, calls)

    monkeypatch.setattr(driver, "RayParties", Failing)
    assert main([str(scenario), "--out", str(out), "--quiet", "--overwrite", "--set", "seed=4"]) == 1
    err = capsys.readouterr().err
    assert "earlier results in" in err and "kept" in err
    assert (out / "summary.json").read_text() == first
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    staged = tmp_path / ".run.overwrite"
    assert json.loads((staged / "status.json").read_text())["state"] == "failed"

    monkeypatch.setattr(driver, "RayParties", InProcessParties)
    assert main([str(scenario), "--out", str(out), "--quiet", "--overwrite", "--set", "seed=4"]) == 0
    assert json.loads((out / "summary.json").read_text())["seed"] == 4
    assert yaml.safe_load((out / "scenario.yaml").read_text())["seed"] == 4
    assert len(read_json_lines(out / "metrics.jsonl")) == 2 * 3  # the new run's lines only: 2 parties, setup and 2 epochs
    assert (out / "notes.txt").read_text() == "mine"
    assert not staged.exists()


# --- results are strict JSON ----------------------------------------------------------------

def test_non_finite_numbers_are_written_as_null(tmp_path):
    out = RunDirectory(tmp_path / "run")
    out.write_json("x.json", {"loss": math.nan, "nested": [math.inf, 1.5], "ok": 2})
    out.append_lines("x.jsonl", [{"loss": -math.inf}])

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))

    assert strict((tmp_path / "run" / "x.json").read_text()) == {"loss": None, "nested": [None, 1.5], "ok": 2}
    assert strict((tmp_path / "run" / "x.jsonl").read_text()) == {"loss": None}


# --- property-based: random scenarios and overrides -----------------------------------------

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=scenario_cases())
def test_fuzzed_scenarios_and_overrides_fail_cleanly_inside_the_root(case):
    raw, overrides, give_out = case

    def fake_run(scenario, out, progress=True):
        out.write_yaml("scenario.yaml", scenario.dump())
        summary = fake_summary(scenario)
        out.complete(summary)
        return summary

    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        scenario = base / "scenario.yaml"
        try:
            scenario.write_text(yaml.safe_dump(raw, allow_unicode=True))
        except (yaml.YAMLError, UnicodeEncodeError):
            return
        root = base / "results"
        args = [str(scenario), "--quiet", "--results-root", str(root)] + [a for o in overrides for a in ("--set", o)]
        if give_out:
            args += ["--out", str(root / "run")]
        saved = driver.run_scenario
        driver.run_scenario = fake_run
        stderr, sys.stderr = sys.stderr, __import__("io").StringIO()
        stdout, sys.stdout = sys.stdout, __import__("io").StringIO()
        try:
            try:
                code = main(args)
            except SystemExit as exit:
                code = exit.code
            err = sys.stderr.getvalue()
        finally:
            driver.run_scenario, sys.stderr, sys.stdout = saved, stderr, stdout
        assert code in (0, 1, 2), (code, err)
        assert "Traceback" not in err
        assert all(p == scenario or p.resolve().is_relative_to(root.resolve()) for p in files_under(base))
        if code == 0:
            assert any(p.name == "summary.json" for p in files_under(root))


# --- signals and hangs, with real processes -------------------------------------------------

def _spawn(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    return subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


#: Guards against a hang, not a speed check: on a loaded 2-core machine Ray's start-up or shutdown
#: alone has taken over a minute.
HANG_GUARD_S = 300.0


def _wait_for(condition, proc, timeout=HANG_GUARD_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"exited early with {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("timed out waiting")


def _training(out: Path) -> bool:
    """The run is past Ray's start-up and its parties are training."""
    try:
        return len(read_json_lines(out / "metrics.jsonl")) >= 4
    except OSError:
        return False


def _starting(out: Path) -> bool:
    """The run directory is set up and Ray is starting."""
    return (results.read_status(out) or {}).get("state") == "running"


# Interrupting during start-up is quick; the case, a training run, takes Ray's start-up first.
@pytest.mark.parametrize("phase", [pytest.param(_training, marks=pytest.mark.slow), _starting], ids=["training", "starting"])
def test_sigterm_interrupts_a_run_cleanly(tmp_path, phase):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**BASE, "epochs": 10000}))
    out = tmp_path / "run"
    proc = _spawn(["-m", "testbed.run", str(scenario), "--out", str(out), "--quiet"], tmp_path)
    _wait_for(lambda: phase(out), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"])
def test_signal_interrupts_a_sweep_and_marks_the_running_run(tmp_path, sig):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "epochs": 10000}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "grid": {"t": {"low": ["training.temperature=1"]}}}))
    out = tmp_path / "out"
    proc = _spawn(["-m", "analysis.sweep", str(tmp_path / "sweep.yaml"), "--out", str(out)], tmp_path)
    _wait_for(lambda: _starting(out / "t=low"), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "1 unfinished run(s) marked interrupted" in err
    assert json.loads((out / "t=low" / "status.json").read_text())["state"] == "interrupted"


def test_unreachable_ray_address_fails_fast_naming_it(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "run"
    # Not timed (a loaded machine takes long to import torch); a hang fails communicate's timeout, and the
    # message shows which path answered: the refused connection, not the probe's 30 s wait.
    proc = _spawn(["-m", "testbed.run", str(scenario), "--out", str(out), "--quiet", "--set", "ray.address=127.0.0.1:1"], tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in err
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and "127.0.0.1:1" in status["error"]


def test_ray_head_that_never_answers_times_out(tmp_path):
    """A port that accepts connections but is no Ray head: ray.init would retry forever."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        code = textwrap.dedent(f"""
            import sys, testbed.cluster
            testbed.cluster.ATTACH_TIMEOUT_S = 3
            from testbed.run import main
            sys.exit(main([{str(scenario)!r}, "--out", "run", "--quiet", "--set", "ray.address={address}"]))
        """)
        proc = _spawn(["-c", code], tmp_path)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    assert f"no answer from the Ray cluster at {address}" in err


# --- two Ray nodes ----------------------------------------------------------------------------

MULTINODE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import ray, yaml
    from ray.cluster_utils import Cluster
    from testbed.config import parse_scenario
    from testbed.driver import run_scenario
    from testbed.results import RunDirectory

    # One CPU per node, two parties wanting a whole CPU each: each party lands on its own node.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    raw = yaml.safe_load(Path(sys.argv[1]).read_text())
    raw["ray"] = {"address": cluster.address}
    run_scenario(parse_scenario(raw), RunDirectory(Path(sys.argv[2])), progress=False)
    from ray._private.state import actors
    nodes = {a["Address"]["NodeID"] for a in actors().values() if a["ActorClassName"].endswith("PartyActor")}
    print(json.dumps({"party_nodes": len(nodes), "cluster_nodes": len(ray.nodes())}))
    ray.shutdown()
    cluster.shutdown()
""")


@pytest.mark.slow
def test_two_node_cluster_gives_the_single_node_results(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**BASE, "epochs": 4}))
    proc = _spawn(["-c", MULTINODE, str(scenario), str(tmp_path / "cluster")], tmp_path)
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    placement = json.loads(stdout.strip().splitlines()[-1])
    assert placement == {"party_nodes": 2, "cluster_nodes": 2}

    single = RunDirectory(tmp_path / "single")
    driver.run_scenario(parse_scenario({**BASE, "epochs": 4}), single, progress=False, placement=InProcessParties)

    def without_timings(path):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_json_lines(path)]

    for name in ("metrics.jsonl", "messages.jsonl"):
        assert without_timings(tmp_path / "cluster" / name) == without_timings(tmp_path / "single" / name)
    cluster, local = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("cluster", "single"))
    assert cluster["parties"] == local["parties"] and cluster["communication"] == local["communication"]

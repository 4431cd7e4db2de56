"""What the command-line tests share: a command run in-process, a sandbox that proves nothing was
written outside the output root, the fuzz strategies of malformed values and files, and fakes
of the long computations (so that a fuzz case that passes validation finishes in milliseconds)."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import tempfile
from pathlib import Path

import yaml
from conftest import TINY
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from analysis.sweep import with_references
from testbed.files import prepare_output
from testbed.result_schema import SCHEMA_VERSION, Summary

ROOT = Path(__file__).resolve().parent.parent

#: A scenario small enough to validate in milliseconds and to train forever in a subprocess.
BASE = {**copy.deepcopy(TINY), "ray": {"object_store_mb": 200, "num_cpus": 2}}

#: Fuzz tests: cheap by construction (validation only, or a fake computation), never timed.
# Derandomized: CI gives the same verdict on the same code. Explore new cases by hand with
# `SMULE_FUZZ_EXPLORE=1 python -m pytest tests/test_fuzz_entry_points.py --hypothesis-seed=N`.
FUZZ = settings(deadline=None, derandomize="SMULE_FUZZ_EXPLORE" not in os.environ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


def load_bench(name: str):
    """``bench/<name>.py`` as a module (the bench scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(main, args: list[str]) -> tuple[int, str, str]:
    """``main(args)`` in-process: its exit code (argparse's own errors included), stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


class Sandbox:
    """A temporary directory with the inputs under ``in/`` and everything a command may write under
    ``out/`` (also the working directory, so default output locations land there), and the places
    a malformed output argument points to: a file, a dangling link, a path below a file."""

    def __init__(self, base: Path):
        self.base, self.inputs, self.out = base, base / "in", base / "out"
        self.inputs.mkdir()
        self.out.mkdir()
        self.file = self.write("a_file.txt", "an input, never to be overwritten")
        (self.inputs / "dangling").symlink_to(self.inputs / "nowhere")

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return path

    def output_argument(self, choice: str) -> str:
        """An output argument by its kind (see :data:`OUTPUTS`)."""
        return {"fresh": str(self.out / "result"), "nested": str(self.out / "a" / "b"), "cwd": ".", "empty": "",
                "file": str(self.file), "under-file": str(self.file / "x"), "dangling": str(self.inputs / "dangling"),
                "proc": "/proc/smule-fuzz/x"}[choice]

    def snapshot(self) -> dict[Path, bytes]:
        return {p: p.read_bytes() for p in self.inputs.rglob("*") if p.is_file() and not p.is_symlink()}

    def check(self, code: int, err: str, inputs: dict[Path, bytes]) -> None:
        """Exit 0, 1 or 2, no traceback, the inputs untouched, nothing new outside ``out/``."""
        assert code in (0, 1, 2), (code, err)
        assert "Traceback" not in err, err
        assert self.snapshot() == inputs
        written = {p for p in self.base.rglob("*") if not p.is_relative_to(self.out) and not p.is_relative_to(self.inputs)}
        assert written == set(), written
        assert not any(p.name != "dangling" and p.is_symlink() for p in self.inputs.rglob("*"))


#: Kinds of output argument a fuzz case draws.
OUTPUTS = st.sampled_from(["fresh", "nested", "cwd", "empty", "file", "under-file", "dangling", "proc"])


@contextlib.contextmanager
def sandbox():
    """A :class:`Sandbox`, the working directory inside its ``out/`` for the block."""
    with tempfile.TemporaryDirectory() as base:
        box = Sandbox(Path(base))
        here = Path.cwd()
        os.chdir(box.out)
        try:
            yield box
        finally:
            os.chdir(here)


# -- strategies of malformed values -------------------------------------------------------------
NAMES = st.sampled_from(["..", ".", "/", "a/b", "../../x", "/abs", "", "ok", "x" * 300, "a\\b", "~", "-", "é", "nul\0"])
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | NAMES | st.sampled_from(["mlp", "he_cnn", "digits", "synthetic", "ckks", "label_flip",
                                                             "scale", "divergence", "agreement", "malicious", "1e11"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["kind", "rate", "samples", "hidden", "x"]) | st.text(max_size=5), inner, max_size=3), max_leaves=8)
#: Text that is rarely a table: garbage, binary, a header alone, a truncated row.
GARBAGE = st.one_of(st.text(max_size=60), st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
                    st.sampled_from(["", "a,b\n", "a,b\n1\n", '"unclosed,1\n', "\0\0", "role,accuracy\nhonest,x\n", "{}", "[1, 2"]))


def set_path(raw: dict, path: str, value) -> None:
    """``raw`` with ``value`` at the dotted ``path`` (where the path can be followed)."""
    node = raw
    *parents, last = path.split(".")
    for key in parents:
        if not isinstance(node, dict):
            return
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[last] = value


def yaml_text(raw) -> str | None:
    """``raw`` as YAML, or ``None`` where YAML cannot write it."""
    try:
        return yaml.safe_dump(raw, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return None


KEYS = ["name", "description", "seed", "epochs", "protocol", "dataset", "split", "scheme", "training", "parties", "ray",
        "training.batch_size", "training.learning_rate", "training.temperature", "training.mutual_weight",
        "training.weight_decay", "training.warmup_epochs", "training.optimizer", "training.momentum",
        "parties.A", "parties.B", "parties.C", "parties.A.samples", "parties.B.role", "parties.A.model",
        "parties.A.model.hidden", "parties.A.model.kind", "parties.B.attacks", "parties.B.attacks.0",
        "parties.B.attacks.0.rate", "parties.A.filters", "parties.A.filters.0.kind", "dataset.kind",
        "dataset.train_samples", "ray.address", "ray.object_store_mb", "bogus", "parties.A.model.hidden.0"]
#: Valid overrides, so that runs which pass validation are generated too.
PLAUSIBLE = ["epochs=2", "seed=7", "name=other", "training.temperature=3.5", "parties.A.model.hidden=[4, 4]",
             "parties.B.role=malicious", "parties.A.filters=[]", "split={kind: dirichlet, alpha: 0.5}", "protocol=local"]


@st.composite
def scenario_cases(draw):
    """``(raw scenario, --set overrides, whether to give --out)``: BASE with malformed values and overrides."""
    raw = copy.deepcopy(BASE)
    for path, value in draw(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=3)):
        set_path(raw, path, value)
    overrides = draw(st.lists(
        st.sampled_from(PLAUSIBLE)
        | st.builds(lambda key, text: f"{key}={text}", st.sampled_from(KEYS) | st.text(max_size=8),
                    st.text(max_size=12) | VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip())),
        max_size=3))
    return raw, overrides, draw(st.booleans())


# -- fakes of the long computations -------------------------------------------------------------
def make_summary(parties: dict[str, dict], communication: dict | None = None, **keys) -> Summary:
    """A summary with the values a test gives (``parties``: per party, ``communication``, top-level
    ``keys``), the rest filled in as a run of nothing would write them."""
    return Summary.model_validate({
        "schema_version": SCHEMA_VERSION, "scenario": "t", "protocol": "smule", "seed": 0, "epochs": 1, "dataset": "synthetic",
        "scheme": "plaintext", "evaluated_on": "test",
        "parties": {name: {"role": "honest", "accuracy": 0.5, "asr": None, "asr_by_attack": {}, "loss": 1.0, "peak_rss_mb": 1.0, **values}
                    for name, values in parties.items()},
        "communication": {"setup_bytes": 0, "setup_messages": 0, "bytes_per_epoch": 0, "messages_per_epoch": 0, "rounds_per_epoch": 0,
                          "exchange_epochs": 0, "bytes_per_epoch_by_direction": {}, **(communication or {})},
        "seconds": {"wall": 1.0, "by_party_and_phase": {}},
        **keys,
    })


def fake_summary(scenario) -> Summary:
    """A summary as testbed.driver writes it, for a run that did not happen."""
    return make_summary({name: {"role": p.role} for name, p in scenario.parties.items()}, scenario=scenario.name, protocol=scenario.protocol.kind,
                        seed=scenario.seed, epochs=scenario.epochs, dataset="fake", scheme=scenario.scheme.kind)


def fake_run_scenarios(scenarios, out, parallel=1, progress=True, desc="runs"):
    """``analysis.sweep.run_scenarios`` without running: the output prepared as the real one does,
    each scenario (and its rate-0 reference) given a fake summary."""
    prepare_output(out)
    reference_dirs, every = with_references(scenarios)
    return {name: (fake_summary(scenario), fake_summary(every[reference_dirs[name]]) if name in reference_dirs else None)
            for name, scenario in scenarios.items()}

"""Sweeps: run a base scenario under every combination of named variants, resumably.

A sweep file::

    name: filters_vs_flip
    base: ../poison_10pct.yaml          # relative to the sweep file
    set: [epochs=20]                    # optional overrides for every run
    grid:                               # axis -> variant name -> list of key=value overrides
      attack:
        flip10: [parties.B.attacks.0.rate=0.1]
        flip30: [parties.B.attacks.0.rate=0.3]
      filter:
        none: ["parties.A.filters=[]"]
        agreement: ["parties.A.filters=[{kind: agreement}]"]
    seeds: [0, 1, 2]                    # optional: every combination once per seed (axis `seed`)

``python -m analysis.sweep SWEEP.yaml [--out DIR] [--parallel N]`` runs each combination as one
Ray task (parties in the task's process; attach to a cluster with ``RAY_ADDRESS``) into
``DIR/<axis=value,...>/`` (default ``results/sweeps/<name>``), keeps combinations that already
hold a completed run of the same resolved scenario (so an interrupted sweep resumes where it
stopped) and reruns those whose scenario changed, and writes ``DIR/table.csv``: one row per run
and party (a failed run: one row with its ``status`` and ``error``).

Attack harm is a delta: every combination with an attack also runs (once, under
``DIR/rate0/<hash>/``) the same scenario with every attack at rate 0 and the same seed, and the
table gives ``accuracy_delta`` and ``asr_delta`` against it.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import ray
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm import tqdm

from analysis.load import BOOKKEEPING, flatten, is_measurement, read_result
from testbed.cli import UsageError, at_least, output, path_argument, run_command
from testbed.config import Scenario, ScenarioError, load_scenario, parse_scenario, read_yaml
from testbed.files import check_component, prepare_output, write_atomic
from testbed.registry import validation_problems
from testbed.result_schema import Summary, read_summary
from testbed.results import SUMMARY, RunDirectory, inside, mark_stopped


def _axis_name(name: str) -> str:
    """An axis becomes a column of the table, so it must not take the name of one that holds a
    measurement or bookkeeping (``party``, ``accuracy``, ``status``, ...): one would overwrite the other. (``protocol`` and ``scheme`` are
    settings: an axis of that name labels the rows with its variants; ``seed`` is the seeds axis.)"""
    if name in BOOKKEEPING | {"evaluated_on"} or is_measurement(name) or name.startswith("key."):
        raise ValueError(f"{name!r} is a column of the sweep table, not free for an axis; allowed: any other name, e.g. {name}_axis")
    return check_component(name)


#: Axis and variant names become directory names (``DIR/<axis=variant,...>/``).
Name = Annotated[str, AfterValidator(check_component)]
AxisName = Annotated[str, AfterValidator(_axis_name)]


class SweepFile(BaseModel):
    """A sweep file's schema (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Name
    base: str
    set: list[str] = []
    grid: dict[AxisName, Annotated[dict[Name, list[str]], Field(min_length=1)]] = {}
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field([], description="the last axis, `seed`: one run per seed of every combination")

    @field_validator("seeds")
    @classmethod
    def _seeds_once(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"repeats seed {', '.join(map(str, repeated))}; allowed: each seed once")
        return seeds


def load_sweep(path: Path) -> dict[str, Any]:
    """Read and check a sweep file, its base scenario included; raises :class:`ScenarioError`
    naming each problem (``OSError`` when the file cannot be read)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError([(str(path), f"cannot read the sweep file: {getattr(err, 'strerror', None) or err}")]) from None
    raw = read_yaml(text, str(path))
    try:
        sweep = SweepFile.model_validate(raw if raw is not None else {}).model_dump()
    except ValidationError as err:
        raise ScenarioError(validation_problems(err)) from None
    if sweep["seeds"] and "seed" in sweep["grid"]:
        raise ScenarioError([("seeds", "given both as `seeds: [...]` and as a `seed` grid axis; allowed: one of them")])
    if not (Path(path).parent / sweep["base"]).is_file():
        raise ScenarioError([("base", f"no scenario file at {Path(path).parent / sweep['base']} (base is relative to the sweep file)")])
    return sweep


def variants(sweep: dict[str, Any]) -> dict[str, tuple[dict[str, str], list[str]]]:
    """``{run name: ({axis: variant}, overrides)}`` for every combination of the grid."""
    grid = dict(sweep.get("grid") or {})
    if sweep.get("seeds"):
        grid["seed"] = {str(seed): [f"seed={seed}"] for seed in sweep["seeds"]}
    axes = list(grid)
    for axis in axes:
        for name in [axis, *grid[axis]]:
            try:
                check_component(name)
            except ValueError as err:
                raise ScenarioError([(f"grid.{axis}", str(err))]) from None
    out = {}
    for choice in itertools.product(*(list(grid[a].items()) for a in axes)):
        labels = {axis: name for axis, (name, _) in zip(axes, choice)}
        overrides = list(sweep.get("set", [])) + [o for _, sets in choice for o in sets]
        out[",".join(f"{a}={v}" for a, v in labels.items()) or "base"] = (labels, overrides)
    return out


@ray.remote(num_cpus=1)
def _run_one(scenario, path: str) -> Summary:
    """One scenario per Ray task, its parties in the task's process: Ray reuses task workers, so
    a sweep pays process start-up and imports once per worker, not twice per run."""
    import torch

    from testbed.driver import run_scenario
    from testbed.inprocess import InProcessParties

    torch.set_num_threads(1)
    out = RunDirectory(Path(path), overwrite=True)
    try:
        return run_scenario(scenario, out, progress=False, placement=InProcessParties)
    except Exception as err:
        out.set_status("failed", f"{type(err).__name__}: {err}")
        raise


FILTER_COLUMNS = ["kept", "precision", "recall", "dropped_useful", "harmful", "harm_kept", "harm_dropped", "harm_distilled", "trust"]


def summary_rows(labels: dict[str, str], summary: Summary, reference: Summary | None = None, reference_dir: str | None = None) -> list[dict]:
    """One row per party; with the rate-0 ``reference`` summary (run in ``reference_dir``), the
    attack's deltas too, and every targeted attack's own (``asr:<attacker>/<attack>``, with its
    ``asr_rate0:`` and ``asr_delta:``)."""
    comm = summary.communication
    rows = []
    for party, values in summary.parties.items():
        base = (reference or summary).parties[party]
        rows.append({
            **labels, "party": party, "role": values.role, "seed": summary.seed,
            "accuracy": values.accuracy, "asr": values.asr,
            "accuracy_rate0": base.accuracy, "asr_rate0": base.asr,
            "accuracy_delta": values.accuracy - base.accuracy,
            "asr_delta": _delta(values.asr, base.asr),
            **_per_attack(values.asr_by_attack, base.asr_by_attack),
            **{f"filter_{key}": getattr(values.filter, key, None) for key in FILTER_COLUMNS},
            "bytes_per_epoch": comm.bytes_per_epoch, "setup_bytes": comm.setup_bytes,
            "protocol": labels.get("protocol", summary.protocol), "scheme": labels.get("scheme", summary.scheme),
            "evaluated_on": summary.evaluated_on,
            "reference": reference_dir,
        })
    return rows


def _delta(value: float | None, rate0: float | None) -> float | None:
    return None if value is None or rate0 is None else value - rate0


def _per_attack(asr: dict[str, float], rate0: dict[str, float]) -> dict[str, float | None]:
    """``asr:<attack>``, ``asr_rate0:<attack>`` and ``asr_delta:<attack>`` for each targeted attack."""
    return {column: value for attack, current in asr.items()
            for column, value in ((f"asr:{attack}", current), (f"asr_rate0:{attack}", rate0.get(attack)),
                                  (f"asr_delta:{attack}", _delta(current, rate0.get(attack))))}


def rate_zero(scenario: Scenario) -> Scenario | None:
    """The same scenario with every attack at rate 0 (the reference of its attack's harm), or
    ``None`` when no attack has a positive rate."""
    raw = scenario.dump()
    attacks = [a for party in raw["parties"].values() for a in party["attacks"] if a.get("rate", 0) > 0]
    for attack in attacks:
        attack["rate"] = 0.0
    return parse_scenario(raw) if attacks else None


#: Scenario keys added after results existed (their defaults reproduce the older runs): left out of
#: :func:`scenario_key` at their default, so references run before them are still found.
LATER_KEYS = ("validation_samples", "plugins", "network")


def scenario_key(scenario: Scenario) -> str:
    """A short hash of the resolved scenario: equal keys, identical runs."""
    defaults = {key: Scenario.model_fields[key].get_default(call_default_factory=True) for key in LATER_KEYS}
    raw = {key: value for key, value in scenario.dump().items() if key not in LATER_KEYS or value != defaults[key]}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12]


def run_sweep(sweep_path: Path, out: Path | None = None, parallel: int = 1, progress: bool = True) -> pd.DataFrame:
    """Run the sweep file's combinations (keeping finished ones); returns and writes the table,
    which has a row per failed run too (``status`` and ``error``) before :class:`RunsFailed` is raised."""
    sweep = load_sweep(sweep_path)
    out = out or default_out(sweep)
    scenarios = sweep_scenarios(sweep, (sweep_path.parent / sweep["base"]).resolve())  # all valid before anything is written
    try:
        results, failure = run_scenarios(scenarios, out, parallel, progress, desc=sweep["name"]), None
    except RunsFailed as err:
        results, failure = err.results, err
    labels = {name: labels for name, (labels, _) in variants(sweep).items()}
    varying = varying_keys(scenarios)
    reference_dirs, _ = with_references(scenarios)
    rows = []
    for name, (summary, reference) in results.items():
        keys = {f"key.{key}": value for key, value in varying[name].items() if key != "seed"}  # rows have a seed column
        if summary is None:
            rows.append({**labels[name], "seed": scenarios[name].seed, **keys, "status": "failed", "error": failure.failures[name]})
        else:
            rows += [{**row, **keys, "status": "complete", "error": None} for row in summary_rows(labels[name], summary, reference, reference_dirs.get(name))]
    table = write_table(out / "table.csv", rows)
    if failure is not None:
        raise failure
    return table


def varying_keys(scenarios: dict[str, Scenario]) -> dict[str, dict[str, Any]]:
    """Per run, the resolved scenario keys (dotted paths) whose values differ between the runs:
    what the table must show so that no axis hides in the overrides."""
    flat = {name: flatten(scenario.dump()) for name, scenario in scenarios.items()}
    keys = set().union(*flat.values())
    differ = sorted(k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1)
    return {name: {k: f.get(k) for k in differ} for name, f in flat.items()}


def default_out(sweep: dict[str, Any]) -> Path:
    root = Path("results") / "sweeps"
    return inside(root, root / sweep["name"])


def write_table(path: Path, rows: list[dict]) -> pd.DataFrame:
    """Write ``rows`` as CSV atomically; returns them as a frame."""
    table = pd.DataFrame(rows)
    write_atomic(path, table.to_csv(index=False))
    return table


def run_grid(sweep: dict[str, Any], base: Path, out: Path, parallel: int = 1, progress: bool = True) -> dict[str, tuple[dict[str, str], Summary, Summary | None]]:
    """Run every combination of ``sweep``'s grid, and the rate-0 reference of each attacked one,
    under ``out`` (finished ones are kept); returns ``{run name: ({axis: variant}, summary,
    rate-0 summary or None)}``."""
    runs = variants(sweep)
    results = run_scenarios(sweep_scenarios(sweep, base), out, parallel, progress, desc=sweep["name"])
    return {name: (labels, *results[name]) for name, (labels, _) in runs.items()}


def sweep_scenarios(sweep: dict[str, Any], base: Path) -> dict[str, Scenario]:
    """Every combination of ``sweep``'s grid on the ``base`` scenario, validated; raises
    :class:`ScenarioError` naming each invalid combination's problems."""
    scenarios, problems = {}, []
    for name, (_, overrides) in variants(sweep).items():
        try:
            scenarios[name] = load_scenario(base, overrides)
        except ScenarioError as err:
            problems += [(f"{name}: {key}", message) for key, message in err.problems]
    if problems:
        raise ScenarioError(problems)
    return scenarios


class RunsFailed(RuntimeError):
    """Some runs failed; the others finished. ``failures`` maps run names to their errors and
    ``results`` holds what :func:`run_scenarios` would have returned (``None`` summaries for
    failed runs)."""

    def __init__(self, failures: dict[str, str], results: dict[str, tuple[Summary | None, Summary | None]]):
        self.failures, self.results = failures, results
        listed = "\n".join(f"  {name}: {error}" for name, error in failures.items())
        super().__init__(f"{len(failures)} of {len(results)} run(s) failed (the others finished):\n{listed}")


def finished(directory: Path, scenario: Scenario) -> bool:
    """Whether ``directory`` holds a completed run of exactly ``scenario`` (its resolved
    scenario.yaml, resolved again under today's schema, equal): a run of an earlier, different
    definition must not be reused, while a key added since, at its default, changes nothing."""
    if not (directory / SUMMARY).exists():
        return False
    try:
        return parse_scenario(read_yaml((directory / "scenario.yaml").read_text(), str(directory))).dump() == scenario.dump()
    except (OSError, ScenarioError):
        return False


def with_references(scenarios: dict[str, Scenario]) -> tuple[dict[str, str], dict[str, Scenario]]:
    """``({name: its rate-0 reference's directory}, {directory: scenario})`` for ``scenarios``
    and the rate-0 reference of each attacked one (``rate0/<hash>``: identical references once)."""
    references = {name: reference for name, scenario in scenarios.items() if (reference := rate_zero(scenario)) is not None}
    reference_dirs = {name: f"rate0/{scenario_key(reference)}" for name, reference in references.items()}
    return reference_dirs, {**scenarios, **{reference_dirs[name]: reference for name, reference in references.items()}}


def finished_results(scenarios: dict[str, Scenario], out: Path) -> dict[str, tuple[Summary, Summary | None]]:
    """What :func:`run_scenarios` would return for the runs under ``out`` that have finished, with
    their rate-0 reference where they need one, without starting any: a table of a grid still
    under way (or run elsewhere)."""
    reference_dirs, every = with_references(scenarios)
    done = {name for name, scenario in every.items() if finished(out / name, scenario)}
    return summaries([name for name in scenarios if name in done and reference_dirs.get(name, name) in done], reference_dirs, out)


def summaries(names: list[str], reference_dirs: dict[str, str], out: Path, failed: frozenset[str] = frozenset()) -> dict[str, tuple[Summary | None, Summary | None]]:
    """``{name: (summary, rate-0 summary or None)}`` read from ``out`` (``None`` for a failed run)."""

    def summary(name: str) -> Summary | None:
        return None if name in failed else read_result(read_summary, out / name / SUMMARY)

    return {name: (summary(name), summary(reference_dirs[name]) if name in reference_dirs else None) for name in names}


def run_scenarios(scenarios: dict[str, Scenario], out: Path, parallel: int = 1, progress: bool = True, desc: str = "runs") -> dict[str, tuple[Summary, Summary | None]]:
    """Run each scenario into ``out/<name>/`` and the rate-0 reference of each attacked one into
    ``out/rate0/<hash>/`` (identical references run once), one Ray task each, at most ``parallel``
    at a time. A run whose directory already holds a completed run of the same resolved scenario
    is kept; one whose scenario changed is rerun (and named on stderr). Returns ``{name:
    (summary, rate-0 summary or None)}``; raises :class:`RunsFailed` after every run has had its
    turn when some failed."""
    reference_dirs, every = with_references(scenarios)
    prepare_output(out)
    todo = [name for name in every if not finished(out / name, every[name])]
    changed = [name for name in todo if (out / name / SUMMARY).exists()]
    if changed:
        print(f"rerunning {len(changed)} run(s) whose scenario changed since they ran: {', '.join(changed)}", file=sys.stderr)
    from testbed.cluster import start_ray

    start_ray(next(iter(every.values())).ray)
    bar = tqdm(total=len(every), initial=len(every) - len(todo), desc=desc, unit="run", file=sys.stderr, disable=not progress)
    pending: dict[Any, str] = {}
    failures: dict[str, str] = {}
    while todo or pending:
        while todo and len(pending) < parallel:
            name = todo.pop(0)
            pending[_run_one.remote(every[name], str(out / name))] = name
        done, _ = ray.wait(list(pending), num_returns=1)
        name = pending.pop(done[0])
        try:
            ray.get(done[0])
        except ray.exceptions.RayTaskError as err:  # the run is marked failed; the others go on
            cause = err.cause if err.cause is not None else err
            failures[name] = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        bar.update(1)
    bar.close()

    results = summaries(list(scenarios), reference_dirs, out, frozenset(failures))
    if failures:
        raise RunsFailed(failures, results)
    return results


def run_on_ray(prog: str, body: Callable[[], int], where: list[Path]) -> int:
    """:func:`testbed.cli.run_command` for a command whose ``body`` runs scenarios on Ray under
    ``where[0]`` (once known): Ray failing exits 1, and a signal 130, each after stopping the runs
    still going and marking them, so that the same command resumes."""
    from testbed.cluster import RayUnavailable

    def stop() -> str:
        return stop_runs(where[0] if where else None, "interrupted")

    def guarded() -> int:
        try:
            return body()
        except (RayUnavailable, ray.exceptions.RayError) as err:
            print(f"{prog} failed: {str(err).strip().splitlines()[-1]} (the failing run's status.json says which); {stop()}", file=sys.stderr)
            return 1

    return run_command(prog, guarded, lambda: f"{stop()}; run the same command again to resume")


def main(argv: list[str] | None = None) -> int:
    """Exit codes as ``testbed.run`` (:mod:`testbed.cli`): 0 done, 1 a run or Ray failed, 2 an
    invalid sweep file or argument (nothing runs), 130 interrupted (rerun the command to resume)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=path_argument)
    parser.add_argument("--out", type=path_argument)
    parser.add_argument("--parallel", type=at_least(1), default=1, help="runs at once (one Ray task and one core each: a run's parties share its process)")
    args = parser.parse_args(argv)
    where: list[Path] = []

    def body() -> int:
        try:
            where.append(output(args.out or default_out(load_sweep(args.sweep)), "--out", create=False))
            table = run_sweep(args.sweep, where[0], args.parallel)
        except ScenarioError as err:
            raise UsageError(f"{args.sweep}: invalid sweep:\n" + "\n".join(f"  {key}: {message}" for key, message in err.problems)) from None
        except RunsFailed as err:
            print(f"sweep finished with failures; table: {where[0] / 'table.csv'}\n{err}", file=sys.stderr)
            return 1
        print(table.to_string(index=False))
        return 0

    return run_on_ray("analysis.sweep", body, where)


def stop_runs(out: Path | None, state: str) -> str:
    """Stop the runs still going (their tasks die with Ray) and record ``state`` in their status."""
    ray.shutdown()
    stopped = mark_stopped(out, state) if out is not None and out.is_dir() else []
    return f"{len(stopped)} unfinished run(s) marked {state}"


if __name__ == "__main__":
    sys.exit(main())

"""Regression of attack metrics: a fixed scenario suite against a committed baseline with bands.

``python -m analysis.regress [--only NAME ...] [--update] [--seeds N] [--out DIR] [--parallel N]``

runs every scenario of ``scenarios/regression/`` (and each attacked one's rate-0 reference) on
Ray, extracts per scenario and party the metrics of :func:`metrics_of`, and compares them with
``tests/regression/baseline.csv``: it prints one line per metric (scenario, party, metric,
baseline, band, current, verdict), then the invariants, and exits 1 on any regression, 0
otherwise, 2 on bad arguments. ``--update`` rewrites the baseline on purpose from ``--seeds``
seeds (at least 5; default 5); without it the suite runs the scenarios' own seed (``--seeds N``
compares the mean of seeds 0..N-1).

Bands (written next to each value in the baseline, with the rule that made them):

* rates (accuracy, ASR, deltas, filter shares): ``mean +- max(3 sd, one sample)``, the sd over
  the baseline's seeds and one sample of the set the rate is measured on (the test set, the
  attack's probe set, or the querier's training samples);
* bytes, messages and rounds: exact in plaintext and CKKS accounted mode; within 0.1% in real
  CKKS mode, whose compressed ciphertext sizes vary by a few bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

from analysis.load import TableError, read_csv
from analysis.sweep import RunsFailed, run_on_ray, run_scenarios, summary_rows
from testbed.attackers import success_probe
from testbed.cli import UsageError, at_least, output, path_argument
from testbed.config import Scenario, load_scenario
from testbed.datasets import load_data
from testbed.files import write_atomic
from testbed.registry import PROTOCOLS
from testbed.result_schema import Summary
from testbed.shares import party_data

SUITE = Path(__file__).resolve().parent.parent / "scenarios" / "regression"
BASELINE = Path(__file__).resolve().parent.parent / "tests" / "regression" / "baseline.csv"
EXACT = ("bytes_per_epoch", "setup_bytes", "messages_per_epoch", "rounds_per_epoch")
REAL_MODE_TOLERANCE = 0.001
#: Invariants: a data-poisoning attack still works on the attacker (its own ASR at least this far
#: above its rate-0 value)...
ATTACKER_MIN_ASR_DELTA = 0.3
#: ...and the default defence keeps the honest ASR delta of the naive attacks within this bound
#: (docs/results.md, robustness table: the default's worst naive-attack delta was well below it).
DEFAULT_DEFENCE_MAX_ASR_DELTA = 0.05
NAIVE_ATTACKS = ("flip", "patch", "blend", "swap")
#: ...and, on the label-skewed clean scenarios (local, no filter, default), the default keeps at
#: least this share of the accuracy gain SMuLe without a filter has over local training. The
#: default keeps none of it (docs/results.md, "The utility-robustness frontier": 0% over 3 seeds;
#: it switches the honest peer off): the bound guards that it costs no more than a quarter of the
#: gain below local training, and, through the share's definition, that the gain itself exists.
GAIN_SCENARIOS = ("dirichlet_local", "dirichlet_none", "dirichlet_default")
DEFAULT_MIN_GAIN_SHARE = -0.25


def suite(only: list[str] = ()) -> dict[str, Scenario]:
    """The regression scenarios by file stem; raises ``ValueError`` for an unknown ``only`` name."""
    files = {path.stem: path for path in sorted(SUITE.glob("*.yaml"))}
    unknown = [name for name in only if name not in files]
    if unknown:
        raise ValueError(f"unknown regression scenario {', '.join(unknown)}; allowed: {', '.join(files)}")
    return {name: load_scenario(path) for name, path in files.items() if not only or name in only}


def sample_sizes(scenario: Scenario) -> dict[str, int]:
    """The size of each set a rate is measured on: the test set, the probe, each party's samples."""
    loaded = load_data(scenario)
    probe = success_probe(scenario, loaded)
    sizes = {"test": len(loaded.test.y), "probe": len(probe.x) if probe is not None else 0}
    sizes.update({name: len(share.train.y) for name, share in party_data(scenario, loaded).items()})
    return sizes


#: Per-party rates compared with the baseline: the columns of :func:`analysis.sweep.summary_rows`.
RATES = ("accuracy", "asr", "asr_delta", "filter_precision", "filter_recall", "filter_kept")
#: ...and, in a run with several targeted attacks, each attack's own.
PER_ATTACK = ("asr:", "asr_delta:")


def metrics_of(summary: Summary, reference: Summary | None) -> dict[tuple[str, str], float]:
    """``{(party, metric): value}`` of one run, deltas against the rate-0 ``reference`` as the
    sweep tables compute them (a run with several targeted attacks has no single ``asr``: each
    attack's is ``asr:<attacker>/<attack>`` and ``asr_delta:...``); communication under party ``*``."""
    out: dict[tuple[str, str], float] = {}
    for row in summary_rows({}, summary, reference):
        per_attack = [c for c in row if c.startswith(PER_ATTACK) and row["asr"] is None]
        out.update({(row["party"], metric): row[metric] for metric in [*RATES, *per_attack] if row[metric] is not None})
    for key in EXACT:
        out["*", key] = getattr(summary.communication, key)
    return out


def unit_of(metric: str, party: str, sizes: dict[str, int]) -> float:
    """One sample of the set ``metric`` is a rate over."""
    if metric.startswith("filter_"):
        return 1 / sizes[party]
    return 1 / max(sizes["probe"] if metric.startswith("asr") else sizes["test"], 1)


def run_suite(scenarios: dict[str, Scenario], seeds: list[int] | None, out: Path, parallel: int, progress: bool) -> dict[str, list[dict]]:
    """``{scenario: [metrics per seed]}``; ``seeds=None`` runs each scenario's own seed."""
    runs = {}
    for name, scenario in scenarios.items():
        for seed in seeds if seeds is not None else [scenario.seed]:
            runs[f"{name}/seed{seed}"] = scenario.model_copy(update={"seed": seed})
    results = run_scenarios(runs, out, parallel, progress, desc="regression")
    per_scenario: dict[str, list[dict]] = defaultdict(list)
    for run, (summary, reference) in results.items():
        per_scenario[run.split("/")[0]].append(metrics_of(summary, reference))
    return per_scenario


def baseline_rows(scenarios: dict[str, Scenario], measured: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, runs in measured.items():
        sizes = sample_sizes(scenarios[name])
        real = scenarios[name].scheme.kind == "ckks" and scenarios[name].scheme.params.mode == "real"
        for party, metric in sorted(set().union(*runs), key=str):
            values = [r[party, metric] for r in runs if (party, metric) in r]
            mean = statistics.fmean(values)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            if metric in EXACT:
                compressed = real and metric in ("bytes_per_epoch", "setup_bytes")
                half = mean * REAL_MODE_TOLERANCE if compressed else 0.0
                rule = "within 0.1% (real CKKS)" if compressed else "exact"
                if not compressed and len(set(values)) > 1:
                    raise RuntimeError(f"{name} {metric} differs between seeds ({sorted(set(values))}): it must be exact")
            else:
                unit = unit_of(metric, party, sizes)
                half = max(3 * sd, unit)
                rule = f"max(3 sd, 1/{round(1 / unit)})"
            rows.append({"scenario": name, "party": party, "metric": metric, "mean": mean, "sd": sd, "seeds": len(values),
                         "lower": mean - half, "upper": mean + half, "band": rule})
    return rows


def verdicts(baseline: pd.DataFrame, measured: dict[str, list[dict]]) -> pd.DataFrame:
    rows = []
    expected = baseline[baseline["scenario"].isin(measured)]
    for _, b in expected.iterrows():
        values = [r[b["party"], b["metric"]] for r in measured[b["scenario"]] if (b["party"], b["metric"]) in r]
        current = statistics.fmean(values) if values else None
        ok = current is not None and b["lower"] - 1e-12 <= current <= b["upper"] + 1e-12
        rows.append({"scenario": b["scenario"], "party": b["party"], "metric": b["metric"], "baseline": b["mean"],
                     "band": f"[{b['lower']:.6g}, {b['upper']:.6g}] ({b['band']})", "current": current,
                     "verdict": "ok" if ok else ("MISSING" if current is None else "REGRESSION")})
    known = set(zip(expected["scenario"], expected["party"], expected["metric"]))
    for name, runs in measured.items():
        for party, metric in sorted(set().union(*runs) - {k[1:] for k in known if k[0] == name}, key=str):
            rows.append({"scenario": name, "party": party, "metric": metric, "baseline": None, "band": "-",
                         "current": statistics.fmean(r[party, metric] for r in runs if (party, metric) in r), "verdict": "NEW (not in baseline)"})
    return pd.DataFrame(rows)


def invariants(scenarios: dict[str, Scenario], measured: dict[str, list[dict]]) -> list[tuple[str, bool]]:
    """The checks that hold whatever the baseline: ``[(description, holds)]``."""
    checks = []
    for name, runs in measured.items():
        scenario = scenarios[name]
        # Where the parties share one model (joint, FedAvg) the attacker holds no model of its own.
        own_model = PROTOCOLS.get(scenario.protocol.kind).own_models
        for party, config in scenario.parties.items():
            for attack in [f"{party}/{a.kind}" for a in config.attacks if a.kind in ("label_flip", "backdoor_patch", "backdoor_blend")]:
                if own_model and (delta := asr_delta(runs, party, attack)) is not None:
                    checks.append((f"{name}: attacker {party}'s own ASR delta {delta:+.3f} ({attack}) >= {ATTACKER_MIN_ASR_DELTA}", delta >= ATTACKER_MIN_ASR_DELTA))
        if name.endswith("_default") and name.split("_")[0] in NAIVE_ATTACKS:
            attacks = [f"{p}/{a.kind}" for p, config in scenario.parties.items() for a in config.attacks]
            for party, config in scenario.parties.items():
                for attack in attacks if config.role == "honest" else []:
                    if (delta := asr_delta(runs, party, attack)) is not None:
                        checks.append((f"{name}: honest {party}'s ASR delta {delta:+.3f} ({attack}) <= {DEFAULT_DEFENCE_MAX_ASR_DELTA} under the default defence",
                                       delta <= DEFAULT_DEFENCE_MAX_ASR_DELTA))
    if all(name in measured for name in GAIN_SCENARIOS):
        local, none, default = (honest_accuracy(scenarios[name], measured[name]) for name in GAIN_SCENARIOS)
        share = (default - local) / (none - local) if none > local else float("nan")
        checks.append((f"dirichlet_default keeps {share:.2f} of the no-filter gain over local training "
                       f"({100 * (none - local):+.1f} points) >= {DEFAULT_MIN_GAIN_SHARE}", share >= DEFAULT_MIN_GAIN_SHARE))
    return checks


def asr_delta(runs: list[dict], party: str, attack: str) -> float | None:
    """``party``'s ASR delta under ``attack`` (``<attacker>/<kind>``), mean over ``runs``: its own
    metric where the runs have several targeted attacks, else the single ``asr_delta``, or ``None``
    when the attack has no success to measure (no target)."""
    for metric in (f"asr_delta:{attack}", "asr_delta"):
        if (party, metric) in runs[0]:
            return statistics.fmean(r[party, metric] for r in runs)
    return None


def honest_accuracy(scenario: Scenario, runs: list[dict]) -> float:
    """The honest parties' accuracy, mean over parties and runs."""
    honest = [party for party, config in scenario.parties.items() if config.role == "honest"]
    return statistics.fmean(r[party, "accuracy"] for r in runs for party in honest)


#: What a baseline row holds (``--update`` writes them; :func:`read_baseline` checks them).
BASELINE_COLUMNS = ("scenario", "party", "metric", "mean", "lower", "upper", "band")


def read_baseline(path: Path) -> pd.DataFrame:
    """The committed baseline, checked before the suite runs: the columns of :data:`BASELINE_COLUMNS`,
    at least one row, and a finite band with ``lower <= upper`` in every row (a NaN band would make
    every value a "REGRESSION"). Raises :class:`~analysis.load.TableError` naming the row."""
    if not path.is_file():
        raise TableError(f"--baseline {path}: no such file; allowed: a baseline written by --update")
    table = read_csv(path, required=BASELINE_COLUMNS, numeric=("mean", "lower", "upper"), finite=True)
    if table.empty:
        raise TableError(f"--baseline {path}: no rows; allowed: a baseline written by --update")
    inverted = table[table["lower"] > table["upper"]]
    if len(inverted):
        row = inverted.iloc[0]
        raise TableError(f"--baseline {path}: data row {inverted.index[0] + 1} ({row['scenario']} {row['party']} {row['metric']}): "
                         f"band [{row['lower']:.6g}, {row['upper']:.6g}] has lower > upper; allowed: lower <= upper (rewrite it with --update)")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.regress", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run only these scenarios (file stems)")
    parser.add_argument("--update", action="store_true", help="rewrite the baseline from --seeds seeds")
    parser.add_argument("--seeds", type=at_least(1), help="seeds 0..N-1 (default: the scenario's own seed; 5 with --update)")
    parser.add_argument("--out", type=path_argument, help="run directory (default results/regression/<time>)")
    parser.add_argument("--parallel", type=at_least(1), default=2, help="runs at once")
    parser.add_argument("--baseline", type=path_argument, default=BASELINE)
    args = parser.parse_args(argv)
    where: list[Path] = []

    def body() -> int:
        seeds = args.seeds if args.seeds is not None else (5 if args.update else None)
        if args.update and seeds < 5:
            raise UsageError(f"--seeds {seeds}: allowed: at least 5 with --update (bands come from the spread over at least 5 seeds)")
        if args.update and args.only:
            raise UsageError(f"--only {' '.join(args.only)}: --update rewrites the whole baseline; allowed: one of --update and --only")
        # Everything the suite's end needs is checked before it runs.
        if args.update:
            output(args.baseline, "--baseline", "file", create=False)
        baseline = None if args.update else read_baseline(args.baseline)
        try:
            scenarios = suite(args.only)
        except ValueError as err:
            raise UsageError(f"--only: {err}") from None
        where.append(output(args.out or Path("results") / "regression" / time.strftime("%Y%m%d-%H%M%S"), "--out", create=False))
        started = time.perf_counter()
        try:
            measured = run_suite(scenarios, list(range(seeds)) if seeds is not None else None, where[0], args.parallel, progress=True)
        except RunsFailed as err:
            print(f"regression suite could not run: {err}", file=sys.stderr)
            return 1
        wall = time.perf_counter() - started
        if args.update:
            table = pd.DataFrame(baseline_rows(scenarios, measured))
            write_atomic(output(args.baseline, "--baseline", "file"), table.to_csv(index=False, float_format="%.10g"))
            print(f"baseline written: {args.baseline} ({len(table)} values from {seeds} seeds; suite wall time {wall:.0f} s)")
            return 0
        return report(verdicts(baseline, measured), invariants(scenarios, measured), len(scenarios), wall)

    return run_on_ray("analysis.regress", body, where)


def report(table: pd.DataFrame, checks: list[tuple[str, bool]], scenarios: int, wall: float) -> int:
    """Print the verdicts and invariants; the exit status: 1 if any failed."""
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        failing = table[table["verdict"] != "ok"]
        if len(failing):
            print("\nregressions:")
            print(failing.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    print("\ninvariants:")
    for text, holds in checks:
        print(f"  {'ok  ' if holds else 'FAIL'} {text}")
    failed = int((table["verdict"] != "ok").sum()) + sum(not holds for _, holds in checks)
    print(f"\n{len(table)} metrics, {len(checks)} invariants, {failed} failed; {scenarios} scenarios, wall time {wall:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

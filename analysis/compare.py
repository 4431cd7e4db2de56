"""SMuLe against its baselines on one scenario: accuracy, attack success and communication.

``python -m analysis.compare SCENARIO.yaml [--out DIR] [--set KEY=VALUE ...]`` runs the scenario
as written (SMuLe with its filters), SMuLe without filters, and the ``local``, ``joint`` and
``fedavg`` protocols, then prints and writes ``DIR/comparison.csv`` (one row per protocol).
Finished runs under ``DIR`` are reused. Honest-party means are reported: they are what the
protocol is for. For ``joint`` the MPC columns give the traffic secure joint training would
need (``_model``: the analytical cost model; ``_measured``: CrypTen, when installed), each with
its source named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.sweep import RunsFailed, run_grid, run_on_ray, write_table
from testbed.cli import add_set_argument, at_least, output, path_argument
from testbed.config import load_scenario
from testbed.result_schema import Communication, Summary

#: The joint baseline's MPC training traffic, as the summary names it.
MPC_COLUMNS = [column for column in Communication.model_fields if column.startswith("mpc_")]


def protocol_variants(scenario_path: Path, overrides: list[str]) -> dict[str, list[str]]:
    scenario = load_scenario(scenario_path, overrides)
    unfiltered = [f"parties.{name}.filters=[]" for name, party in scenario.parties.items() if party.filters]
    return {
        "smule": [],
        "smule_nofilter": unfiltered,
        "local": ["protocol=local"],
        "joint": ["protocol=joint"],
        "fedavg": ["protocol=fedavg"],
    }


def comparison_row(name: str, summary: Summary, reference: Summary | None) -> dict:
    """Honest parties' means; with the rate-0 ``reference``, the attack's deltas against it."""
    honest = summary.honest()

    def mean_of(result: Summary, key: str) -> float | None:
        values = [getattr(result.parties[n], key) for n in honest if getattr(result.parties[n], key) is not None]
        return sum(values) / len(values) if values else None

    comm = summary.communication
    accuracy, asr = mean_of(summary, "accuracy"), mean_of(summary, "asr")
    base = reference or summary
    asr_rate0 = mean_of(base, "asr")
    return {
        "protocol": name,
        "accuracy": accuracy,
        "asr": asr,
        "accuracy_delta": accuracy - mean_of(base, "accuracy"),
        "asr_delta": None if asr is None or asr_rate0 is None else asr - asr_rate0,
        "bytes_per_epoch": comm.bytes_per_epoch,
        "rounds_per_epoch": comm.rounds_per_epoch,
        "setup_bytes": comm.setup_bytes,
        **{column: getattr(comm, column) for column in MPC_COLUMNS},
    }


def compare(scenario_path: Path, out: Path, overrides: list[str] = (), parallel: int = 1, progress: bool = True) -> pd.DataFrame:
    variants = protocol_variants(scenario_path, list(overrides))
    grid = {"name": "compare", "set": list(overrides), "grid": {"protocol": variants}}
    results = run_grid(grid, scenario_path.resolve(), out, parallel, progress)
    return write_table(out / "comparison.csv", [comparison_row(labels["protocol"], summary, reference) for labels, summary, reference in results.values()])


def main(argv: list[str] | None = None) -> int:
    """Exit codes as ``testbed.run`` (:mod:`testbed.cli`); finished runs are kept, so the same
    command resumes an interrupted comparison."""
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", type=path_argument)
    parser.add_argument("--out", type=path_argument, help="default results/compare/<scenario file stem>")
    add_set_argument(parser)
    parser.add_argument("--parallel", type=at_least(1), default=1)
    args = parser.parse_args(argv)
    where: list[Path] = []

    def body() -> int:
        where.append(output(args.out or Path("results") / "compare" / args.scenario.stem, "--out", create=False))
        try:
            table = compare(args.scenario, where[0], args.overrides, args.parallel)
        except RunsFailed as err:
            print(f"comparison incomplete: {err}", file=sys.stderr)
            return 1
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(table.drop(columns=[c for c in MPC_COLUMNS if c.startswith("mpc_source")]).to_string(index=False))
        print(f"written: {where[0] / 'comparison.csv'}")
        return 0

    return run_on_ray("analysis.compare", body, where)


if __name__ == "__main__":
    sys.exit(main())

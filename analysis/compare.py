"""SMuLe against its baselines on one scenario: accuracy, attack success and communication.

``python -m analysis.compare SCENARIO.yaml [--out DIR] [--set KEY=VALUE ...]`` runs the scenario
as written (SMuLe with its filters), SMuLe without filters, and the ``local``, ``joint`` and
``fedavg`` protocols, then prints and writes ``DIR/comparison.csv`` (one row per protocol).
Finished runs under ``DIR`` are reused. Honest-party means are reported: they are what the
protocol is for. For ``joint`` the MPC columns give the traffic secure joint training would
need (``_model``: the analytical cost model; ``_measured``: CrypTen, when installed), each with
its source named.

It also writes the network time of every protocol's recorded bytes and rounds on each network
profile (``lan``, ``wan``, ``mobile``, and the scenario's own link if custom): ``DIR/network.csv``
(setup and per exchange epoch), ``DIR/network_break_even.csv`` (the exchange epochs after which a
protocol with a costlier setup has taken less network time in all) and ``DIR/network.png`` /
``.svg``. Network time only, not measured: no computation (docs/network.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.communication import exchanges_answers
from analysis.figures import network_figure, save
from analysis.network import break_even, network_table, traffics
from analysis.plot_axes import PlotError
from analysis.sweep import RunsFailed, run_grid, run_on_ray, write_table
from testbed.cli import add_set_argument, at_least, output, path_argument
from testbed.config import load_scenario
from testbed.files import write_atomic
from testbed.network import PROFILES, Link
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
        "network_profile": comm.network_profile,
        "network_setup_seconds": comm.network_setup_seconds,
        "network_seconds_per_epoch": comm.network_seconds_per_epoch,
        **{column: getattr(comm, column) for column in MPC_COLUMNS},
    }


def network_profiles(summaries: list[Summary]) -> dict[str, Link]:
    """The named profiles, and the runs' own link where it is a custom one."""
    custom = [Link(bandwidth_mbps=c.network_bandwidth_mbps, rtt_ms=c.network_rtt_ms) for c in (s.communication for s in summaries) if c.network_profile == "custom"]
    return {**PROFILES, **({"custom": custom[0]} if custom else {})}


def write_network(out: Path, runs: list[tuple[str, Summary]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``network.csv``, ``network_break_even.csv`` and the network figure under ``out``, from the
    runs' recorded bytes and rounds; returns the table and the break-even points."""
    labelled = [(f"{name}, {summary.scheme}" if exchanges_answers(summary.protocol) else name, summary) for name, summary in runs]
    traffic, profiles = traffics(labelled), network_profiles([summary for _, summary in runs])
    table = network_table(traffic, profiles)
    even = break_even(table)
    try:
        save(network_figure(traffic, profiles, even), table, out, "network")
    except PlotError as err:  # nothing crosses the network: the table says 0 s, there is no figure
        print(f"network figure skipped: {err}", file=sys.stderr)
        write_atomic(out / "network.csv", table.to_csv(index=False))
    write_atomic(out / "network_break_even.csv", even.to_csv(index=False))
    return table, even


def compare(scenario_path: Path, out: Path, overrides: list[str] = (), parallel: int = 1, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run the variants; the comparison table, the network table and its break-even points."""
    variants = protocol_variants(scenario_path, list(overrides))
    grid = {"name": "compare", "set": list(overrides), "grid": {"protocol": variants}}
    results = run_grid(grid, scenario_path.resolve(), out, parallel, progress)
    table = write_table(out / "comparison.csv", [comparison_row(labels["protocol"], summary, reference) for labels, summary, reference in results.values()])
    return table, *write_network(out, [(labels["protocol"], summary) for labels, summary, _ in results.values()])


def network_lines(table: pd.DataFrame, even: pd.DataFrame) -> str:
    """The network table as printed: per protocol, setup and per-epoch seconds on each profile."""
    wide = table.pivot_table(index="protocol", columns="network", values=["network_setup_seconds", "network_seconds_per_epoch"], sort=False)
    wide.columns = [f"{network} {'setup' if key == 'network_setup_seconds' else 'per epoch'} (s)" for key, network in wide.columns]
    lines = ["network time only (recorded bytes over bandwidth plus rounds times round-trip time; no computation):",
             wide.to_string(float_format=lambda v: f"{v:.4g}")]
    lines += [f"{r['network']}: {r['protocol']} has taken less network time than {r['against']} from exchange epoch {r['epochs']}" for _, r in even.iterrows()]
    return "\n".join(lines)


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
            table, network, even = compare(args.scenario, where[0], args.overrides, args.parallel)
        except RunsFailed as err:
            print(f"comparison incomplete: {err}", file=sys.stderr)
            return 1
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(table.drop(columns=[c for c in MPC_COLUMNS if c.startswith("mpc_source")]).to_string(index=False))
            print(network_lines(network, even))
        print(f"written: {where[0] / 'comparison.csv'}, {where[0] / 'network.csv'}, {where[0] / 'network_break_even.csv'}, {where[0] / 'network.png'}")
        return 0

    return run_on_ray("analysis.compare", body, where)


if __name__ == "__main__":
    sys.exit(main())

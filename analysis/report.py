"""A markdown report of everything under a results directory: every figure with its data and command.

``python -m analysis.report RESULTS_DIR [--out DIR] [--overwrite]`` finds the sweep tables
(``table.csv``) and baseline comparisons (``comparison.csv``) under ``RESULTS_DIR``, draws each
sweep's figures with :mod:`analysis.plots` into ``DIR/<sweep>/`` and the communication of every
run under ``RESULTS_DIR`` into ``DIR/communication/``, and writes ``DIR/report.md`` (default
``DIR``: ``RESULTS_DIR/report``): each figure embedded, with the table behind it (inline when
short, always linked as CSV) and the ``analysis.plots`` command that redraws it. No HTML: the
``markdown`` package is not a dependency.

Tables inline their numbers in the figures' units: accuracy in %, deltas in points, one decimal.

Exit status: 0 written; 1 written, but some sweep could not be drawn (the report and stderr
say why); 2 bad input (no such directory, no tables, a table that is not a sweep table or
comparison, a ``--out`` that cannot hold the report) or an existing report without
``--overwrite``: nothing is written; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from analysis.figures import Metric, Written, metric_for
from analysis.load import AggregationError, read_csv
from analysis.plot_axes import PlotError, read_table
from analysis.plots import plot_runs, plot_table
from testbed.cli import UsageError, output, path_argument, run_command
from testbed.files import write_atomic

REPORT = "report.md"
#: Longer tables are linked, not inlined: the figure already shows them.
INLINE_ROWS = 40


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(_cell, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """``<m>_mean``, ``<m>_std``, ``<m>_n`` columns as one ``mean ± std (n)`` column, in the
    figures' units (:func:`analysis.figures.metric_for`): accuracy in %, deltas in points, one
    decimal, the unit in the column's name; shares as drawn, two decimals; others as they are."""
    out = frame.copy()
    for mean in [c for c in frame.columns if c.endswith("_mean") and f"{c[:-5]}_std" in frame.columns]:
        metric = mean[:-5]
        drawn = metric_for(metric)
        percent = drawn is not None and drawn.scale == 100
        unit = "" if not percent else " (points)" if drawn.kind == "delta" else " (%)"
        std, count = frame[f"{metric}_std"], frame.get(f"{metric}_n")
        cells = [("" if pd.isna(m) else f"{_number(m, drawn, signed=unit == ' (points)')} ± {_number(0 if pd.isna(s) else s, drawn)}"
                  + ("" if count is None else f" ({int(n)})"))
                 for m, s, n in zip(frame[mean], std, count if count is not None else [None] * len(frame))]
        out = out.drop(columns=[c for c in (mean, f"{metric}_std", f"{metric}_n") if c in out.columns]).assign(**{metric + unit: cells})
    return out


def _number(value: float, drawn: Metric | None, signed: bool = False) -> str:
    if drawn is None:
        return f"{value:.4g}"
    if drawn.scale == 1:
        return f"{value:.2f}"
    return f"{drawn.scale * value:+.1f}" if signed else f"{drawn.scale * value:.1f}"


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _command(*parts: object) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


def _figure_section(item: Written, out: Path, command: str) -> list[str]:
    png, svg, csv = item.files
    lines = [f"### {item.title}", "", f"![{item.title}]({_relative(png, out)})", "",
             f"Vector: [{svg.name}]({_relative(svg, out)}). Data: [{csv.name}]({_relative(csv, out)}) ({len(item.table)} rows). "
             f"Command: `{command}`", ""]
    if len(item.table) <= INLINE_ROWS:
        lines += ["Mean ± std (n seeds or runs):", "", markdown_table(compact(item.table)), ""]
    return lines


def build(results: Path, out: Path) -> tuple[str, list[str]]:
    """Draw every figure and return the report's text and the problems met (sweeps not drawn)."""
    tables = sorted(p for p in results.rglob("table.csv") if out not in p.parents)
    comparisons = sorted(p for p in results.rglob("comparison.csv") if out not in p.parents)
    if not tables and not comparisons:
        raise UsageError(f"{results}: no table.csv or comparison.csv under it; allowed: a directory of analysis.sweep or analysis.compare results")
    # Every table is parsed before anything is drawn: a malformed one is named, and nothing is written.
    rows = {table: len(read_table(table)) for table in tables}
    compared = {comparison: read_csv(comparison, required=("protocol",)) for comparison in comparisons}
    network_columns = ("network_setup_seconds", "network_seconds_per_epoch")
    networks = {comparison: read_csv(comparison.parent / "network.csv", required=("protocol", "network", *network_columns), numeric=network_columns)
                for comparison in comparisons if (comparison.parent / "network.csv").is_file()}
    problems: list[str] = []
    lines = [f"# Results report: {results}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{_command('python', '-m', 'analysis.report', results, '--out', out)}`. "
             "Every figure is drawn from the files under the results directory; its data and the command that redraws it "
             "follow it. Honest parties are averaged per run, then mean ± standard deviation over seeds (n stated).", ""]
    for table in tables:
        sweep = table.parent
        target = out / sweep.name
        lines += [f"## Sweep `{sweep.name}`", ""]
        lines += [f"Table: `{table}` ({rows[table]} rows of completed runs, one per run and party).", ""]
        try:
            written, skipped = plot_table(table, target, only=("harm", "filters", "epochs"))
        except (PlotError, AggregationError) as err:
            problems.append(f"{table}: {err}")
            lines += [f"**Not drawn:** {err}", ""]
            continue
        for item in written:
            lines += _figure_section(item, out, _command("python", "-m", "analysis.plots", table, "--out", target, "--only", item.name))
        lines += [f"Not drawn: {reason}" for reason in skipped] + ([""] if skipped else [])
    lines += ["## Communication", "", f"Every complete run under `{results}`, by protocol, beside published MPC-training volumes "
              "(`analysis/published_mpc/published_mpc_volumes.csv`, copied from the shared `published_mpc_training.csv` with its sources).", ""]
    written, skipped = plot_runs([results], out / "communication", only=["communication"])
    for item in written:
        lines += _figure_section(item, out, _command("python", "-m", "analysis.plots", results, "--only", "communication", "--out", out / "communication"))
    lines += [f"Not drawn: {reason}" for reason in skipped] + ([""] if skipped else [])
    for comparison, frame in compared.items():
        shown = frame[[c for c in frame.columns if not c.startswith("mpc_source")]]
        lines += [f"## Baselines: `{comparison.parent.name}`", "",
                  f"`{comparison}`, written by `python -m analysis.compare` (honest parties' means per protocol; "
                  "`mpc_*`: the traffic secure joint training would need).", "", markdown_table(shown), ""]
        if comparison in networks:
            wide = networks[comparison].pivot_table(index="protocol", columns="network", values="network_seconds_per_epoch", sort=False).reset_index()
            lines += [f"Network seconds per exchange epoch on each profile (`{comparison.parent / 'network.csv'}`, figure "
                      f"`{comparison.parent / 'network.png'}`): network time only, the recorded bytes over bandwidth plus rounds "
                      "times round-trip time, no computation (docs/network.md).", "", markdown_table(wide), ""]
    return "\n".join(lines), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("results", type=path_argument, help="results directory (sweeps, comparisons, runs)")
    parser.add_argument("--out", type=path_argument, help="report directory (default: RESULTS_DIR/report)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    args = parser.parse_args(argv)

    def body() -> int:
        if not args.results.is_dir():
            what = "is a file, not a directory" if args.results.exists() else "no such directory"
            raise UsageError(f"{args.results}: {what}; allowed: a results directory (of sweeps, comparisons and runs)")
        out = output(args.out or args.results / "report", "--out", create=False)
        if (out / REPORT).exists() and not args.overwrite:
            raise UsageError(f"--out {out}: {out / REPORT} exists; allowed: --overwrite to replace it, or another --out")
        text, problems = build(args.results, out)
        write_atomic(output(out, "--out") / REPORT, text + "\n")
        print(f"written: {out / REPORT}")
        for problem in problems:
            print(f"not drawn: {problem}", file=sys.stderr)
        return 1 if problems else 0

    return run_command("analysis.report", body, lambda: "the report was not written")


if __name__ == "__main__":
    sys.exit(main())

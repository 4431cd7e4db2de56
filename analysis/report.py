"""A markdown report of everything under a results directory: every figure with its data and command.

``python -m analysis.report RESULTS_DIR [--out DIR] [--overwrite]`` finds the sweep tables
(``table.csv``) and baseline comparisons (``comparison.csv``) under ``RESULTS_DIR``, draws each
sweep's figures with :mod:`analysis.plots` into ``DIR/<sweep>/`` and the communication of every
run under ``RESULTS_DIR`` into ``DIR/communication/``, and writes ``DIR/report.md`` (default
``DIR``: ``RESULTS_DIR/report``): each figure embedded, with the table behind it (inline when
short, always linked as CSV) and the ``analysis.plots`` command that redraws it. No HTML: the
``markdown`` package is not a dependency.

Exit status: 0 written; 1 written, but some sweep could not be drawn (the report and stderr
say why); 2 bad input (no such directory, no tables) or an existing report without
``--overwrite``: nothing is written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from analysis.load import AggregationError
from analysis.plots import PlotError, Written, plot_runs, plot_table
from testbed.results import write_atomic

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
    """``<m>_mean``, ``<m>_std``, ``<m>_n`` columns as one ``mean ± std (n)`` column ``<m>``."""
    out = frame.copy()
    for mean in [c for c in frame.columns if c.endswith("_mean") and f"{c[:-5]}_std" in frame.columns]:
        metric = mean[:-5]
        std, count = frame[f"{metric}_std"], frame.get(f"{metric}_n")
        cells = [("" if pd.isna(m) else f"{m:.4g} ± {0 if pd.isna(s) else s:.2g}" + ("" if count is None else f" ({int(n)})"))
                 for m, s, n in zip(frame[mean], std, count if count is not None else [None] * len(frame))]
        out = out.drop(columns=[c for c in (mean, f"{metric}_std", f"{metric}_n") if c in out.columns]).assign(**{metric: cells})
    return out


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
        raise FileNotFoundError(f"no table.csv or comparison.csv under {results}")
    problems: list[str] = []
    lines = [f"# Results report: {results}", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{_command('python', '-m', 'analysis.report', results, '--out', out)}`. "
             "Every figure is drawn from the files under the results directory; its data and the command that redraws it "
             "follow it. Honest parties are averaged per run, then mean ± standard deviation over seeds (n stated).", ""]
    for table in tables:
        sweep = table.parent
        target = out / sweep.name
        lines += [f"## Sweep `{sweep.name}`", ""]
        try:
            lines += [f"Table: `{table}` ({len(pd.read_csv(table))} rows, one per run and party).", ""]
            written, skipped = plot_table(table, target, only=("harm", "filters", "epochs"))
        except (PlotError, AggregationError, ValueError) as err:
            problems.append(f"{table}: {err}")
            lines += [f"**Not drawn:** {err}", ""]
            continue
        for item in written:
            lines += _figure_section(item, out, _command("python", "-m", "analysis.plots", table, "--out", target, "--only", item.name))
        lines += [f"Not drawn: {reason}" for reason in skipped] + ([""] if skipped else [])
    lines += ["## Communication", "", f"Every complete run under `{results}`, by protocol, beside published MPC-training volumes "
              "(`analysis/mpc/published_mpc_volumes.csv`, copied from the shared `published_mpc_training.csv` with its sources).", ""]
    written, skipped = plot_runs([results], out / "communication", only=["communication"])
    for item in written:
        lines += _figure_section(item, out, _command("python", "-m", "analysis.plots", results, "--only", "communication", "--out", out / "communication"))
    lines += [f"Not drawn: {reason}" for reason in skipped] + ([""] if skipped else [])
    for comparison in comparisons:
        frame = pd.read_csv(comparison)
        shown = frame[[c for c in frame.columns if not c.startswith("mpc_source")]]
        lines += [f"## Baselines: `{comparison.parent.name}`", "",
                  f"`{comparison}`, written by `python -m analysis.compare` (honest parties' means per protocol; "
                  "`mpc_*`: the traffic secure joint training would need).", "", markdown_table(shown), ""]
    return "\n".join(lines), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="results directory (sweeps, comparisons, runs)")
    parser.add_argument("--out", type=Path, help="report directory (default: RESULTS_DIR/report)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    args = parser.parse_args(argv)
    out = args.out or args.results / "report"
    if not args.results.is_dir():
        print(f"analysis.report: no such directory: {args.results}", file=sys.stderr)
        return 2
    if (out / REPORT).exists() and not args.overwrite:
        print(f"analysis.report: {out / REPORT} exists; pass --overwrite to replace it or choose another --out", file=sys.stderr)
        return 2
    try:
        text, problems = build(args.results, out)
    except FileNotFoundError as err:
        print(f"analysis.report: {err}", file=sys.stderr)
        return 2
    write_atomic(out / REPORT, text + "\n")
    print(f"written: {out / REPORT}")
    for problem in problems:
        print(f"not drawn: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

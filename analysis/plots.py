"""Figures from a sweep (its ``table.csv`` and run directories) or any set of run directories.

``python -m analysis.plots TABLE.csv | SWEEP_DIR | RUN_DIR ... [--out DIR] [--facet AXIS]
[--series AXIS] [--select AXIS=VALUE] [--only NAME]`` writes the figures of
:mod:`analysis.figures` (``harm``, ``filters``, ``epochs``, ``communication``), each as PNG and
SVG with the CSV of the numbers drawn (default ``--out``: ``figures/`` beside the table, or in the
first directory). Which column is drawn how is :mod:`analysis.plot_axes`'s rule; ``--facet`` and
``--series`` overrule it, ``--select`` keeps one value of an axis.

Exit status as :mod:`testbed.cli`: 2 for bad input (a table that is not a sweep table, an unknown
``--facet``/``--series``/``--select``), or when nothing could be drawn (each figure left out is
named on stderr with why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.figures import Written, communication_figure, epochs_figure, filter_figure, harm_figure, save
from analysis.load import load_runs, load_summaries
from analysis.plot_axes import SEED, PlotError, plan, read_table, select, table_axes
from testbed.cli import UsageError, output, path_argument, run_command

FIGURES = ("harm", "filters", "epochs", "communication")


def plot_table(path: Path, out: Path, facet: tuple[str, ...] = (), series: tuple[str, ...] = (), choices: list[str] = (),
               only: tuple[str, ...] = FIGURES) -> tuple[list[Written], list[str]]:
    """Every figure a sweep table (and the run directories beside it) supports; returns what was
    written and, for each figure left out, why."""
    table = select(read_table(path), list(choices))
    if table.empty:
        raise PlotError(f"{path}: no rows of completed runs to draw")
    layout = plan(table, table_axes(table), facet, series)
    written, skipped = [], []
    makers = {"harm": (harm_figure, "honest accuracy and attack harm"), "filters": (filter_figure, "defence precision, recall and kept share")}
    for name in [n for n in ("harm", "filters") if n in only]:
        maker, title = makers[name]
        try:
            fig, stats = maker(table, layout)
        except PlotError as err:
            skipped.append(f"{name}: {err}")
            continue
        written.append(Written(name, title, save(fig, stats, out, name), stats))
    orders = {axis: list(dict.fromkeys(table[axis].astype(str))) for axis in table_axes(table) if axis in layout.axes}
    others, notes = plot_runs([path.parent], out, facet, series, choices, [n for n in only if n in ("epochs", "communication")], orders)
    return written + others, skipped + notes


def plot_runs(paths: list[Path], out: Path, facet: tuple[str, ...] = (), series: tuple[str, ...] = (), choices: list[str] = (),
              only: list[str] = ("epochs", "communication"), orders: dict[str, list[str]] | None = None) -> tuple[list[Written], list[str]]:
    """Accuracy-per-epoch and communication figures from the run directories under ``paths``
    (``orders``: each axis's values in the order to draw them, e.g. the sweep's)."""
    written, skipped = [], []
    if "epochs" in only:
        runs = load_runs(paths)
        axes, keys, incomplete = runs.attrs["axes"], runs.attrs["scenario_keys"], runs.attrs["skipped"]
        if incomplete:
            skipped.append(f"epochs: {len(incomplete)} runs not complete, left out: " + ", ".join(incomplete[:5]) + (", ..." if len(incomplete) > 5 else ""))
        runs = runs[~runs["reference"]] if not runs.empty else runs
        if runs.empty:
            skipped.append("epochs: no complete run directories")
        else:
            runs = select(runs, list(choices))
            # Without sweep directory names, the scenario keys that vary are the axes.
            candidates = axes or [c for c in keys if c != SEED]
            layout = plan(runs.drop_duplicates("run"), candidates + [c for c in keys if c not in candidates], facet, series)
            fig, stats = epochs_figure(runs, layout, orders)
            written.append(Written("epochs", "honest accuracy per epoch", save(fig, stats, out, "epochs"), stats))
    if "communication" in only:
        summaries = load_summaries(paths)
        try:
            fig, stats = communication_figure(summaries)
        except PlotError as err:
            skipped.append(f"communication: {err}")
        else:
            written.append(Written("communication", "communication per protocol", save(fig, stats, out, "communication"), stats))
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.plots", description=__doc__.split("\n")[0])
    parser.add_argument("paths", type=path_argument, nargs="+", help="a sweep's table.csv or directory, or run directories")
    parser.add_argument("--out", type=path_argument, help="directory for the figures (default: figures/ beside the table or in the first directory)")
    parser.add_argument("--facet", action="append", default=[], metavar="AXIS", help="draw one panel per value of AXIS")
    parser.add_argument("--series", action="append", default=[], metavar="AXIS", help="draw one bar or line per value of AXIS")
    parser.add_argument("--select", action="append", default=[], metavar="AXIS=VALUE", help="keep only the rows with AXIS=VALUE")
    parser.add_argument("--only", action="append", choices=FIGURES, help="draw only these figures")
    args = parser.parse_args(argv)

    def body() -> int:
        missing = [str(p) for p in args.paths if not p.exists()]
        if missing:
            raise UsageError(f"no such file or directory: {', '.join(missing)}; allowed: a sweep's table.csv or directory, or run directories")
        first = args.paths[0]
        table = first if first.is_file() else first / "table.csv"
        only = tuple(args.only or FIGURES)
        if table.is_file() and len(args.paths) == 1:
            out = output(args.out or table.parent / "figures", "--out", create=False)
            written, skipped = plot_table(table, out, tuple(args.facet), tuple(args.series), args.select, only)
        else:
            out = output(args.out or first / "figures", "--out", create=False)
            written, skipped = plot_runs(args.paths, out, tuple(args.facet), tuple(args.series), args.select,
                                         [n for n in only if n in ("epochs", "communication")])
        for item in written:
            print(f"{item.name}: {', '.join(map(str, item.files))}")
        for reason in skipped:
            print(f"not drawn: {reason}", file=sys.stderr)
        return 0 if written else 2

    return run_command("analysis.plots", body, lambda: "figures already written are complete; the others were not drawn")


if __name__ == "__main__":
    sys.exit(main())

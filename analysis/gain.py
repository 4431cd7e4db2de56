"""The gain map: SMuLe's clean gain over local training, per setting, over seeds.

``python -m analysis.gain TABLE.csv [TABLE.csv ...] [--out DIR] [--overwrite]`` reads clean sweep
tables whose ``defence`` axis has the arms ``local`` (each party alone) and ``none`` (SMuLe
without a filter), and any other defences; per setting (the values of every other axis, e.g.
``split=dirichlet0.3,samples=600``) it gives the honest parties' accuracy of each arm and its gain
over local training in points, mean +- std over seeds (the gain is taken per seed, then
averaged). Writes ``gain.md``, and ``gain.png`` / ``.svg`` / ``.csv`` (the gain of ``none`` per
setting) into ``DIR`` (default ``results/gain``). Exit status 2 as ``analysis.frontier`` for
missing or malformed tables, a setting without its ``local`` or ``none`` arm, or an existing
``gain.md`` without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.frontier import DEFENCE, NONE, FrontierError, gain_points, read_tables
from analysis.figures import save
from testbed.cli import UsageError, output, path_argument
from testbed.files import write_atomic

REPORT = "gain.md"


def markdown(points: pd.DataFrame) -> str:
    defences = [d for d in dict.fromkeys(points[DEFENCE]) if d != NONE]
    lines = ["# SMuLe's clean gain over local training", "",
             "Honest parties' accuracy (%), mean +- std over seeds; gain: the defence minus local training, per seed, in points.", "",
             "| " + " | ".join(["setting", "seeds", "local", "none", "gain (none)"] + [f"gain ({d})" for d in defences]) + " |",
             "|---|---|---|---|---|" + "---|" * len(defences)]
    for setting, rows in points.groupby("setting", sort=False):
        by = rows.set_index(DEFENCE)
        none = by.loc[NONE]
        cells = [f"{by.loc[d, 'gain_mean']:+.1f} +- {by.loc[d, 'gain_std']:.1f}" if d in by.index else "-" for d in defences]
        first = [setting, str(int(none["seeds"])), f"{none['local_accuracy_mean']:.1f}", f"{none['accuracy_mean']:.1f} +- {none['accuracy_std']:.1f}",
                 f"**{none['gain_mean']:+.1f} +- {none['gain_std']:.1f}**"]
        lines.append("| " + " | ".join(first + cells) + " |")
    return "\n".join(lines) + "\n"


def figure(points: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    none = points[points[DEFENCE] == NONE].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(none) + 1.6))
    ax.barh(range(len(none)), none["gain_mean"], xerr=none["gain_std"].fillna(0), color="tab:blue", ecolor="0.4", capsize=2)
    ax.set_yticks(range(len(none)), none["setting"], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("SMuLe (no filter) minus local training, honest accuracy (points; mean +- std over seeds)")
    ax.set_title(f"Where SMuLe pays off ({int(none['seeds'].min())} seeds)", fontsize=10)
    fig.tight_layout()
    return fig, none


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.gain", description=__doc__.split("\n")[0])
    parser.add_argument("tables", type=path_argument, nargs="+", help="clean sweep table.csv files with local and none arms")
    parser.add_argument("--out", type=path_argument, default=Path("results") / "gain", help="output directory (default results/gain)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing gain map in --out")
    args = parser.parse_args(argv)
    try:
        output(args.out, "--out", create=False)
        if (args.out / REPORT).exists() and not args.overwrite:
            raise FrontierError(f"{args.out / REPORT} exists; pass --overwrite to replace it or choose another --out")
        gain, _ = read_tables(args.tables, with_harm=False)
        points = gain_points(gain, min_gain=0.0)
        output(args.out, "--out")
    except (FrontierError, UsageError) as err:
        print(f"analysis.gain: {err}", file=sys.stderr)
        return 2
    fig, drawn = figure(points)
    save(fig, drawn, args.out, "gain")
    text = markdown(points)
    write_atomic(args.out / REPORT, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Robustness plots from a sweep table: the honest parties' accuracy and ASR per attack and filter.

``python -m analysis.plots results/sweeps/<name>/table.csv [--out DIR]`` writes
``robustness.png`` (and the aggregated ``robustness.csv``) next to the table by default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from testbed.results import write_atomic  # noqa: E402


def honest_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy and ASR of the honest parties per sweep variant (every non-metric column)."""
    honest = table[table["role"] == "honest"]
    keys = [c for c in ("attack", "filter", "mutual", "protocol") if c in honest.columns]
    return honest.groupby(keys, sort=False)[["accuracy", "asr"]].mean().reset_index()


def robustness_figure(means: pd.DataFrame, attack: str = "attack", series: str = "filter") -> plt.Figure:
    panels = [c for c in means.columns if c not in (attack, series, "accuracy", "asr")]
    groups = list(means.groupby(panels, sort=False)) if panels else [((), means)]
    fig, axes = plt.subplots(2, len(groups), figsize=(5 * len(groups), 6), squeeze=False)
    for col, (key, frame) in enumerate(groups):
        order = {"index": frame[attack].unique(), "columns": frame[series].unique()}  # keep the sweep's order
        frame.pivot(index=attack, columns=series, values="accuracy").reindex(**order).plot.bar(ax=axes[0, col], legend=False, rot=0)
        frame.pivot(index=attack, columns=series, values="asr").reindex(**order).plot.bar(ax=axes[1, col], legend=False, rot=0)
        title = ", ".join(f"{p}={k}" for p, k in zip(panels, key if isinstance(key, tuple) else (key,)))
        axes[0, col].set_title(title or "honest parties")
        axes[0, col].set_ylim(max(0.0, float(frame["accuracy"].min()) - 0.05), 1.0)
        axes[0, col].set_ylabel("clean test accuracy")
        axes[1, col].set_ylabel("attack success rate")
        axes[1, col].set_ylim(0, max(0.05, float(frame["asr"].max()) * 1.1))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title=series, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.plots", description=__doc__.split("\n")[0])
    parser.add_argument("table", type=Path)
    parser.add_argument("--out", type=Path, help="directory for the figure (default: the table's)")
    args = parser.parse_args(argv)
    out = args.out or args.table.parent
    out.mkdir(parents=True, exist_ok=True)
    means = honest_means(pd.read_csv(args.table, dtype={"mutual": str}))
    write_atomic(out / "robustness.csv", means.to_csv(index=False))
    figure = robustness_figure(means)
    partial = out / ".robustness.tmp.png"
    figure.savefig(partial, dpi=120)
    partial.replace(out / "robustness.png")
    print(means.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The seeded robustness table: what each attack achieved against each defence, as deltas.

``python -m analysis.robustness TABLE.csv [TABLE.csv ...] [--out DIR]`` reads sweep tables
(``analysis.sweep`` output, whose runs carry their rate-0 references), keeps the honest
parties, and aggregates over seeds: mean and standard deviation of the honest ASR delta and
accuracy delta (against the same scenario at rate 0, same seed), and the defence's precision,
recall, kept share and cost (``dropped_useful``) against the clean-twin ground truth. Writes
``robustness.csv`` and ``robustness.md`` (one markdown table per sweep) to ``DIR`` (default: next
to the first table) and prints the markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.load import BOOKKEEPING, is_measurement, read_csv
from testbed.cli import UsageError, output, path_argument, run_command
from testbed.files import write_atomic

METRICS = {
    "asr_delta": "honest ASR delta",
    "accuracy_delta": "honest accuracy delta",
    "filter_precision": "precision",
    "filter_recall": "recall",
    "filter_kept": "kept",
    "filter_dropped_useful": "dropped useful",
}
#: Columns of a sweep table that are neither measurements nor sweep axes.
NOT_AXES = BOOKKEEPING | {"seed", "protocol", "scheme", "evaluated_on", "sweep"}


def load_tables(paths: list[Path]) -> pd.DataFrame:
    """The sweep tables, one ``sweep`` column naming each table's directory; each checked first
    (:func:`analysis.load.read_csv`): a sweep table with a number in every metric column."""
    return pd.concat([read_csv(p, required=("role", "seed", *METRICS), numeric=METRICS).assign(sweep=Path(p).parent.name) for p in paths],
                     ignore_index=True)


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Honest parties' metrics per sweep variant: mean, std and count over seeds (and parties)."""
    honest = table[table["role"] == "honest"]
    axes = ["sweep"] + [c for c in honest.columns if c not in NOT_AXES and not is_measurement(c) and not c.startswith("key.")]
    stats = honest.groupby(axes, sort=False, dropna=False)[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats["seeds"] = honest.groupby(axes, sort=False, dropna=False)["seed"].nunique()
    return stats.reset_index()


def markdown(summary: pd.DataFrame) -> str:
    """One table per sweep: percentage points for ASR and accuracy deltas, shares for the rest."""
    out = []
    for sweep, frame in summary.groupby("sweep", sort=False):
        axes = [c for c in frame.columns if c not in ("sweep", "seeds") and not any(c.startswith(m) for m in METRICS) and frame[c].notna().any()]
        out.append(f"### {sweep} ({int(frame['seeds'].min())} seeds; mean +- std)\n")
        out.append("| " + " | ".join(axes + list(METRICS.values())) + " |")
        out.append("|" + "---|" * (len(axes) + len(METRICS)))
        for _, row in frame.iterrows():
            cells = [str(row[a]) for a in axes]
            for metric in METRICS:
                scale = 100 if metric.endswith("_delta") else 1
                mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                cells.append("-" if pd.isna(mean) else f"{scale * mean:+.1f} +- {scale * std:.1f}" if scale == 100 else f"{mean:.2f}")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.robustness", description=__doc__.split("\n")[0])
    parser.add_argument("tables", type=path_argument, nargs="+", help="sweep table.csv files")
    parser.add_argument("--out", type=path_argument, help="output directory (default: the first table's directory)")
    args = parser.parse_args(argv)

    def body() -> int:
        missing = [str(p) for p in args.tables if not p.is_file()]
        if missing:
            raise UsageError(f"no such table: {', '.join(missing)}; allowed: sweep table.csv files")
        summary = seed_summary(load_tables(args.tables))
        out = output(args.out or args.tables[0].parent, "--out")
        text = markdown(summary)
        write_atomic(out / "robustness.csv", summary.to_csv(index=False))
        write_atomic(out / "robustness.md", text + "\n")
        print(text)
        return 0

    return run_command("analysis.robustness", body, lambda: "robustness.md and .csv are left as they were")


if __name__ == "__main__":
    sys.exit(main())

"""Secure-training communication figures printed in the literature, with their settings.

The table lives in ``published_mpc_training.csv`` beside this module, one row per printed
figure. A row is added only when the number was read in the paper itself (``as_printed``
keeps its wording, ``where`` its table or section); a figure that could not be checked is
left out rather than recalled. ``value`` is the number in ``unit`` exactly as the ``metric``
defines it: per iteration, per epoch, whole training run, or a ratio against prior work. The
settings (parties, threat model, network, LAN/WAN) differ from this testbed's, so the rows
are context for the measured and modelled CrypTen figures, not substitutes for them.

``published_mpc_volumes.csv`` holds the absolute volumes that :mod:`analysis.figures` draws: rows
copied verbatim from the shared ``published_mpc_training.csv`` (Piranha's Tables 2 and 4, read
from the numbers its artifact repository hard-codes; Table 2's units are inferred, its
``unit_checked`` is ``no``), read by :func:`load_volumes`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

CSV_PATH = Path(__file__).with_name("published_mpc_training.csv")
COLUMNS = (
    "paper", "venue_year", "framework", "parties", "network", "dataset", "batch_size",
    "setting", "metric", "value", "unit", "as_printed", "where", "notes",
)  # fmt: skip
_NUMERIC = ("parties", "batch_size", "value")


def load_published(path: Path | str = CSV_PATH) -> pd.DataFrame:
    """Read the published figures.

    Returns:
        A DataFrame with the columns in :data:`COLUMNS`, then ``source``, the label to report
        each figure with; ``parties``, ``batch_size`` and ``value`` are numeric
        (``batch_size`` is NaN where the figure spans several).

    Raises:
        ValueError: if a column is missing, or a numeric column or a ``value`` is not a number.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    for column in _NUMERIC:
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text.mask(text == ""), errors="coerce")
        invalid = numbers.isna() & ((text != "") | (column != "batch_size"))
        if invalid.any():
            row = invalid.idxmax()
            raise ValueError(f"{path}: line {row + 2}: {column} must be a number, got {frame.at[row, column]!r}")
        frame[column] = numbers.astype(float) if column == "value" else numbers
    frame = frame[list(COLUMNS)]
    frame["source"] = "published: " + frame["framework"] + ", " + frame["venue_year"] + ", " + frame["where"]
    return frame


VOLUMES_CSV = Path(__file__).with_name("published_mpc_volumes.csv")
VOLUME_COLUMNS = (
    "paper", "framework", "parties", "network", "dataset", "batch_size", "epochs", "metric",
    "value", "unit", "unit_checked", "source", "as_printed",
)  # fmt: skip
#: Training-set sizes of the datasets the volumes were measured on (the standard splits), to
#: turn per-iteration figures into per-epoch ones and per-epoch ones into per-sample ones.
TRAIN_SAMPLES = {"MNIST": 60_000, "CIFAR-10": 50_000}


def load_volumes(path: Path | str = VOLUMES_CSV) -> pd.DataFrame:
    """Published training-communication volumes (rows copied verbatim from the shared
    ``published_mpc_training.csv``: Piranha's Tables 2 and 4), normalised for plotting.

    Returns:
        The CSV's columns, then ``per_epoch_bytes``, ``per_run_bytes`` (NaN where the figure is
        per iteration: the run length is not printed), ``per_sample_epoch_bytes``, ``label``
        (framework, parties, network, dataset), ``source`` (paper and table, metric, unit) and
        ``caveat`` (what was assumed to make the figure comparable).

    Raises:
        ValueError: if a column is missing, or a row's unit or metric is not one this knows.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in VOLUME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    rows = []
    for line, row in enumerate(frame.to_dict("records"), start=2):
        if not row["unit"].startswith("GB"):
            raise ValueError(f"{path}: line {line}: unit {row['unit']!r} is not a volume in GB")
        total = float(row["value"]) * 1e9
        samples = TRAIN_SAMPLES[row["dataset"]]
        caveats = [] if row["unit_checked"].startswith("yes") else ["unit inferred, not checked in the paper"]
        if row["metric"].startswith("training communication over"):
            epochs = int(row["epochs"])
            per_epoch, per_run = total / epochs, total
            caveats.append(f"per epoch = the {epochs}-epoch total / {epochs}")
        elif row["metric"].startswith("training communication per iteration"):
            iterations = math.ceil(samples / int(row["batch_size"]))
            per_epoch, per_run = total * iterations, math.nan
            caveats.append(f"per epoch = per iteration x {iterations} (batch {row['batch_size']}, {samples:,} samples)")
        else:
            raise ValueError(f"{path}: line {line}: metric {row['metric']!r} is not a per-run or per-iteration volume")
        rows.append({
            **row, "per_epoch_bytes": per_epoch, "per_run_bytes": per_run, "per_sample_epoch_bytes": per_epoch / samples,
            "label": f"{row['framework']}, {row['parties']} parties, {row['network']}, {row['dataset']}",
            "source": f"published: {row['paper']}; {row['metric']}, {row['unit']}",
            "caveat": "; ".join(caveats),
        })
    return pd.DataFrame(rows)

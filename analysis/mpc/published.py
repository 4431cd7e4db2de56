"""Secure-training communication figures printed in the literature, with their settings.

The table lives in ``published_mpc_training.csv`` beside this module, one row per printed
figure. A row is added only when the number was read in the paper itself (``as_printed``
keeps its wording, ``where`` its table or section); a figure that could not be checked is
left out rather than recalled. ``value`` is the number in ``unit`` exactly as the ``metric``
defines it: per iteration, per epoch, whole training run, or a ratio against prior work. The
settings (parties, threat model, network, LAN/WAN) differ from this testbed's, so the rows
are context for the measured and modelled CrypTen figures, not substitutes for them.
"""

from __future__ import annotations

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

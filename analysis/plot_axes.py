"""How a figure draws a table: every column that is not a measurement is an *axis*, and each axis
that varies gets a role.

``rate`` / ``poison_rate`` (else ``attack``) go on the x axis; ``defence`` / ``filter`` /
``protocol`` / ``variant`` / ``method`` are series; ``mutual``, ``lambda``, ``split``, ``scheme``,
``dataset``, ``model``, ``epochs`` (and ``attack`` when the rate is on the x axis) are panels;
``seed`` is aggregated over. A column that only follows the drawn axes (``protocol`` follows
``defence=local``), or labels single runs (a run key), is not an axis of its own. Any other varying
axis is drawn by a default, named in the footnote: as the series if there is none yet, else as
panels (``--facet``/``--series`` choose otherwise, ``--select`` keeps one value): nothing is
averaged unseen, and no sweep is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.load import BOOKKEEPING, TableError, is_measurement, read_csv
from testbed.cli import UsageError

X_AXES = ("rate", "poison_rate", "attack")
SERIES_AXES = ("defence", "defense", "filter", "protocol", "variant", "method")
FACET_AXES = ("mutual", "lambda", "split", "scheme", "dataset", "model", "epochs")
SEED = "seed"


class PlotError(UsageError):
    """The input cannot be drawn as asked; the message says why and what to pass."""


@dataclass
class Layout:
    x: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    facets: list[str] = field(default_factory=list)
    fixed: dict[str, str] = field(default_factory=dict)
    derived: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)  # axes of no known role, drawn by the default rule

    @property
    def axes(self) -> list[str]:
        return [*self.x, *self.series, *self.facets]

    def footnote(self) -> str:
        parts = []
        if self.fixed:
            parts.append("fixed: " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()))
        if self.derived:
            parts.append("follow the axes drawn (or label single runs): " + ", ".join(self.derived))
        if self.defaulted:
            parts.append("drawn by the default for unfamiliar axes (series, else panels; --series/--facet choose): "
                         + ", ".join(f"{c} as {'series' if c in self.series else 'panels'}" for c in self.defaulted))
        return "; ".join(parts)


#: The role of an axis whose name is not in X_AXES, SERIES_AXES or FACET_AXES (see :func:`plan`).
UNFAMILIAR = 3


def _role(column: str, facet: tuple[str, ...], series: tuple[str, ...]) -> tuple[int, int]:
    """Sort key and role of a candidate axis: ``(role, priority)``; role :data:`UNFAMILIAR` means unknown."""
    name = column.removesuffix(".kind")
    if column in series:
        return 1, 0
    if column in facet:
        return 2, 0
    for role, known in enumerate((X_AXES, SERIES_AXES, FACET_AXES)):
        if name in known:
            return role, known.index(name)
    return UNFAMILIAR, 0


def _determined(frame: pd.DataFrame, column: str, by: list[str]) -> bool:
    keys = [c for c in by if c in frame.columns]
    if not keys:
        return frame[column].astype(str).nunique() <= 1
    return bool((frame.assign(_v=frame[column].astype(str)).groupby(keys, dropna=False)["_v"].nunique() <= 1).all())


def _identifies_runs(frame: pd.DataFrame, column: str, axes: list[str]) -> bool:
    """A per-run label (a run key, a directory): one value per run, several runs per drawn cell;
    such a column differs between seeds without being a setting that seeds average over."""
    if SEED not in frame.columns:
        return False
    runs = frame[[*axes, SEED]].astype(str).drop_duplicates()
    cells = frame[axes].astype(str).drop_duplicates() if axes else runs.iloc[:1]
    return len(runs) > len(cells) and _determined(frame, column, [*axes, SEED]) and frame[column].astype(str).nunique() == len(runs)


def plan(frame: pd.DataFrame, candidates: list[str], facet: tuple[str, ...] = (), series: tuple[str, ...] = ()) -> Layout:
    """Give every varying candidate axis a role (x, series, panel). An axis of no known role is
    drawn as the series if there is none yet, else as panels (:data:`UNFAMILIAR`): never averaged,
    never refused.

    Raises:
        PlotError: for a ``--facet`` or ``--series`` that names no axis.
    """
    for name in (*facet, *series):
        if name not in candidates:
            raise PlotError(f"--facet/--series {name}: no such axis (axes: {', '.join(candidates) or 'none'})")
    layout = Layout()
    varying = []
    for column in candidates:
        if column == SEED:
            continue
        values = frame[column].astype(str).unique()
        if len(values) > 1:
            varying.append(column)
        else:
            layout.fixed[column] = values[0]
    for column in sorted(varying, key=lambda c: _role(c, facet, series)):
        role, _ = _role(column, facet, series)
        if _determined(frame, column, layout.axes) or _identifies_runs(frame, column, layout.axes):
            layout.derived.append(column)
        elif role == UNFAMILIAR:
            (layout.facets if layout.series else layout.series).append(column)
            layout.defaulted.append(column)
        elif role == 0 and layout.x:
            layout.facets.append(column)  # one x axis: the rate wins, the attack becomes panels
        else:
            (layout.x, layout.series, layout.facets)[role].append(column)
    layout.facets.sort(key=candidates.index)  # panels in the table's column order, as the sweep wrote them
    return layout


def select(frame: pd.DataFrame, choices: list[str]) -> pd.DataFrame:
    """Keep the rows with ``AXIS=VALUE`` for each choice."""
    for choice in choices:
        axis, sep, value = choice.partition("=")
        if not sep or axis not in frame.columns:
            raise PlotError(f"--select {choice}: expected AXIS=VALUE with AXIS one of the columns")
        kept = frame[frame[axis].astype(str) == value]
        if kept.empty:
            raise PlotError(f"--select {choice}: no rows; {axis} takes {', '.join(frame[axis].astype(str).unique())}")
        frame = kept
    return frame


def read_table(path: Path) -> pd.DataFrame:
    """A sweep table: axes as strings (they are variant names), measurements as numbers; rows of
    runs that did not complete (a ``status`` column other than ``complete``) are dropped."""
    try:
        table = read_csv(path, required=("role", "accuracy", "seed"), dtype=str, keep_default_na=False, na_values=[""])
    except TableError as err:
        raise PlotError(f"not a sweep table: {err}") from None
    for column in table.columns:
        if is_measurement(column):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    if "status" in table.columns:
        failed = table["status"] != "complete"
        if failed.any():
            print(f"{path}: {failed.sum()} rows of runs that did not complete are left out", file=sys.stderr)
        table = table[~failed]
    return table


def table_axes(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in BOOKKEEPING and not is_measurement(c)]


def honest_per_run(frame: pd.DataFrame, layout: Layout, metrics: list[str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The honest parties' mean per run (and per ``extra`` key, e.g. the epoch)."""
    honest = frame[frame["role"] == "honest"]
    keys = [*layout.axes, SEED, *extra]
    return honest.groupby(keys, sort=False, dropna=False)[metrics].mean().reset_index()


def ordered(frame: pd.DataFrame, orders: dict[str, list[str]]) -> pd.DataFrame:
    """Rows sorted by each axis's order in ``orders`` (the sweep's order), stably."""
    for column in reversed([c for c in orders if c in frame.columns]):
        rank = {value: i for i, value in enumerate(orders[column])}
        frame = frame.sort_values(column, key=lambda values: values.map(rank).fillna(len(rank)), kind="stable")
    return frame

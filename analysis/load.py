"""Run directories into pandas frames, and aggregation over seeds.

``load_runs(paths)`` reads every run directory found under ``paths`` (a run directory holds
``status.json``; a sweep directory holds many) into one frame, one row per run x party x epoch
from ``metrics.jsonl``: the nested ``filter`` and ``seconds`` dicts become ``filter_*`` and
``seconds_*`` columns, ``role`` comes from the party's scenario, the sweep axes from the
directory name (``axis=value,...``, kept as strings: they are variant names) and the scenario
keys that vary between the loaded runs from each ``scenario.yaml`` under their dotted path
(``training.mutual_weight``); ``seed``, ``epochs``, ``protocol.kind``, ``scheme.kind`` and
``dataset.kind`` (and ``scheme.mode``) are always there. Runs whose status is not ``complete`` are skipped and listed
in ``frame.attrs["skipped"]``. ``load_summaries(paths)`` gives one row per complete run from its
``summary.json`` (communication included). ``aggregate`` gives mean, standard deviation and
count over seeds, and refuses to average rows that differ in anything but the seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from testbed.cli import UsageError
from testbed.result_schema import ResultsError, read_epochs, read_summary
from testbed.results import STATUS, SUMMARY, read_status

#: Where analysis.sweep puts each attacked run's rate-0 twin; those runs carry no axes.
REFERENCE_DIR = "rate0"
ALWAYS = ("seed", "epochs", "protocol.kind", "scheme.kind", "scheme.mode", "dataset.kind")
#: ``asr:B/label_flip`` and its ``asr_rate0:`` / ``asr_delta:``: one targeted attack's success
#: (``analysis.sweep.summary_rows``); ``asr_by_attack_*``: the same, flattened from metrics.jsonl.
_MEASUREMENT_PREFIXES = ("filter_", "seconds_", "bytes_", "messages_", "mpc_", "asr:", "asr_rate0:", "asr_delta:", "asr_by_attack")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads a 600-run sweep in a fraction of the time
_MEASUREMENTS = {"accuracy", "asr", "loss", "setup_bytes", "exchange_epochs"}


#: Table columns that describe a row without being a setting of the run.
BOOKKEEPING = {"party", "role", "status", "error", "run", "reference"}


class AggregationError(UsageError):
    """Rows that would be averaged over something other than seeds: the input needs an axis or a selection."""


class TableError(UsageError):
    """An input table or run file that cannot be read as one; the message names the file, the
    line or column, and what is allowed."""


def read_csv(path: Path, required: Iterable[str] = (), numeric: Iterable[str] = (), finite: bool = False, **options: Any) -> pd.DataFrame:
    """A CSV table, checked before anything is computed from it: UTF-8 text, a header, every row
    as wide as the header (a shorter one is truncated, not a run that "did not complete"), the
    ``required`` columns, and numbers in the ``numeric`` ones (``finite``: no NaN or infinity).
    Raises :class:`TableError`; ``options`` go to ``pandas.read_csv``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TableError(f"{path}: not UTF-8 text (byte {err.start}); allowed: a CSV table") from None
    except OSError as err:
        raise TableError(f"{path}: cannot read: {err.strerror or err}") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, [])
        if not any(field.strip() for field in header):
            raise TableError(f"{path}: no header line; allowed: a CSV table with a header line")
        for row in reader:
            if row and len(row) != len(header):
                raise TableError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {len(header)}: truncated or not a row of this table")
    except csv.Error as err:
        raise TableError(f"{path}: not CSV ({err}, line {reader.line_num})") from None
    missing = [column for column in required if column not in header]
    if missing:
        raise TableError(f"{path}: no {', '.join(map(repr, missing))} column; the columns are {', '.join(header[:12])}{' ...' if len(header) > 12 else ''}")
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
    except (pd.errors.ParserError, ValueError) as err:
        raise TableError(f"{path}: not CSV ({str(err).strip().splitlines()[0]})") from None
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        wrong = ~values.map(math.isfinite) if finite else values.isna() & frame[column].notna()
        if wrong.any():
            row = int(wrong.to_numpy().argmax())
            value = frame[column].iloc[row]
            shown = repr(value) if isinstance(value, str) else value
            raise TableError(f"{path}: data row {row + 1}, column {column!r}: {shown}; allowed: {'finite numbers' if finite else 'numbers'}")
        frame[column] = values
    return frame


def read_run_file(path: Path, parse: Callable[[str], Any]) -> Any:
    """``parse`` of a results file's text, or :class:`TableError` naming the file (a torn or foreign one)."""
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise TableError(f"{path}: malformed ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})") from None


def is_measurement(column: str) -> bool:
    """Whether ``column`` holds a measured value (as opposed to a setting of the run)."""
    return column in _MEASUREMENTS or column.startswith(_MEASUREMENT_PREFIXES) or column.endswith(("_delta", "_rate0"))


def find_runs(paths: Iterable[Path | str]) -> list[Path]:
    """Every run directory at or below ``paths``, sorted; a missing path raises FileNotFoundError."""
    runs = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such directory: {path}")
        runs.update(status.parent for status in path.rglob(STATUS))
    return sorted(runs)


def parse_axes(name: str) -> dict[str, str]:
    """``{axis: variant}`` from a sweep run's directory name, or ``{}`` for any other name."""
    pairs = [part.split("=", 1) for part in name.split(",")]
    return dict(pairs) if all(len(pair) == 2 and pair[0] for pair in pairs) else {}


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested mappings to dotted keys; lists become compact JSON so that they compare as values."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value, separators=(",", ":")) if isinstance(value, list) else value
    return out


def _complete(runs: list[Path]) -> tuple[list[Path], list[str]]:
    complete, skipped = [], []
    for run in runs:
        state = (read_status(run) or {}).get("state")
        if state == "complete" and (run / SUMMARY).is_file():
            complete.append(run)
        else:
            skipped.append(f"{run} ({state})")
    return complete, skipped


def _settings(runs: list[Path]) -> pd.DataFrame:
    """One row per run: sweep axes, ``reference``, and the scenario keys that vary (or ALWAYS)."""
    scenarios = [flatten(read_run_file(run / "scenario.yaml", _scenario)) for run in runs]
    keys = {key for scenario in scenarios for key in scenario}
    varying = [k for k in sorted(keys) if k in ALWAYS or len({repr(s.get(k)) for s in scenarios}) > 1]
    rows = []
    for run, scenario in zip(runs, scenarios):
        axes = parse_axes(run.name)
        rows.append({"run": str(run), "reference": run.parent.name == REFERENCE_DIR, **axes,
                     **{k: scenario.get(k) for k in varying if k not in axes}})
    frame = pd.DataFrame(rows)
    frame.attrs["axes"] = list(dict.fromkeys(a for run in runs for a in parse_axes(run.name)))
    frame.attrs["scenario_keys"] = [k for k in varying if k not in frame.attrs["axes"]]
    frame.attrs["roles"] = [{name: s.get(f"parties.{name}.role", "honest") for name in _parties(s)} for s in scenarios]
    frame.attrs["samples"] = [sum(s[f"parties.{name}.samples"] for name in _parties(s)) for s in scenarios]
    return frame


def _scenario(text: str) -> dict:
    scenario = yaml.load(text, Loader=_YAML_LOADER)
    if not isinstance(scenario, dict) or not isinstance(scenario.get("parties"), dict) or not all(
            isinstance(party, dict) and isinstance(party.get("samples"), int) for party in scenario["parties"].values()):
        raise ValueError("no parties with their samples")
    return scenario


def read_result(read: Callable[[Path], Any], path: Path) -> Any:
    """``read(path)`` (a loader of :mod:`testbed.result_schema`), its error a :class:`TableError`:
    results a command cannot read are bad input (exit 2), named with the file, version and key."""
    try:
        return read(path)
    except ResultsError as err:
        raise TableError(str(err)) from None


def _parties(scenario: dict[str, object]) -> list[str]:
    return list(dict.fromkeys(key.split(".")[1] for key in scenario if key.startswith("parties.")))


def load_runs(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per complete run x party x epoch under ``paths`` (see the module docstring)."""
    runs, skipped = _complete(find_runs(paths))
    settings = _settings(runs) if runs else pd.DataFrame()
    parts = []
    for i, run in enumerate(runs):
        metrics = pd.json_normalize([record.written() for record in read_result(read_epochs, run / "metrics.jsonl")], sep="_")
        # A null ``filter`` survives flattening as its own column beside the filter_* ones.
        metrics = metrics.drop(columns=[c for c in metrics if any(o.startswith(f"{c}_") for o in metrics)])
        metrics["role"] = metrics["party"].map(settings.attrs["roles"][i])
        parts.append(metrics.assign(**settings.iloc[i].to_dict()))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame.attrs.update(axes=settings.attrs.get("axes", []), scenario_keys=settings.attrs.get("scenario_keys", []), skipped=skipped)
    return frame


def load_summaries(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per complete run under ``paths``: its settings (as in ``load_runs``), ``scenario``,
    ``dataset`` (the summary's label), ``samples`` (all parties' training samples) and every
    scalar of the summary's ``communication``."""
    runs, skipped = _complete(find_runs(paths))
    settings = _settings(runs) if runs else pd.DataFrame()
    rows = []
    for i, run in enumerate(runs):
        summary = read_result(read_summary, run / SUMMARY)
        comm = {k: v for k, v in summary.communication.written().items() if not isinstance(v, dict)}
        rows.append({**settings.iloc[i].to_dict(), "scenario": summary.scenario, "dataset": summary.dataset,
                     "samples": settings.attrs["samples"][i], **comm})
    frame = pd.DataFrame(rows)
    frame.attrs.update(axes=settings.attrs.get("axes", []), scenario_keys=settings.attrs.get("scenario_keys", []), skipped=skipped)
    return frame


def aggregate(frame: pd.DataFrame, by: list[str], metrics: list[str], over: str = "seed") -> pd.DataFrame:
    """Mean, standard deviation (ddof 1) and count of non-null values of each metric per ``by``
    group, over ``over``: columns ``<metric>_mean``, ``<metric>_std``, ``<metric>_n``.

    Raises:
        AggregationError: if two rows of a group share the same ``over`` value, i.e. the group
            would average something other than seeds; the message names the setting columns
            that differ between them.
    """
    keys = list(by) or ["_all"]
    keyed = frame if by else frame.assign(_all="all rows")
    sizes = keyed.groupby([*keys, over], sort=False, dropna=False).size()
    if (sizes > 1).any():
        key = sizes.index[(sizes > 1).argmax()]
        group = keyed[(keyed[[*keys, over]].astype(str) == [str(k) for k in key]).all(axis=1)]
        differ = [c for c in frame.columns if c not in (*by, over) and not is_measurement(c) and group[c].astype(str).nunique() > 1]
        where = ", ".join(f"{c}={v}" for c, v in zip([*keys, over], key))
        raise AggregationError(f"{len(group)} rows for {where}: they differ in {', '.join(differ) or 'no setting column'}; group by those or select one value")
    stats = keyed.groupby(keys, sort=False, dropna=False)[list(metrics)].agg(["mean", "std", "count"])
    stats.columns = [f"{metric}_{'n' if stat == 'count' else stat}" for metric, stat in stats.columns]
    stats = stats.reset_index()
    return stats if by else stats.drop(columns="_all")

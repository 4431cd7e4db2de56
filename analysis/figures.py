"""The figures, each as PNG and SVG with the CSV of the numbers drawn:

- ``harm``: the honest parties' clean accuracy, accuracy delta and ASR delta (against the same
  run at poison rate 0, same seed), per attack and defence, or against the poison rate when the
  table has a rate axis (one line per defence / protocol); where a run has several targeted
  attacks, one ASR row per attack (``asr_delta:<attacker>/<attack>``);
- ``filters``: the defence's precision, recall (of the dropped predictions, against the
  clean-twin ground truth) and kept share;
- ``epochs``: honest accuracy per epoch (from ``metrics.jsonl``);
- ``communication``: bytes per exchange epoch, per whole run (setup included) and per training
  sample and epoch, per protocol, on log scales, beside published MPC-training volumes;
- ``network``: network time per exchange epoch against bandwidth, and in all against exchange
  epochs with the break-even points, per protocol and network profile (from recorded bytes and
  rounds; network time only).

Values are the honest parties' mean per run, then mean +- std over seeds, n stated; the axes'
roles come from :func:`analysis.plot_axes.plan`.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.communication import communication_rows  # noqa: E402
from analysis.load import aggregate  # noqa: E402
from analysis.network import Traffic, per_epoch_curve  # noqa: E402
from analysis.plot_axes import Layout, PlotError, honest_per_run, ordered  # noqa: E402
from analysis.published_mpc import load_volumes  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.network import Link, leg_seconds  # noqa: E402

#: Smallest half-range of a delta axis, in points: seed noise of a few tenths of a point must
#: not fill the panel (one test sample of 360 is 0.28 points).
MIN_DELTA_SPAN = 2.0
#: More bars than this in one panel and the values are left to the CSV.
ANNOTATE_BARS = 24

# SVG text stays text; a fixed hash salt (with no Date below) makes the same data give the same SVG.
plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "smule-testbed", "axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True})


@dataclass
class Written:
    name: str
    title: str
    files: list[Path]
    table: pd.DataFrame


def _label(row: pd.Series | dict, columns: list[str], named: bool = False) -> str:
    return ", ".join(f"{c}={row[c]}" if named else str(row[c]) for c in columns) if columns else "all runs"


def _panels(frame: pd.DataFrame, facets: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not facets:
        return [("", frame)]
    keys = frame[facets].drop_duplicates().to_dict("records")
    return [(_label(key, facets, named=True), frame[(frame[facets] == pd.Series(key)).all(axis=1)]) for key in keys]


def _colours(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _seeds_note(stats: pd.DataFrame, metric: str) -> str:
    counts = stats[f"{metric}_n"]
    counts = counts[counts > 0]
    if counts.empty:
        return "no runs"
    low, high = int(counts.min()), int(counts.max())
    return f"n = {low} seed{'s' if high > 1 else ''}" if low == high else f"n = {low} to {high} seeds"


def _empty_note(ax: plt.Axes, values: pd.Series, what: str) -> str:
    """Say so in the panel when nothing or only zeros would be drawn; returns "empty", "zero" or ""."""
    finite = values.dropna()
    if finite.empty:
        ax.text(0.5, 0.5, textwrap.fill(f"no values: {what}", 26), transform=ax.transAxes, ha="center", va="center", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "0.6"})
        return "empty"
    if (finite == 0).all():
        ax.text(0.5, 0.5, f"every value is 0\n({len(finite)} of {len(values)} drawn)", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, bbox={"facecolor": "lightyellow", "edgecolor": "0.6"})
        return "zero"
    return ""


@dataclass
class Metric:
    column: str
    ylabel: str
    scale: float = 1.0
    kind: str = "share"  # share: fixed [0, 1] range; delta: symmetric around 0, at least MIN_DELTA_SPAN
    empty: str = "not measured in these runs"


HARM = [
    Metric("accuracy", "honest clean accuracy (%)", 100, "share"),
    Metric("accuracy_delta", "accuracy delta vs rate 0\n(points)", 100, "delta"),
    Metric("asr_delta", "ASR delta vs rate 0\n(points)", 100, "delta", "ASR is undefined without a targeted attack"),
]
FILTERS = [
    Metric("filter_precision", "precision: harmful share\nof the dropped", 1, "share", "no filtering party"),
    Metric("filter_recall", "recall: dropped share\nof the harmful", 1, "share", "no filtering party"),
    Metric("filter_kept", "kept share of\npeer predictions", 1, "share", "no filtering party"),
]


def _limits(ax: plt.Axes, metric: Metric, low: float, high: float) -> None:
    if metric.kind == "share":
        ax.set_ylim(0, 1.2 * metric.scale)  # headroom for the values written above the bars
        ax.set_yticks(np.linspace(0, metric.scale, 6))
    else:
        pad = 0.12 * max(abs(low), abs(high), MIN_DELTA_SPAN)
        ax.set_ylim(min(-MIN_DELTA_SPAN, low - pad), max(MIN_DELTA_SPAN, high + pad))
        ax.axhline(0, color="0.3", linewidth=0.8)


def _bars(ax: plt.Axes, stats: pd.DataFrame, categories: list[str], colours: dict, metric: Metric, annotate: bool) -> tuple[float, float]:
    series = list(colours)
    width = 0.8 / len(series)
    positions = np.arange(len(categories))
    total = len(series) * len(categories)
    low, high = 0.0, 0.0
    for j, name in enumerate(series):
        sub = stats[stats["_series"] == name].set_index("_x").reindex(categories)
        mean = sub[f"{metric.column}_mean"] * metric.scale
        std = sub[f"{metric.column}_std"].fillna(0) * metric.scale
        where = positions - 0.4 + width * (j + 0.5)
        ax.bar(where, mean.fillna(0), width, yerr=std.where(mean.notna(), 0), capsize=2 if total <= 40 else 0,
                      color=colours[name], label=name, error_kw={"elinewidth": 0.8, "ecolor": "0.2"})
        if annotate and total <= ANNOTATE_BARS:
            for x, m, s in zip(where, mean, std):
                # Beyond the error bar, not on it: bar_label only knows the bar's height.
                y = 0 if pd.isna(m) else m + s if m >= 0 else m - s
                text = "n/a" if pd.isna(m) else f"{m:+.1f}" if metric.kind == "delta" else f"{m:.1f}" if metric.scale == 100 else f"{m:.2f}"
                ax.annotate(text, (x, y), xytext=(0, 2 if y >= 0 else -2), textcoords="offset points", ha="center",
                            va="bottom" if y >= 0 else "top", fontsize=7, rotation=90 if total > 8 else 0)
        if mean.notna().any():
            low, high = min(low, float((mean - std).min())), max(high, float((mean + std).max()))
    long = max(map(len, categories)) > 6
    ax.set_xticks(positions, categories, rotation=30 if long else 0, ha="right" if long else "center", fontsize=8)
    return low, high


def _lines(ax: plt.Axes, stats: pd.DataFrame, x: str, colours: dict, metric: Metric) -> tuple[float, float]:
    low, high = 0.0, 0.0
    for name, colour in colours.items():
        sub = stats[stats["_series"] == name].sort_values(x)
        mean = sub[f"{metric.column}_mean"] * metric.scale
        std = sub[f"{metric.column}_std"].fillna(0) * metric.scale
        ax.plot(sub[x], mean, marker="o", markersize=3, linewidth=1.2, color=colour, label=name)
        ax.fill_between(sub[x], mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
        if mean.notna().any():
            low, high = min(low, float((mean - std).min())), max(high, float((mean + std).max()))
    return low, high


def _rate_values(values: pd.Series) -> tuple[pd.Series, str]:
    """Poison-rate variant names as numbers in percent: shares (all <= 1) are scaled by 100."""
    numbers = pd.to_numeric(values.astype(str).str.rstrip("%"), errors="coerce")
    if numbers.isna().any():
        raise PlotError(f"rate axis values must be numbers: {', '.join(values[numbers.isna()].astype(str).unique())}")
    return (numbers * 100 if numbers.max() <= 1 else numbers), "poison rate (% of the party's data)"


def _finish(fig: plt.Figure, title: str, footnote: str = "", legend_from: plt.Axes | None = None, legend_title: str = "") -> None:
    """Title and legend above the panels, footnote below, with room reserved for each in inches."""
    width, height = fig.get_size_inches()
    handles, labels = legend_from.get_legend_handles_labels() if legend_from is not None else ([], [])
    title = "\n".join(textwrap.fill(line, int(width * 11)) for line in title.split("\n"))  # about 11 characters an inch at 11 pt
    title_in = 0.12 + 0.21 * (title.count("\n") + 1)
    columns = max(1, min(len(labels), int(width // 1.8)))
    legend_in = 0.3 + 0.2 * math.ceil(len(labels) / columns) if labels else 0.0
    lines = [line for part in footnote.split("\n") for line in textwrap.wrap(part, int(width * 16))] if footnote else []
    footnote_in = 0.1 + 0.13 * len(lines)  # about 16 characters an inch, 0.13 inch a line at 7 pt
    fig.text(0.5, 1 - 0.08 / height, title, fontsize=11, ha="center", va="top")  # not suptitle: tight_layout would reserve room twice
    if labels:
        fig.legend(handles, labels, title=legend_title or None, loc="upper center", ncol=columns, fontsize=8, title_fontsize=8,
                   bbox_to_anchor=(0.5, 1 - title_in / height), frameon=False)
    if lines:
        fig.text(0.01, 0.05 / height, "\n".join(lines), fontsize=7, color="0.25", ha="left", va="bottom")
    fig.tight_layout(rect=(0, footnote_in / height, 1, 1 - (title_in + legend_in) / height))


def _series_column(stats: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    return stats.assign(_series=stats.apply(lambda r: _label(r, layout.series), axis=1) if layout.series else "all runs",
                        _x=stats.apply(lambda r: _label(r, layout.x), axis=1) if layout.x else "all runs")


def metric_figure(table: pd.DataFrame, layout: Layout, metrics: list[Metric], title: str, note: str = "") -> tuple[plt.Figure, pd.DataFrame]:
    """Rows = metrics, columns = panels; bars per x category and series, or lines against the rate."""
    if not layout.x and layout.series:
        layout = Layout(x=layout.series, facets=layout.facets, fixed=layout.fixed, derived=layout.derived)
    columns = [m.column for m in metrics]
    stats = aggregate(honest_per_run(table, layout, columns), layout.axes, columns)
    stats = _series_column(stats, layout)
    rate = bool(layout.x) and layout.x[0].removesuffix(".kind") in ("rate", "poison_rate")
    if rate:
        stats["_rate"], xlabel = _rate_values(stats[layout.x[0]])
    categories = list(dict.fromkeys(stats["_x"]))
    colours = _colours(list(dict.fromkeys(stats["_series"])))
    panels = _panels(stats, layout.facets)
    bars = len(categories) * len(colours)
    width = 4.5 if rate else min(12.0, 1.6 + 0.17 * bars)
    # One scale per row, so that panels compare at a glance.
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(width * len(panels) + 0.8, 2.6 * len(metrics) + 1.8), squeeze=False, sharey="row")
    ranges = {row: (0.0, 0.0) for row in range(len(metrics))}
    for col, (panel_title, frame) in enumerate(panels):
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            state = _empty_note(ax, frame[f"{metric.column}_mean"], metric.empty)
            if rate:
                low, high = _lines(ax, frame, "_rate", colours, metric)
                ax.set_xlabel(xlabel if row == len(metrics) - 1 else "")
            else:
                low, high = _bars(ax, frame, categories, colours, metric, annotate=not state)
                if row < len(metrics) - 1:
                    ax.tick_params(labelbottom=False)
                else:
                    ax.set_xlabel(", ".join(layout.x))
            ranges[row] = (min(ranges[row][0], low), max(ranges[row][1], high))
            if col == 0:
                ax.set_ylabel(metric.ylabel, fontsize=9)
            if row == 0:
                ax.set_title(panel_title, fontsize=9)
    for row, metric in enumerate(metrics):
        for ax in axes[row]:
            _limits(ax, metric, *ranges[row])
    header = f"{title}\nmean ± std over seeds ({_seeds_note(stats, metrics[0].column)}; honest parties averaged per run; bars/bands: ± std)"
    _finish(fig, header + (f"\n{note}" if note else ""), layout.footnote(), axes[0, 0] if len(colours) > 1 else None, ", ".join(layout.series))
    return fig, stats.drop(columns=["_series", "_x"] + (["_rate"] if rate else []))


def harm_figure(table: pd.DataFrame, layout: Layout) -> tuple[plt.Figure, pd.DataFrame]:
    present = [m for m in HARM[:2] + asr_metrics(table) if m.column in table.columns]  # a table without rate-0 references has no deltas
    return metric_figure(table, layout, present, "Honest parties: clean accuracy, and the attack's harm against the same run at poison rate 0")


def asr_metrics(table: pd.DataFrame) -> list[Metric]:
    """The harm figure's ASR rows: the ASR delta, or, where a run has several targeted attacks (its
    single ``asr`` is then null), one row per attack (``asr_delta:<attacker>/<attack>``)."""
    attacks = [c for c in table.columns if c.startswith("asr_delta:")]
    if not attacks or not (table[attacks].notna().sum(axis=1) > 1).any():
        return HARM[2:]
    return [metric_for(column) for column in attacks]


def metric_for(column: str) -> Metric | None:
    """How the figures draw ``column`` (its label, scale and kind), or ``None`` for a column they do not draw."""
    known = {m.column: m for m in [*HARM, *FILTERS]}
    if column in known:
        return known[column]
    if column.startswith("asr_delta:"):
        return Metric(column, f"ASR delta vs rate 0,\n{column.removeprefix('asr_delta:')} (points)", 100, "delta", "this attack is not in these runs")
    return None


def filter_figure(table: pd.DataFrame, layout: Layout) -> tuple[plt.Figure, pd.DataFrame]:
    present = [m for m in FILTERS if m.column in table.columns]
    if not present or table[[m.column for m in present]].isna().all().all():
        raise PlotError("no filter measurements in the table")
    note = ""
    if "filter_harmful" in table.columns and (table["filter_harmful"].fillna(0) == 0).all():
        note = "No harmful predictions in these runs: recall is 1 by definition, and precision 0 wherever anything was dropped."
    return metric_figure(table, layout, present, "Defences: which peer predictions they drop (against the clean-twin ground truth)", note)


def epochs_figure(runs: pd.DataFrame, layout: Layout, orders: dict[str, list[str]] | None = None) -> tuple[plt.Figure, pd.DataFrame]:
    """Honest accuracy per epoch, one panel per x/facet value, a line and ± std band per series."""
    curves = runs[runs["epoch"] > 0]
    per_run = ordered(honest_per_run(curves, layout, ["accuracy"], extra=("epoch",)), orders or {})
    stats = aggregate(per_run, [*layout.axes, "epoch"], ["accuracy"])
    stats = _series_column(stats, Layout(series=layout.series))
    colours = _colours(list(dict.fromkeys(stats["_series"])))
    panels = _panels(stats, [*layout.x, *layout.facets])
    columns = min(len(panels), 4)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows + 1.8), squeeze=False, sharex=True, sharey=True)
    metric = Metric("accuracy", "honest clean accuracy (%)", 100)
    for i, (panel_title, frame) in enumerate(panels):
        ax = axes[i // columns, i % columns]
        _lines(ax, frame, "epoch", colours, metric)
        _empty_note(ax, frame["accuracy_mean"], metric.empty)
        ax.set_ylim(0, 100)
        ax.set_title(panel_title, fontsize=9)
        if i % columns == 0:
            ax.set_ylabel(metric.ylabel, fontsize=9)
        if i + columns >= len(panels):
            ax.set_xlabel("epoch")
            ax.tick_params(labelbottom=True)
    for j in range(len(panels), rows * columns):
        axes[j // columns, j % columns].set_visible(False)
    _finish(fig, f"Honest clean accuracy per epoch\nmean ± std band over seeds ({_seeds_note(stats, 'accuracy')}; honest parties averaged per run)",
            layout.footnote(), axes[0, 0] if len(colours) > 1 else None, ", ".join(layout.series))
    return fig, stats.drop(columns=["_series", "_x"])


def _bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g} B"


COMMUNICATION_STYLES = {
    "testbed, measured": {"color": "tab:blue"},
    "testbed, modelled": {"color": "tab:orange"},
    "published, unit checked": {"color": "0.45"},
    "published, unit inferred": {"color": "0.8", "hatch": "//", "edgecolor": "0.35"},
}


def communication_figure(summaries: pd.DataFrame) -> tuple[plt.Figure, pd.DataFrame]:
    """Horizontal log-scale bars: every testbed protocol found, then the published volumes; each
    bar's label ends in a [reference] that the footnote spells out."""
    ours, notes = communication_rows(summaries)
    if ours.empty:
        raise PlotError("no run with communication to draw: " + ("; ".join(notes) or "no complete runs"))
    published = load_volumes()
    references: dict[str, int] = {}

    def cite(text: str) -> str:
        return f"[{references.setdefault(text, len(references) + 1)}]"

    entries = []
    for _, r in ours.iterrows():
        ref = cite(f"{r['kind']} in this testbed: {r['n']} run{'s' if r['n'] > 1 else ''} of {textwrap.shorten(r['scenarios'], 80, placeholder=' ...')} "
                   f"in {textwrap.shorten(r['where'], 110, placeholder=' ...')}")
        entries.append({"label": f"{r['label']}; {r['dataset']}, {r['samples']:,} samples, {r['epochs']} epochs {ref}", "group": f"testbed, {r['kind']}",
                        "missing": r["missing"], **{m: r[m] for m in ("per_epoch", "per_run", "per_sample_epoch")}})
    for _, r in published.iterrows():
        ref = cite(f"{r['source']}" + (f"; {r['caveat']}" if r["caveat"] else ""))
        entries.append({"label": f"{r['label']} {ref}", "group": "published, unit checked" if r["unit_checked"].startswith("yes") else "published, unit inferred",
                        "per_epoch": r["per_epoch_bytes"], "per_run": r["per_run_bytes"], "per_sample_epoch": r["per_sample_epoch_bytes"],
                        "missing": "not printed"})
    drawn = pd.DataFrame(entries)
    panels = [("per_epoch", "bytes per exchange epoch (log scale)"), ("per_run", "bytes per whole run, setup included (log scale)"),
              ("per_sample_epoch", "bytes per training sample and epoch (log scale)")]
    fig, axes = plt.subplots(1, 3, figsize=(19, 0.36 * len(drawn) + 3.2), sharey=True)
    positions = np.arange(len(drawn))[::-1]
    for ax, (column, xlabel) in zip(axes, panels):
        for group, style in COMMUNICATION_STYLES.items():
            mask = (drawn["group"] == group).to_numpy() & drawn[column].notna().to_numpy()
            if mask.any():
                ax.barh(positions[mask], drawn[column][mask], height=0.7, label=group, **style)
        finite = drawn[column].dropna()
        ax.set_xscale("log")
        ax.set_xlim(max(1.0, finite.min() / 10), finite.max() * 300)
        for y, value, missing in zip(positions, drawn[column], drawn["missing"]):
            ax.text(value if pd.notna(value) else ax.get_xlim()[0], y, f" {_bytes(value)}" if pd.notna(value) else f" {missing}",
                    va="center", fontsize=7, color="0" if pd.notna(value) else "0.35")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(positions, drawn["label"], fontsize=8)
    footnote = "\n".join(
        [f"[{i}] {text}" for text, i in references.items()]
        + ["Testbed bytes count every direction; the published settings differ (datasets, networks, parties, threat models): "
           "compare orders of magnitude, and per sample. Joint MPC per run = per epoch x epochs (offline dealer traffic not counted)."]
        + [f"{note}." for note in notes])
    _finish(fig, "Training communication per protocol: this testbed's runs beside published MPC-training volumes", footnote, axes[0])
    table = pd.concat([ours.assign(source="testbed"), published[["label", "source", "caveat", "per_epoch_bytes", "per_run_bytes",
                                                                   "per_sample_epoch_bytes"]].rename(columns=lambda c: c.removesuffix("_bytes"))],
                      ignore_index=True)
    return fig, table


#: Line styles of the network profiles, in the order given.
PROFILE_STYLES = ("-", "--", ":", "-.")


def network_figure(traffic: list[Traffic], profiles: dict[str, Link], even: pd.DataFrame) -> plt.Figure:
    """Left: seconds of one exchange epoch against bandwidth (log-log), one colour per protocol, one
    line style per profile (its round-trip time, bandwidth varied; the dot is the profile itself).
    Right: setup plus n exchange epochs against n, each break-even point of ``even``
    (:func:`analysis.network.break_even`) marked."""
    drawn = [t for t in traffic if t.epoch.sends or t.setup.sends]
    if not drawn:
        raise PlotError("no run sends anything: there is no network time to draw")
    colours = _colours([t.label for t in traffic])
    styles = {name: PROFILE_STYLES[i % len(PROFILE_STYLES)] for i, name in enumerate(profiles)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    lowest = min(link.bandwidth_mbps for link in profiles.values())
    highest = max(link.bandwidth_mbps for link in profiles.values())
    bandwidths = list(np.logspace(math.log10(lowest) - 1, math.log10(highest) + 1, 61))
    for t in (t for t in drawn if t.epoch.sends):
        for name, link in profiles.items():
            left.plot(bandwidths, per_epoch_curve(t, bandwidths, link.rtt_ms), styles[name], color=colours[t.label], linewidth=1.2)
            left.plot([link.bandwidth_mbps], [leg_seconds(t.epoch, link)], "o", color=colours[t.label], markersize=4)
    for name, link in profiles.items():
        left.axvline(link.bandwidth_mbps, color="0.6", linewidth=0.8, linestyle=styles[name])
        left.text(link.bandwidth_mbps, 1.0, f" {name}", transform=left.get_xaxis_transform(), fontsize=8, va="top", ha="left", color="0.3")
    left.set(xscale="log", yscale="log", xlabel="bandwidth per direction, Mbit/s (log scale)", ylabel="network seconds per exchange epoch (log scale)")
    horizon = max(20, int(1.5 * even["epochs"].max())) if not even.empty else 20
    epochs = np.arange(1, horizon + 1)
    for t in drawn:
        for name, link in profiles.items():
            right.plot(epochs, [t.seconds(link, int(n)) for n in epochs], styles[name], color=colours[t.label], linewidth=1.2)
    for _, point in even.iterrows():
        if point["epochs"] <= horizon:
            link = profiles[point["network"]]
            seconds = next(t for t in traffic if t.label == point["protocol"]).seconds(link, int(point["epochs"]))
            right.plot([point["epochs"]], [seconds], "x", color=colours[point["against"]], markersize=7)
    right.set(yscale="log", xlabel="exchange epochs", ylabel="network seconds, setup included (log scale)")
    for t in drawn:
        left.plot([], [], color=colours[t.label], label=t.label)
    for name, link in profiles.items():
        left.plot([], [], styles[name], color="0.3", label=f"{name} ({link.bandwidth_mbps:g} Mbit/s, {link.rtt_ms:g} ms)")
    silent = [t.label for t in traffic if t not in drawn]
    footnote = ("Network time only, not measured: recorded bytes over bandwidth plus rounds times round-trip time, the busiest party's link per leg; "
                "no computation (docs/network.md). Left: each line keeps its profile's round-trip time and varies the bandwidth; the dot is the profile. "
                "Right: x (in the colour of the protocol overtaken) marks the exchange epoch from which a protocol with a costlier setup has "
                "taken less network time in all: " + ("; ".join(f"{r['network']}: {r['protocol']} against {r['against']}, {r['epochs']}" for _, r in even.iterrows()) or "none")
                + "." + (f" Not drawn (no network time): {', '.join(silent)}." if silent else ""))
    _finish(fig, "Network time per protocol: per exchange epoch against bandwidth, and in all against epochs", footnote, left)
    return fig


def save(fig: plt.Figure, table: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """``name``.png, .svg and .csv under ``out``, each replaced whole."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    partial = out / f".{name}.{os.getpid()}.tmp.png"
    fig.savefig(partial, dpi=110)
    partial.replace(png)
    svg = io.StringIO()
    fig.savefig(svg, format="svg", metadata={"Date": None})
    write_atomic(out / f"{name}.svg", svg.getvalue())
    write_atomic(out / f"{name}.csv", table.to_csv(index=False))
    plt.close(fig)
    return [png, out / f"{name}.svg", out / f"{name}.csv"]

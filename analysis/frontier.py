"""The utility-robustness frontier (docs/results.md): what each defence keeps of SMuLe's clean gain
against the worst harm an attack still does through it.

``python -m analysis.frontier TABLE.csv [TABLE.csv ...] [--out DIR] [--bound POINTS]
[--min-gain POINTS] [--choose-on SETTING] [--overwrite]`` reads sweep tables (``analysis.sweep`` output) of two kinds,
told apart by their ``attack`` axis:

* **gain tables** (no ``attack`` axis): clean runs with a ``defence`` axis that has the arms
  ``local`` (each party alone) and ``none`` (SMuLe without a filter). Per setting (the values of
  every other axis, e.g. ``split=dirichlet0.3``) and seed, the honest parties' mean accuracy gives
  each defence's gain over local training; its **share of the gain kept** is
  ``(acc_defence - acc_local) / (acc_none - acc_local)``: the ratio of the seed means, with the
  standard deviation over seeds of each seed's own ratio beside it (none where the no-filter
  gain is below ``--min-gain`` points, default 1: a setting without a gain has none to keep);
* **harm tables** (an ``attack`` axis): attacked runs, each with its rate-0 reference (same
  scenario and seed). A defence's harm under one attack is the larger of the honest parties'
  ASR delta and accuracy loss, each the mean over seeds, in points; its **worst-case harm** is the
  maximum over every attack of every harm table given, and the table names the attack.

One point per defence and setting: x the share kept, y the worst-case harm. Writes
``frontier.md``, ``frontier.csv`` (every point, drawn or not) and the figure ``frontier.png`` /
``.svg`` into ``DIR`` (default ``results/frontier``), and applies the rule that chooses a
default: **the defence that keeps the largest share of the gain among those whose worst-case harm
is at most ``--bound`` points** (default 2; ties go to the smaller harm; when none is within the
bound, the defence with the smallest worst-case harm, and the report says so), on the setting
named by ``--choose-on`` (needed when several settings have a gain).

Exit status 2, naming what is missing, for: a table that is missing or not a sweep table, no gain
table or no harm table, a table without a ``defence`` axis, a setting without its ``local`` or
``none`` arm, attacked rows without a rate-0 reference, an unknown ``--choose-on``, and an
existing ``frontier.md`` in ``DIR`` without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.figures import save
from analysis.load import BOOKKEEPING
from analysis.plot_axes import PlotError, read_table, table_axes
from testbed.cli import UsageError, output, path_argument
from testbed.files import write_atomic

DEFENCE, ATTACK, SEED = "defence", "attack", "seed"
LOCAL, NONE = "local", "none"
#: The worst-case harm a defence may have and still be chosen as the default, in points.
DEFAULT_BOUND = 2.0
#: Below this gain of SMuLe without a filter over local training (points) a setting has no gain
#: to keep: a share of a gain within seed noise says nothing.
DEFAULT_MIN_GAIN = 1.0
REPORT = "frontier.md"


class FrontierError(ValueError):
    pass


def read_tables(paths: list[Path], with_harm: bool = True) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """The tables, split into gain tables and harm tables (none allowed unless ``with_harm``);
    each gets a ``sweep`` column (its directory's name) and keeps its honest parties' rows."""
    gain, harm = [], []
    for path in paths:
        if not path.is_file():
            raise FrontierError(f"{path}: no such table")
        try:
            table = read_table(path)
        except PlotError as err:
            raise FrontierError(str(err)) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise FrontierError(f"{path}: not a sweep table ({str(err).strip().splitlines()[0]})") from None
        if DEFENCE not in table.columns:
            raise FrontierError(f"{path}: no '{DEFENCE}' axis; the frontier compares defences, named as in the sweeps' defence axis")
        if SEED not in table.columns:
            raise FrontierError(f"{path}: no '{SEED}' column; allowed: a sweep table, one row per run and party")
        table = table[table["role"] == "honest"].assign(sweep=path.parent.name)
        if table.empty:
            raise FrontierError(f"{path}: no rows of an honest party in a completed run")
        if ATTACK in table.columns and not with_harm:
            raise FrontierError(f"{path}: has an 'attack' axis; this reads clean sweeps only")
        (harm if ATTACK in table.columns else gain).append(table)
    if not gain:
        raise FrontierError("no gain table: give a clean sweep (no 'attack' axis) with 'local' and 'none' among its defences")
    if not harm and with_harm:
        raise FrontierError("no harm table: give an attack sweep (an 'attack' axis) run by analysis.sweep, with its rate-0 references")
    return gain, harm


def _setting_axes(table: pd.DataFrame, exclude: set[str]) -> list[str]:
    return [c for c in table_axes(table) if c not in exclude | BOOKKEEPING | {SEED, "sweep", "protocol", "scheme", "evaluated_on"} and not c.startswith("key.")]


def _label(row: pd.Series, axes: list[str]) -> str:
    return ",".join(f"{a}={row[a]}" for a in axes) or "all"


def gain_points(tables: list[pd.DataFrame], min_gain: float = DEFAULT_MIN_GAIN) -> pd.DataFrame:
    """Per setting and defence: honest accuracy and gain over local training (points, mean and
    std over seeds), and the share of the no-filter gain kept (blank where that gain is below
    ``min_gain`` points)."""
    rows = []
    for table in tables:
        axes = _setting_axes(table, {DEFENCE})
        per_run = table.groupby([*axes, DEFENCE, SEED], dropna=False)["accuracy"].mean().reset_index()
        per_run["setting"] = per_run.apply(_label, axis=1, axes=axes) if axes else "all"
        for setting, runs in per_run.groupby("setting", sort=False):
            accuracy = runs.pivot_table(index=SEED, columns=DEFENCE, values="accuracy")
            missing = [arm for arm in (LOCAL, NONE) if arm not in accuracy.columns]
            if missing:
                raise FrontierError(f"{table['sweep'].iloc[0]} ({setting}): no {' and no '.join(repr(m) for m in missing)} arm "
                                    f"in its defence axis ({', '.join(map(str, accuracy.columns))}); the gain is measured against both")
            accuracy = accuracy.dropna(subset=[LOCAL, NONE])
            full_gain = 100 * (accuracy[NONE] - accuracy[LOCAL])
            for defence in accuracy.columns:
                if defence == LOCAL:
                    continue
                gain = 100 * (accuracy[defence] - accuracy[LOCAL])
                usable = full_gain > 0
                per_seed = (gain[usable] / full_gain[usable]).dropna()
                rows.append({
                    "setting": setting, DEFENCE: defence, "seeds": int(accuracy[defence].notna().sum()),
                    "accuracy_mean": 100 * accuracy[defence].mean(), "accuracy_std": 100 * accuracy[defence].std(),
                    "local_accuracy_mean": 100 * accuracy[LOCAL].mean(),
                    "gain_mean": gain.mean(), "gain_std": gain.std(), "full_gain_mean": full_gain.mean(),
                    "kept_mean": gain.mean() / full_gain.mean() if full_gain.mean() >= min_gain else np.nan,
                    "kept_std": per_seed.std() if len(per_seed) > 1 else np.nan,
                })
    return pd.DataFrame(rows)


def harm_points(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per defence and attack (and any other axis of the harm tables): the honest ASR delta and
    accuracy loss in points, mean and std over seeds, and the harm, the larger of the two means."""
    rows = []
    for table in tables:
        name = table["sweep"].iloc[0]
        if not {"accuracy_delta", "asr_delta"} <= set(table.columns):
            raise FrontierError(f"{name}: no rate-0 reference (no accuracy_delta or asr_delta column); run it with analysis.sweep, which pairs every attacked run with one")
        if "reference" in table.columns:
            unpaired = table[table["reference"].isna()]
            if not unpaired.empty:
                listed = ", ".join(sorted({_label(r, [ATTACK, DEFENCE, SEED]) for _, r in unpaired.iterrows()})[:5])
                raise FrontierError(f"{name}: {len(unpaired)} row(s) have no rate-0 reference (an attack at rate 0 harms nothing): {listed}")
        axes = _setting_axes(table, {DEFENCE})
        per_run = table.groupby([*axes, DEFENCE, SEED], dropna=False)[["asr_delta", "accuracy_delta"]].mean().reset_index()
        per_run["loss"] = -100 * per_run["accuracy_delta"]
        per_run["asr"] = 100 * per_run["asr_delta"]
        stats = per_run.groupby([*axes, DEFENCE], dropna=False).agg(
            asr_mean=("asr", "mean"), asr_std=("asr", "std"), loss_mean=("loss", "mean"), loss_std=("loss", "std"), seeds=(SEED, "nunique")
        ).reset_index()
        stats["attack"] = name + ": " + stats.apply(_label, axis=1, axes=axes)
        stats["harm"] = stats[["asr_mean", "loss_mean"]].max(axis=1)
        stats["harm_std"] = np.where(stats["asr_mean"].fillna(-np.inf) >= stats["loss_mean"], stats["asr_std"], stats["loss_std"])
        stats["harm_by"] = np.where(stats["asr_mean"].fillna(-np.inf) >= stats["loss_mean"], "ASR delta", "accuracy loss")
        rows.append(stats[[DEFENCE, "attack", "asr_mean", "asr_std", "loss_mean", "loss_std", "harm", "harm_std", "harm_by", "seeds"]])
    return pd.concat(rows, ignore_index=True)


def frontier(gain: pd.DataFrame, harm: pd.DataFrame) -> pd.DataFrame:
    """One row per setting and defence: gain kept and worst-case harm (and the attack behind it).
    A defence measured on one side only keeps blanks on the other and is not drawn."""
    worst = harm.loc[harm.groupby(DEFENCE)["harm"].idxmax()].rename(columns={
        "harm": "worst_harm", "harm_std": "worst_harm_std", "harm_by": "worst_by", "attack": "worst_attack", "seeds": "harm_seeds"})
    worst = worst[[DEFENCE, "worst_harm", "worst_harm_std", "worst_by", "worst_attack", "harm_seeds"]]
    worst["attacks"] = worst[DEFENCE].map(harm.groupby(DEFENCE)["attack"].nunique())
    return gain.merge(worst, on=DEFENCE, how="outer")


def choose(points: pd.DataFrame, setting: str, bound: float) -> pd.Series | None:
    """The rule: the largest share kept among defences with worst-case harm <= ``bound``; ties
    to the smaller harm. When no defence is within the bound, the one with the smallest
    worst-case harm (the row's ``within_bound`` is then false). ``None`` when nothing was measured."""
    measured = points[(points["setting"] == setting) & points["worst_harm"].notna() & points["kept_mean"].notna()]
    if measured.empty:
        return None
    within = measured[measured["worst_harm"] <= bound]
    if within.empty:
        pick = measured.sort_values(["worst_harm", "kept_mean"], ascending=[True, False]).iloc[0]
    else:
        pick = within.sort_values(["kept_mean", "worst_harm"], ascending=[False, True]).iloc[0]
    return pd.concat([pick, pd.Series({"within_bound": not within.empty})])


def pareto(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other point beats on both axes (more gain kept and less harm)."""
    keep = []
    for i, row in points.iterrows():
        better = points[(points["kept_mean"] >= row["kept_mean"]) & (points["worst_harm"] <= row["worst_harm"])
                        & ((points["kept_mean"] > row["kept_mean"]) | (points["worst_harm"] < row["worst_harm"]))]
        if better.empty:
            keep.append(i)
    return points.loc[keep].sort_values("worst_harm")


def figure(points: pd.DataFrame, bound: float) -> tuple[plt.Figure, pd.DataFrame]:
    drawn = points.dropna(subset=["kept_mean", "worst_harm"])
    settings = list(dict.fromkeys(drawn["setting"]))
    fig, axes = plt.subplots(1, max(1, len(settings)), figsize=(6.2 * max(1, len(settings)), 5.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        panel = drawn[drawn["setting"] == setting]
        ax.axhspan(0, bound, color="tab:green", alpha=0.08, label=f"worst-case harm <= {bound:g} points")
        ax.errorbar(100 * panel["kept_mean"], panel["worst_harm"], xerr=100 * panel["kept_std"].fillna(0), yerr=panel["worst_harm_std"].fillna(0),
                    fmt="o", color="tab:blue", ecolor="0.6", capsize=3)
        front = pareto(panel)
        ax.plot(100 * front["kept_mean"], front["worst_harm"], "--", color="tab:red", label="frontier (no defence better on both)")
        for _, row in panel.iterrows():
            ax.annotate(row[DEFENCE], (100 * row["kept_mean"], row["worst_harm"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.axvline(100, color="0.5", lw=0.8)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xlabel("share of SMuLe's clean gain over local training kept (%)")
        ax.set_ylabel("worst-case honest harm over the attack suite (points)")
        seeds = f"{int(panel['seeds'].min())}-{int(panel['seeds'].max())}" if panel["seeds"].nunique() > 1 else f"{int(panel['seeds'].iloc[0])}"
        ax.set_title(f"{setting}: full gain {panel['full_gain_mean'].iloc[0]:+.1f} points ({seeds} seeds)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    if not settings:
        axes[0][0].text(0.5, 0.5, "no setting with both a gain and a harm figure", ha="center", va="center", transform=axes[0][0].transAxes)
    fig.suptitle("Utility-robustness frontier: each defence's gain kept against its worst attack", fontsize=11)
    fig.tight_layout()
    return fig, drawn


def markdown(points: pd.DataFrame, setting: str | None, choice: pd.Series | None, bound: float) -> str:
    lines = ["# Utility-robustness frontier", "",
             "Share kept: (acc_defence - acc_local) / (acc_none - acc_local), ratio of the seed means (+- std over seeds of each "
             "seed's ratio). Worst-case harm: the largest, over every attack, of the honest ASR delta and accuracy loss against "
             "rate 0 (mean over seeds, +- its std), in points.", ""]
    for name, panel in points.groupby("setting", sort=False):
        full = panel["full_gain_mean"].iloc[0]
        lines += [f"## {name} (full gain {full:+.1f} points, local {panel['local_accuracy_mean'].iloc[0]:.1f}%)", "",
                  "| defence | accuracy (%) | gain over local (points) | share kept | worst-case harm (points) | worst attack | seeds (gain / harm) |",
                  "|---|---|---|---|---|---|---|"]
        for _, row in panel.sort_values("worst_harm", na_position="last").iterrows():
            kept = "-" if pd.isna(row["kept_mean"]) else f"{100 * row['kept_mean']:.0f}%" + ("" if pd.isna(row["kept_std"]) else f" +- {100 * row['kept_std']:.0f}")
            harm = "-" if pd.isna(row["worst_harm"]) else f"{row['worst_harm']:.1f} +- {row['worst_harm_std']:.1f} ({row['worst_by']})"
            seeds = f"{int(row['seeds']) if pd.notna(row['seeds']) else '-'} / {int(row['harm_seeds']) if pd.notna(row['harm_seeds']) else '-'}"
            lines.append(f"| {row[DEFENCE]} | {row['accuracy_mean']:.1f} +- {row['accuracy_std']:.1f} | {row['gain_mean']:+.1f} +- {row['gain_std']:.1f} "
                         f"| {kept} | {harm} | {row['worst_attack'] if pd.notna(row['worst_attack']) else '-'} | {seeds} |")
        lines.append("")
    lines += ["## The default", "", f"Rule: the defence that keeps the largest share of the gain among those whose worst-case harm is at most "
              f"{bound:g} points (ties: the smaller harm), on `{setting}`.", ""]
    if setting is None:
        lines.append("Not applied: no setting has a gain to keep.")
    elif choice is None:
        lines.append("Not applied: no defence has both a gain and a harm figure on that setting.")
    else:
        if not choice["within_bound"]:
            lines.append(f"**No defence has a worst-case harm within {bound:g} points**; the rule falls back to the smallest worst-case harm.")
        lines.append(f"Chosen: **{choice[DEFENCE]}**, keeping {100 * choice['kept_mean']:.0f}% of the gain with a worst-case harm of "
                     f"{choice['worst_harm']:.1f} points ({choice['worst_attack']}).")
    return "\n".join(lines) + "\n"


def harm_matrix(harm: pd.DataFrame) -> str:
    """Every attack against every defence: the harm (points, mean over seeds), ``a`` where it is
    an accuracy loss rather than an ASR delta."""
    cells = harm.assign(cell=[f"{round(h)}" + ("a" if by == "accuracy loss" else "") for h, by in zip(harm["harm"], harm["harm_by"])])
    table = cells.pivot_table(index="attack", columns=DEFENCE, values="cell", aggfunc="first", sort=False)
    lines = ["", "## Harm of every attack against every defence", "",
             "Points, mean over seeds: the larger of the honest ASR delta and the accuracy loss (`a`); negative: better than at rate 0.", "",
             "| attack | " + " | ".join(f"`{d}`" for d in table.columns) + " |", "|---|" + "---|" * len(table.columns)]
    lines += [f"| {attack} | " + " | ".join("-" if pd.isna(c) else c for c in row) + " |" for attack, row in table.iterrows()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.frontier", description=__doc__.split("\n")[0])
    parser.add_argument("tables", type=path_argument, nargs="+", help="sweep table.csv files: clean (gain) and attacked (harm)")
    parser.add_argument("--out", type=path_argument, default=Path("results") / "frontier", help="output directory (default results/frontier)")
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND, help=f"largest worst-case harm (points) of a default (default {DEFAULT_BOUND:g})")
    parser.add_argument("--min-gain", type=float, default=DEFAULT_MIN_GAIN,
                        help=f"points of no-filter gain below which a setting has no gain to keep (default {DEFAULT_MIN_GAIN:g})")
    parser.add_argument("--choose-on", help="the setting (e.g. split=dirichlet0.3) whose gain the rule compares; needed when several have a gain")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing frontier in --out")
    args = parser.parse_args(argv)
    try:
        for option, value in (("--bound", args.bound), ("--min-gain", args.min_gain)):
            if not np.isfinite(value) or value < 0:
                raise FrontierError(f"{option} {value:g}: allowed are finite numbers of points >= 0")
        output(args.out, "--out", create=False)
        if (args.out / REPORT).exists() and not args.overwrite:
            raise FrontierError(f"{args.out / REPORT} exists; pass --overwrite to replace it or choose another --out")
        gain, harm = read_tables(args.tables)
        harm = harm_points(harm)
        points = frontier(gain_points(gain, args.min_gain), harm)
        with_gain = list(dict.fromkeys(points.loc[points["full_gain_mean"] >= args.min_gain, "setting"]))
        setting = args.choose_on or (with_gain[0] if len(with_gain) == 1 else None)
        if args.choose_on is not None and args.choose_on not in set(points["setting"]):
            raise FrontierError(f"--choose-on {args.choose_on!r}: no such setting; the tables have {', '.join(dict.fromkeys(points['setting'].dropna()))}")
        if setting is None and len(with_gain) > 1:
            raise FrontierError(f"several settings have a gain ({', '.join(with_gain)}): name the one the rule compares with --choose-on")
        output(args.out, "--out")
    except (FrontierError, UsageError) as err:
        print(f"analysis.frontier: {err}", file=sys.stderr)
        return 2
    choice = choose(points, setting, args.bound) if setting is not None else None
    fig, _ = figure(points, args.bound)
    save(fig, points, args.out, "frontier")
    text = markdown(points, setting, choice, args.bound) + harm_matrix(harm)
    write_atomic(args.out / REPORT, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

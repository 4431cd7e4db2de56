"""Tables and figures of the privacy audit (``python -m analysis.privacy report``).

Every headline number is a mean +- std over seeds of the per-seed mean over parties (or over
query directions), with the number of seeds stated. Figures: ROC curves of both attacks per
protocol on log-log axes (vertically averaged over seeds and parties), AUC bars per protocol,
and the accuracy cost of CKKS noise flooding.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from analysis.load import read_csv, read_run_file  # noqa: E402
from analysis.membership import FPRS, fpr_name  # noqa: E402
from testbed.cli import UsageError  # noqa: E402
from testbed.files import atomic_path  # noqa: E402
from testbed.files import write_atomic  # noqa: E402

ATTACKS = {"loss": "loss threshold", "lira": "offline LiRA"}
METRICS = ["auc"] + [f"tpr_at_{fpr_name(f)}" for f in FPRS]
AGREEMENTS = {
    "agreement_student_last": "student on last answers",
    "agreement_student_mean": "student on all answers",
    "agreement_querier_model": "querier's SMuLe model",
    "agreement_querier_local": "querier's local model",
}
SEQUENCE = {
    "auc_mean_margin": "AUC, mean margin",
    "auc_mean_calibrated": "AUC, mean calibrated margin",
    "auc_classifier": "AUC, cross-fitted classifier",
}
plt.rcParams.update({"axes.grid": True, "grid.alpha": 0.3, "axes.axisbelow": True})


class ReportError(UsageError):
    """Results the report cannot read, or outputs it must not overwrite."""


#: The columns each table must hold, and which of them are numbers, for the report to read it.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "membership": (("setting", "protocol", "relation", "attack", "seed", "nonmembers"), ("nonmembers", *METRICS)),
    "accuracy": (("setting", "protocol", "seed"), ("accuracy",)),
    "extraction": (("setting", "protocol", "seed"), tuple(AGREEMENTS)),
    "sequence": (("setting", "protocol", "candidates", "seed"), tuple(SEQUENCE)),
    "flood": (("setting", "seed"), ("flood_std", "accuracy")),
    "flood_flags": (("setting", "seed"), ("flood_std", "flagged")),
    "ckks_error": (("setting",), ("error_rms", "error_max_abs", "logits_per_run")),
}
KINDS = {"audit": ("membership", "accuracy", "extraction", "sequence"), "flood": ("flood", "flood_flags", "ckks_error")}
#: Tables a report cannot do without: the others may be empty (a measurement that was skipped).
NEEDS_ROWS = ("membership", "accuracy", "flood", "flood_flags")


def slug(label: str) -> str:
    """``CIFAR-10 (JPEG)`` -> ``cifar10_jpeg``: a file-name part for a data set label."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower().replace("-", "")).strip("_")


def read_results(directories: list[Path]) -> dict[str, list]:
    """Every audit's and flood measurement's tables, grouped by kind."""
    found: dict[str, list] = {"audit": [], "flood": []}
    for directory in directories:
        meta = directory / "meta.json"
        if not meta.is_file():
            raise ReportError(f"{directory}: no meta.json; expected a directory written by `python -m analysis.privacy audit` or `flood`")
        info = read_run_file(meta, _meta)
        loaded = {name: read_table(directory / f"{name}.csv", name) for name in KINDS[info["kind"]]}
        empty = [f"{name}.csv" for name in NEEDS_ROWS if name in loaded and loaded[name].empty]
        if empty:
            raise ReportError(f"{directory}: {', '.join(empty)} has no rows; the {info['kind']} did not finish a seed there")
        if info["kind"] == "audit":
            try:
                with np.load(directory / "scores.npz") as stored:
                    loaded["scores"] = dict(stored)
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise ReportError(f"{directory / 'scores.npz'}: not the audit's scores ({err})") from None
        found[info["kind"]].append((info, loaded))
    return found


def _meta(text: str) -> dict:
    info = json.loads(text)
    if not isinstance(info, dict) or not isinstance(info.get("kind"), str) or info["kind"] not in KINDS or not isinstance(info.get("setting"), str):
        raise ValueError(f"expected kind ({' or '.join(KINDS)}) and setting, as `python -m analysis.privacy audit` or `flood` writes them")
    return info


def read_table(path: Path, name: str) -> pd.DataFrame:
    """A result table, checked (:data:`TABLES`); an empty file (a measurement that was skipped) is an empty frame."""
    try:
        if path.is_file() and not path.read_bytes().strip():
            return pd.DataFrame()
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror or err}") from None
    required, numeric = TABLES[name]
    return read_csv(path, required=(*required, *numeric), numeric=numeric)


def over_seeds(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Mean over everything but ``keys`` and seed within a seed, then mean, std and count over seeds."""
    per_seed = frame.groupby(keys + ["seed"], sort=False)[values].mean().reset_index()
    stats = per_seed.groupby(keys, sort=False)[values].agg(["mean", "std"])
    stats.columns = [f"{value}_{stat}" for value, stat in stats.columns]
    stats["seeds"] = per_seed.groupby(keys, sort=False)["seed"].nunique()
    return stats.reset_index()


def cell(mean: float, std: float, digits: int = 3) -> str:
    """``mean ± std``; just the mean where one seed leaves no spread to state."""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def membership_table(membership: pd.DataFrame, accuracy: pd.DataFrame, relation: str) -> pd.DataFrame:
    """One row per data set and protocol: test accuracy and both attacks' metrics (mean ± std)."""
    stats = over_seeds(membership[membership["relation"] == relation], ["setting", "protocol", "attack"], METRICS)
    acc = over_seeds(accuracy, ["setting", "protocol"], ["accuracy"])
    rows = []
    for (setting, protocol), group in stats.groupby(["setting", "protocol"], sort=False):
        a = acc[(acc["setting"] == setting) & (acc["protocol"] == protocol)].iloc[0]
        row = {"setting": setting, "protocol": protocol, "seeds": int(group["seeds"].min()), "test accuracy": cell(a["accuracy_mean"], a["accuracy_std"])}
        for _, r in group.iterrows():
            for metric in METRICS:
                row[f"{r['attack']} {metric.replace('tpr_at_', 'TPR@').replace('auc', 'AUC')}"] = cell(r[f"{metric}_mean"], r[f"{metric}_std"])
        rows.append(row)
    return pd.DataFrame(rows)


def simple_table(stats: pd.DataFrame, keys: list[str], values: dict[str, str], digits: int = 3) -> pd.DataFrame:
    rows = []
    for _, r in stats.iterrows():
        row = {key: r[key] for key in keys} | {"seeds": int(r["seeds"])}
        row.update({label: cell(r[f"{value}_mean"], r[f"{value}_std"], digits) for value, label in values.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def flood_table(flood: pd.DataFrame, errors: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Per flood level: accuracy, its paired change from no flood, and how well the flood hides the
    measured CKKS error ``e``. The querier sees ``m + e + f`` where the flood ``f ~ N(0, s^2)``
    should make it look like ``m + f``; per logit the two are about ``|e| / (s sqrt(2 pi))`` apart in
    total variation at most; over the ``k`` logits of a whole run, Pinsker's inequality bounds the
    distance by ``sqrt(k) * rms(e) / (2 s)`` (treating the errors as independent of the flood)."""
    per_seed = flood.groupby(["setting", "flood_std", "seed"])["accuracy"].mean().reset_index()
    baseline = per_seed[per_seed["flood_std"] == 0].set_index(["setting", "seed"])["accuracy"]
    per_seed["delta"] = per_seed["accuracy"] - baseline.reindex(list(zip(per_seed["setting"], per_seed["seed"]))).to_numpy()
    stats = per_seed.groupby(["setting", "flood_std"])[["accuracy", "delta"]].agg(["mean", "std"])
    stats.columns = [f"{v}_{s}" for v, s in stats.columns]
    stats["seeds"] = per_seed.groupby(["setting", "flood_std"])["seed"].nunique()
    stats = stats.reset_index()
    flagged = over_seeds(flags, ["setting", "flood_std"], ["flagged"]).set_index(["setting", "flood_std"])
    if "error_rms" in errors:
        measured = errors.groupby("setting").agg(rms=("error_rms", "mean"), biggest=("error_max_abs", "max"), logits=("logits_per_run", "max"))
    else:
        measured = pd.DataFrame()
    rows = []
    for _, r in stats.iterrows():
        sigma = r["flood_std"]
        e = measured.loc[r["setting"]] if r["setting"] in measured.index else None

        def hidden(value: float) -> str:
            return "not measured" if e is None else "not hidden" if sigma == 0 else f"{value:.2g}"

        rows.append({
            "setting": r["setting"], "flood_std": f"{sigma:g}", "seeds": int(r["seeds"]),
            "test accuracy": cell(r["accuracy_mean"], r["accuracy_std"], 4),
            "change vs no flood (points)": cell(100 * r["delta_mean"], 100 * r["delta_std"], 2),
            "flood / CKKS error (rms)": hidden(sigma / e["rms"] if e is not None and sigma else 0),
            "TV per logit, max error": hidden(e["biggest"] / (sigma * math.sqrt(2 * math.pi)) if e is not None and sigma else 0),
            "TV bound, whole run": hidden(min(1.0, math.sqrt(e["logits"]) * e["rms"] / (2 * sigma)) if e is not None and sigma else 0),
            "answers the harm audit flags": cell(flagged.loc[(r["setting"], sigma), "flagged_mean"], flagged.loc[(r["setting"], sigma), "flagged_std"], 3),
        })
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


# -- figures ---------------------------------------------------------------------------------
def averaged_roc(scores: dict[str, np.ndarray], protocol: str, attack: str, relation: str, grid: np.ndarray) -> np.ndarray | None:
    """TPR on ``grid`` (FPR), averaged over every seed and (model, members) pair of ``relation``:
    at each FPR the best TPR the curve reaches without exceeding it."""
    curves = []
    for key, score in scores.items():
        parts = key.split("|")
        if parts[0] != protocol or parts[-1] != attack or (parts[2] == parts[3]) != (relation == "own"):
            continue
        fpr, tpr, _ = roc_curve(scores[f"members|{parts[1]}|{parts[3]}"], score, drop_intermediate=False)
        curves.append(tpr[np.searchsorted(fpr, grid, side="right") - 1])
    return np.mean(curves, axis=0) if curves else None


def draw_roc(setting: str, scores: dict[str, np.ndarray], protocols: list[str], nonmembers: int, path: Path) -> None:
    grid = np.logspace(math.log10(1 / nonmembers), 0, 200)
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(4.2 * len(ATTACKS), 3.8), sharey=True)
    for ax, (attack, title) in zip(axes, ATTACKS.items()):
        for protocol in protocols:
            tpr = averaged_roc(scores, protocol, attack, "own", grid)
            if tpr is not None:
                ax.plot(grid, np.maximum(tpr, 1e-4), label=protocol, lw=1.4)
        ax.plot(grid, grid, color="grey", ls="--", lw=0.8, label="chance")
        ax.set(xscale="log", yscale="log", xlabel="false-positive rate", title=f"{title}", xlim=(grid[0], 1), ylim=(grid[0] / 2, 1))
    axes[0].set_ylabel("true-positive rate")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Membership inference on each party's final model, {setting}", fontsize=10)
    save(fig, path)


def draw_auc(membership: pd.DataFrame, path: Path) -> None:
    settings = list(dict.fromkeys(membership["setting"]))
    relations = {"own": "members: the party's own samples", "peer": "members: the peer's samples"}
    fig, axes = plt.subplots(len(relations), len(settings), figsize=(5 * len(settings), 6.4), squeeze=False, sharey=True)
    for row, (relation, title) in enumerate(relations.items()):
        stats = over_seeds(membership[membership["relation"] == relation], ["setting", "protocol", "attack"], ["auc"])
        for col, setting in enumerate(settings):
            ax, part = axes[row][col], stats[stats["setting"] == setting]
            protocols = list(dict.fromkeys(part["protocol"]))
            for i, attack in enumerate(ATTACKS):
                values = part[part["attack"] == attack].set_index("protocol").reindex(protocols)
                ax.bar(np.arange(len(protocols)) + (i - 0.5) * 0.38, values["auc_mean"] - 0.5, 0.38, bottom=0.5,
                       yerr=values["auc_std"], capsize=2, label=ATTACKS[attack])
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_xticks(np.arange(len(protocols)), protocols, rotation=20, fontsize=8)
            ax.set_title(f"{setting}: {title} ({int(part['seeds'].min())} seeds)", fontsize=9)
        axes[row][0].set_ylabel("attack AUC (mean ± std)")
    axes[0][-1].legend(fontsize=7)
    save(fig, path)


def draw_flood(flood: pd.DataFrame, path: Path) -> None:
    """Change of test accuracy against no flood (paired by seed), per setting, on one level axis."""
    per_seed = flood.groupby(["setting", "flood_std", "seed"])["accuracy"].mean().reset_index()
    levels = sorted(per_seed["flood_std"].unique())
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for setting, part in per_seed.groupby("setting", sort=False):
        table = part.pivot(index="seed", columns="flood_std", values="accuracy")
        change = 100 * table.sub(table[0.0], axis=0)
        x = [levels.index(level) for level in change.columns]
        ax.errorbar(x, change.mean(), yerr=change.std(), marker="o", capsize=3, label=f"{setting} ({len(table)} seeds)")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(levels)), [f"{level:g}" for level in levels])
    ax.set(xlabel="flood_std (logit units)", ylabel="accuracy change, points (mean ± std)", title="SMuLe test accuracy under CKKS noise flooding")
    ax.legend(fontsize=7)
    save(fig, path)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".tmp.png") as partial:
        fig.savefig(partial, dpi=110)
    plt.close(fig)


# -- the report ------------------------------------------------------------------------------
def report(directories: list[Path], tables: Path, figures: Path, overwrite: bool) -> str:
    """Write the aggregated tables (CSV and ``tables.md``) and the figures; return the markdown."""
    found = read_results(directories)
    sections, outputs = [], {}
    if found["audit"]:
        membership = pd.concat([t["membership"] for _, t in found["audit"]], ignore_index=True)
        accuracy = pd.concat([t["accuracy"] for _, t in found["audit"]], ignore_index=True)
        extraction = pd.concat([t["extraction"] for _, t in found["audit"]], ignore_index=True)
        sequence = pd.concat([t["sequence"] for _, t in found["audit"]], ignore_index=True)
        own, peer = membership_table(membership, accuracy, "own"), membership_table(membership, accuracy, "peer")
        agree = simple_table(over_seeds(extraction, ["setting", "protocol"], list(AGREEMENTS)), ["setting", "protocol"], AGREEMENTS)
        seq = simple_table(over_seeds(sequence, ["setting", "protocol", "candidates"], list(SEQUENCE)), ["setting", "protocol", "candidates"], SEQUENCE)
        outputs.update({"membership_own.csv": own, "membership_peer.csv": peer, "extraction.csv": agree, "sequence.csv": seq})
        sections += [("Membership inference, members = the party's own training samples", own),
                     ("Membership inference through the peer: a party's final model, members = the peer's training samples", peer),
                     ("Extraction: test-set agreement with the responder's final model", agree),
                     ("Answer sequence vs held-out samples (the responder's answers or outputs over exchange epochs)", seq)]
    if found["flood"]:
        flood = pd.concat([t["flood"] for _, t in found["flood"]], ignore_index=True)
        errors = pd.concat([t["ckks_error"] for _, t in found["flood"]], ignore_index=True)
        flags = pd.concat([t["flood_flags"] for _, t in found["flood"]], ignore_index=True)
        flooded = flood_table(flood, errors, flags)
        outputs["flood.csv"] = flooded
        sections.append(("CKKS noise flooding: accuracy cost and the CKKS error it masks", flooded))
    pictures = {}
    for info, t in found["audit"]:
        nonmembers = int(t["membership"]["nonmembers"].min())
        pictures[f"privacy_roc_{slug(info['setting'])}.png"] = lambda p, i=info, t=t, n=nonmembers: draw_roc(i["setting"], t["scores"], list(dict.fromkeys(t["membership"]["protocol"])), n, p)
    if found["audit"]:
        pictures["privacy_auc.png"] = lambda p: draw_auc(membership, p)
    if found["flood"]:
        pictures["privacy_flood.png"] = lambda p: draw_flood(flood, p)
    targets = [tables / name for name in [*outputs, "tables.md"]] + [figures / name for name in pictures]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise ReportError(f"would overwrite {', '.join(existing)}; pass --overwrite")
    tables.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    for name, frame in outputs.items():
        write_atomic(tables / name, frame.to_csv(index=False))
    for name, draw in pictures.items():
        draw(figures / name)
    text = "\n\n".join(f"### {title}\n\n{markdown(frame)}" for title, frame in sections) + "\n"
    write_atomic(tables / "tables.md", text)
    return text

"""What the communication figure draws from run summaries: one row per protocol and volume (bytes
per exchange epoch, per whole run and per training sample and epoch), labelled and ordered, and
notes on what cannot be drawn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from testbed.registry import PROTOCOLS

PROTOCOL_LABELS = {"smule": "SMuLe", "fedavg": "FedAvg (model exchange)", "local": "local", "joint": "joint"}
#: Bars from top to bottom: SMuLe (CKKS first), the baselines, then anything else.
SCHEME_LABELS = {"ckks": "CKKS"}
PROTOCOL_ORDER = ("SMuLe, CKKS", "SMuLe", "FedAvg", "joint MPC training, measured", "joint MPC training, modelled", "")


def communication_rows(summaries: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per protocol and volume with bytes per epoch, per run and per sample-epoch (mean,
    min and max over its runs);
    and notes on what could not be drawn (a protocol that sends nothing, an unavailable
    measurement)."""
    runs = summaries[~summaries["reference"].astype(bool)] if "reference" in summaries else summaries
    rows, notes = [], []
    for _, run in runs.iterrows():
        protocol = run["protocol.kind"]
        where = str(Path(run["run"]).parent)
        base = {"scenario": run["scenario"], "dataset": run["dataset"], "samples": run["samples"], "epochs": run["epochs"], "where": where}
        name = PROTOCOL_LABELS.get(protocol, protocol)
        # A protocol that reports MPC training traffic (the joint baseline) sends no messages of its own.
        if pd.notna(run.get("mpc_bytes_per_epoch_model")):
            for kind, label in (("measured", f"{name} MPC training, measured (CrypTen)"), ("model", f"{name} MPC training, modelled (cost model)")):
                per_epoch = run.get(f"mpc_bytes_per_epoch_{kind}")
                reason = run.get("mpc_measured_unavailable") if kind == "measured" else None
                rows.append({**base, "label": label, "kind": "modelled" if kind == "model" else "measured", "per_epoch": per_epoch,
                             "per_run": per_epoch * run["epochs"],
                             "missing": "" if pd.notna(per_epoch) else f"unavailable: {reason.split(' (')[0] if isinstance(reason, str) else 'not in the summary'}"})
        elif run["bytes_per_epoch"] > 0:
            scheme = SCHEME_LABELS.get(run["scheme.kind"], run["scheme.kind"]) + (f" ({run['scheme.mode']} mode)" if isinstance(run.get("scheme.mode"), str) else "")
            label = f"{name}, {scheme}" if exchanges_answers(protocol) else name
            rows.append({**base, "label": label, "kind": "measured", "per_epoch": run["bytes_per_epoch"],
                         "per_run": run["setup_bytes"] + run["bytes_per_epoch"] * run["exchange_epochs"], "missing": ""})
        else:
            notes.append(f"{name} sends nothing [{where}]")
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, sorted(set(notes))
    frame["per_sample_epoch"] = frame["per_epoch"] / frame["samples"]
    frame["rank"] = frame["label"].map(lambda label: next(i for i, start in enumerate(PROTOCOL_ORDER) if label.startswith(start)))
    # Runs of different scenarios that sent the same bytes (to 3 significant digits: real CKKS
    # ciphertexts differ by a few bytes) are one bar; runs that differ more are never averaged.
    for column in ("per_epoch", "per_run"):
        frame[f"_{column}"] = frame[column].map(lambda v: float(f"{v:.3g}"))
    keys = ["rank", "label", "kind", "dataset", "samples", "epochs", "missing", "_per_epoch", "_per_run"]
    grouped = frame.sort_values(["rank", "samples", "label"], kind="stable").groupby(keys, sort=False, dropna=False)
    out = grouped[["per_epoch", "per_run", "per_sample_epoch"]].mean()
    for column in ("per_epoch", "per_run"):
        out[f"{column}_min"], out[f"{column}_max"] = grouped[column].min(), grouped[column].max()
    out["n"] = grouped.size()
    out["scenarios"] = grouped["scenario"].agg(lambda names: ", ".join(sorted(set(names))))
    out["where"] = grouped["where"].agg(lambda w: ", ".join(sorted(set(w))))
    return out.reset_index().drop(columns=["rank", "_per_epoch", "_per_run"]), sorted(set(notes))


def exchanges_answers(protocol: str) -> bool:
    """Whether the secure-inference scheme carries ``protocol``'s traffic: its peers exchange
    answers (SMuLe's blind predictions), as the protocol says; a kind this process does not know
    (a user's plug-in not imported here) is drawn without its scheme."""
    try:
        return PROTOCOLS.get(protocol).audits_answers
    except ValueError:
        return False

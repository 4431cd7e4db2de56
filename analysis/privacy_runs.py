"""What the privacy experiments share: a protocol run in-process to each party's final model,
with the log of the answers it exchanged, and the experiment's output directory and tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.answer_leakage import ExchangeLog
from testbed.cli import UsageError
from testbed.config import Scenario
from testbed.files import prepare_output, write_atomic
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.registry import DATASETS, PROTOCOLS


class AuditError(UsageError):
    """Input the audit cannot run on; the message says why."""


def run_protocol(scenario: Scenario, probes: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, Any], ExchangeLog]:
    """Run ``scenario`` in-process; each party's final model (the one it ends with: the joint host's
    for joint) and the answer log."""
    parties = InProcessParties(scenario)
    log = ExchangeLog(parties, probes, scenario.training.warmup_epochs)
    protocol = PROTOCOLS.create(scenario.protocol)
    protocol.run(scenario, parties, Channel(), log)
    models = {name: parties[protocol.final_model_of(name, parties.names)].model for name in parties.names}
    log.parties = None  # the parties hold a copy of the data set each: let them go
    return models, log


def prepare_out(directory: Path, files: tuple[str, ...], overwrite: bool) -> None:
    existing = [name for name in files if (directory / name).exists()]
    if existing and not overwrite:
        raise AuditError(f"{directory} already holds {', '.join(existing)}; allowed: --overwrite to replace them, or another --out")
    prepare_output(directory)


def setting(scenario: Scenario) -> str:
    """What the tables call a scenario's data and scale, e.g. ``digits, 2 x 500``."""
    sizes = sorted({party.samples for party in scenario.parties.values()})
    scale = f"{len(scenario.parties)} x {sizes[0]}" if len(sizes) == 1 else " + ".join(str(p.samples) for p in scenario.parties.values())
    return f"{DATASETS.create(scenario.dataset).label()}, {scale}"


def write_tables(directory: Path, tables: dict[str, list[dict]], scenario: Scenario) -> None:
    label = {"dataset": DATASETS.create(scenario.dataset).label(), "setting": setting(scenario)}
    for name, rows in tables.items():
        write_atomic(directory / f"{name}.csv", pd.DataFrame(rows).assign(**label).to_csv(index=False))

"""The schema of a run's results, as :mod:`testbed.config` is the scenario's: typed records that
the driver writes and every reader loads, so that a renamed field fails where it is written or
read, not in a report a week later.

* :class:`Evaluation`: a party's model scored after an epoch;
* :class:`PartyEpoch`: what a protocol reports for one party after an epoch;
* :class:`EpochRecord`: one line of ``metrics.jsonl``: a party's epoch with its traffic;
* :class:`Summary`: ``summary.json``.

Results files are read through :func:`read_summary` and :func:`read_epochs` only. A key added
after results were first written has a default, so earlier results load: ``asr_by_attack`` (an
empty mapping), ``peak_rss_mb`` and ``filter`` (none), ``evaluated_on`` (``"test"``), the
communication's ``setup_bytes_by_direction`` (empty), ``setup_rounds`` and the ``network_*`` and
``mpc_network_*`` keys (none: :mod:`testbed.network` computes them from the bytes and rounds of
any summary). A summary
names the :data:`SCHEMA_VERSION` that wrote it (0: written before versions were recorded); one
that lacks a key every version writes, or comes from a newer version than this one reads, is
refused with a :class:`ResultsError` naming the file, its version and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from testbed.files import read_json_lines
from testbed.registry import validation_problems

#: The version of the summary's schema this code writes; raise it when a key is renamed or
#: removed (adding a key with a default keeps older summaries readable and needs no new version).
SCHEMA_VERSION = 1


class ResultsError(ValueError):
    """A results file this testbed cannot read; the message names the file, its schema version
    and each key that is missing or wrong."""


class Record(BaseModel):
    """Base of the result records: unknown keys are errors, numbers strict (a quoted number is a
    corrupted file, not a value), and a record never changes once made."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def written(self) -> dict[str, Any]:
        """The record as a results file holds it: the keys its writer gave, so that each file
        keeps the keys it always had (a protocol that audits no answers writes no ``filter``, the
        setup epoch only ``seconds``). Non-finite numbers stay here; :func:`testbed.files.to_json`
        writes them as ``null``."""
        return self.model_dump(exclude_unset=True)


class FilterAudit(Record):
    """How a querier's filters treated its peers' answers in one epoch, against the malicious
    responders' clean twins (:func:`testbed.metrics.filter_quality`): the mean over peers, each
    peer's own under ``by_peer``. A filter's own state (``trust``) is kept under its own name."""

    model_config = ConfigDict(extra="allow")
    kept: float | None = None
    precision: float | None = None
    recall: float | None = None
    dropped_useful: float | None = None
    harmful: float | None = None
    harm_kept: float | None = None
    harm_dropped: float | None = None
    harm_distilled: float | None = None
    by_peer: dict[str, FilterAudit] = {}


class Evaluation(Record):
    """A party's current model on the clean evaluation set and on every targeted attack's probe."""

    accuracy: float
    #: the success rate of the run's one targeted attack; None without one, and with several
    #: (each has its own in ``asr_by_attack``, keyed ``<attacker>/<attack kind>``)
    asr: float | None
    asr_by_attack: dict[str, float] = {}
    #: of the party's process: per party when parties are Ray actors, shared in-process
    peak_rss_mb: float | None = None


#: Prefix of a phase's seconds that a time model predicted rather than a clock measured.
PREDICTED = "predicted_"


class PartyEpoch(Record):
    """What a protocol reports for one party after an epoch (epoch 0: the one-time setup, which
    has only ``seconds``). Phases a party reports as ``predicted_<phase>`` are moved out of
    ``seconds`` into ``predicted_seconds``, so that no prediction is read as a measurement."""

    loss: float | None = None
    accuracy: float | None = None
    asr: float | None = None
    asr_by_attack: dict[str, float] = {}
    peak_rss_mb: float | None = None
    filter: FilterAudit | None = None
    seconds: dict[str, float] = {}
    #: of the scheme's time model (``scheme.calibration``), per phase of ``seconds``
    predicted_seconds: dict[str, float] = {}

    @model_validator(mode="before")
    @classmethod
    def _predictions_apart(cls, data: Any) -> Any:
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if not isinstance(seconds, dict) or not any(str(k).startswith(PREDICTED) for k in seconds):
            return data
        predicted = {k.removeprefix(PREDICTED): v for k, v in seconds.items() if k.startswith(PREDICTED)}
        measured = {k: v for k, v in seconds.items() if not k.startswith(PREDICTED)}
        return {**data, "seconds": measured, "predicted_seconds": {**data.get("predicted_seconds", {}), **predicted}}

    @classmethod
    def scored(cls, loss: float, evaluation: Evaluation, seconds: dict[str, float], **more: Any) -> PartyEpoch:
        """An epoch of training: its mean loss, the evaluation after it, and seconds per phase."""
        return cls(loss=loss, **dict(evaluation), seconds=seconds, **more)


class EpochRecord(PartyEpoch):
    """One line of ``metrics.jsonl``: one party's epoch, with the bytes and messages it sent and
    received in that epoch."""

    epoch: int
    party: str
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int

    def written(self) -> dict[str, Any]:
        data = super().written()
        return {"epoch": data.pop("epoch"), "party": data.pop("party"), **data}


class PartySummary(Record):
    """A party at the end of the run."""

    role: Literal["honest", "malicious"]
    accuracy: float
    asr: float | None
    asr_by_attack: dict[str, float] = {}
    loss: float | None
    peak_rss_mb: float | None = None
    #: the last exchange epoch's audit, where the protocol filters answers
    filter: FilterAudit | None = None


class Communication(Record):
    """What crossed between the parties: measured on the channel (every byte the length of a
    serialized payload), and the figures a protocol adds that no message carries (the joint
    baseline's MPC training traffic: ``_model`` from the cost model, ``_measured`` from CrypTen)."""

    setup_bytes: int
    setup_messages: int
    #: keyed ``<sender>-><receiver>``
    setup_bytes_by_direction: dict[str, int] = {}
    #: message kinds of the setup, each one round
    setup_rounds: int | None = None
    #: over all directions of one exchange epoch, the mean over exchange epochs
    bytes_per_epoch: int
    messages_per_epoch: int
    rounds_per_epoch: int
    exchange_epochs: int
    #: of the last exchange epoch, keyed ``<sender>-><receiver>``
    bytes_per_epoch_by_direction: dict[str, int]
    mpc_bytes_per_epoch_measured: int | None = None
    mpc_rounds_per_epoch_measured: int | None = None
    mpc_source_measured: str | None = None
    #: why there is no measurement (CrypTen not installed, or not requested)
    mpc_measured_unavailable: str | None = None
    mpc_bytes_per_epoch_model: int | None = None
    mpc_rounds_per_epoch_model: int | None = None
    mpc_source_model: str | None = None
    #: Network time only, not measured: the bytes and rounds above on the scenario's ``network``
    #: (:func:`testbed.network.network_time`: bytes over bandwidth plus rounds times round-trip
    #: time, no computation). ``network_profile`` is the profile's name, or ``custom``.
    network_profile: str | None = None
    network_bandwidth_mbps: float | None = None
    network_rtt_ms: float | None = None
    network_setup_seconds: float | None = None
    #: of one exchange epoch, as ``bytes_per_epoch``
    network_seconds_per_epoch: float | None = None
    mpc_network_seconds_per_epoch_model: float | None = None
    mpc_network_seconds_per_epoch_measured: float | None = None


class Seconds(Record):
    wall: float
    by_party_and_phase: dict[str, dict[str, float]]
    #: the scheme's time model, summed over the run (``scheme.calibration``); never measured
    predicted_by_party_and_phase: dict[str, dict[str, float]] = {}


class Summary(Record):
    """``summary.json``: written last, only when the run completed."""

    schema_version: int = 0
    scenario: str
    protocol: str
    seed: int
    epochs: int
    #: the data set's label (``digits``, ``CIFAR-10 (JPEG)``)
    dataset: str
    #: what ``accuracy`` and ``asr`` were measured on: ``test``, or the validation hold-out
    evaluated_on: str = "test"
    scheme: str
    parties: dict[str, PartySummary]
    communication: Communication
    seconds: Seconds

    def honest(self) -> list[str]:
        """The honest parties, whose results a protocol is for."""
        return [name for name, party in self.parties.items() if party.role == "honest"]


def read_summary(path: Path) -> Summary:
    """The summary at ``path``; raises :class:`ResultsError` naming the file and what is wrong."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ResultsError(f"{path}: cannot read a summary: {getattr(err, 'strerror', None) or err}") from None
    version = raw.get("schema_version", 0) if isinstance(raw, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema version {version} is newer than this testbed reads (up to {SCHEMA_VERSION}); read it with the version that wrote it")
    try:
        return Summary.model_validate(raw)
    except ValidationError as err:
        raise ResultsError(f"{path}: not a summary of schema version {version} ({_problems(err)})") from None


def read_epochs(path: Path) -> list[EpochRecord]:
    """The lines of a ``metrics.jsonl`` (a torn last line, left by a crash, is ignored); raises
    :class:`ResultsError` naming the file, the line and what is wrong."""
    try:
        lines = read_json_lines(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(EpochRecord.model_validate(line))
        except ValidationError as err:
            raise ResultsError(f"{path}: line {number} is not an epoch record ({_problems(err)})") from None
    return records


def _problems(err: ValidationError) -> str:
    return "; ".join(f"{key}: {message}" for key, message in validation_problems(err)[:3])

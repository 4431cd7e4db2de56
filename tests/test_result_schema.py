"""The typed results: what the driver writes is what every reader loads, earlier results load with
the defaults of keys added since, and a file that cannot be read says which file, version and key."""

import json
import math

import pytest
from clitools import make_summary
from pydantic import ValidationError

from analysis.load import TableError
from analysis.sweep import summaries, summary_rows
from testbed.files import to_json
from testbed.result_schema import SCHEMA_VERSION, EpochRecord, Evaluation, PartyEpoch, PartySummary, ResultsError, read_epochs, read_summary

#: A summary as the first version of the testbed wrote it (before asr_by_attack, peak_rss_mb,
#: evaluated_on and schema versions existed).
FIRST_SUMMARY = {
    "scenario": "clean", "protocol": "smule", "seed": 0, "epochs": 2, "dataset": "digits", "scheme": "plaintext",
    "parties": {"A": {"role": "honest", "accuracy": 0.9, "asr": None, "loss": 0.3}, "B": {"role": "malicious", "accuracy": 0.8, "asr": 0.7, "loss": 0.4}},
    "communication": {"setup_bytes": 100, "setup_messages": 2, "bytes_per_epoch": 10, "messages_per_epoch": 2, "rounds_per_epoch": 1,
                      "exchange_epochs": 1, "bytes_per_epoch_by_direction": {"A->B": 5, "B->A": 5}},
    "seconds": {"wall": 1.5, "by_party_and_phase": {"A": {"train": 0.5}}},
}
FIRST_LINE = {"epoch": 1, "party": "A", "loss": 0.3, "accuracy": 0.9, "asr": None, "seconds": {"train": 0.5},
              "bytes_sent": 5, "bytes_received": 5, "messages_sent": 1, "messages_received": 1}


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_a_summary_written_before_later_keys_loads_with_their_defaults(tmp_path):
    summary = read_summary(write(tmp_path / "summary.json", FIRST_SUMMARY))
    assert summary.schema_version == 0 and summary.evaluated_on == "test"
    assert summary.parties["B"].asr_by_attack == {} and summary.parties["B"].peak_rss_mb is None and summary.parties["A"].filter is None
    assert summary.communication.mpc_bytes_per_epoch_model is None
    comm = summary.communication
    assert comm.setup_bytes_by_direction == {} and comm.setup_rounds is None
    assert comm.network_profile is comm.network_seconds_per_epoch is comm.network_setup_seconds is comm.mpc_network_seconds_per_epoch_model is None
    # ... and the analysis reads it like a new one.
    a, b = summary_rows({}, summary, summary)
    assert (a["accuracy"], b["asr"], b["asr_delta"], a["filter_kept"]) == (0.9, 0.7, 0.0, None)


def test_old_metrics_lines_load_and_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 0, "party": "A", "seconds": {}, "bytes_sent": 9, "bytes_received": 9, "messages_sent": 1, "messages_received": 1})
                    + "\n" + json.dumps(FIRST_LINE) + '\n{"epoch": 2, "par')
    setup, first = read_epochs(path)
    assert setup.accuracy is None and first.accuracy == 0.9 and first.asr_by_attack == {} and first.filter is None


@pytest.mark.parametrize("edit, named", [
    (lambda s: s["parties"]["A"].pop("role"), "schema version 0 (parties.A.role: required key is missing)"),
    (lambda s: s["communication"].update(bytes_per_epoch="10"), "communication.bytes_per_epoch: Input should be a valid integer"),
    (lambda s: s.update(schema_version=1, accuracy=0.9), "schema version 1 (accuracy: unknown key"),
])
def test_a_summary_that_cannot_be_read_names_the_file_its_version_and_the_key(tmp_path, edit, named):
    raw = json.loads(json.dumps(FIRST_SUMMARY))
    edit(raw)
    path = write(tmp_path / "summary.json", raw)
    with pytest.raises(ResultsError) as info:
        read_summary(path)
    assert str(info.value).startswith(f"{path}: not a summary of ") and named in str(info.value)


def test_a_summary_of_a_newer_schema_is_refused_naming_both_versions(tmp_path):
    path = write(tmp_path / "summary.json", {**FIRST_SUMMARY, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ResultsError, match=f"schema version {SCHEMA_VERSION + 1} is newer than this testbed reads \\(up to {SCHEMA_VERSION}\\)"):
        read_summary(path)


def test_a_metrics_line_that_is_not_a_record_is_named_by_its_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps(FIRST_LINE) + "\n" + json.dumps({k: v for k, v in FIRST_LINE.items() if k != "party"}) + "\n")
    with pytest.raises(ResultsError, match="line 2 is not an epoch record \\(party: required key is missing\\)"):
        read_epochs(path)


def test_a_renamed_key_fails_where_it_is_written():
    with pytest.raises(ValidationError, match="acc"):
        PartySummary(role="honest", acc=0.9, asr=None, loss=0.1)
    with pytest.raises(ValidationError, match="accuracy_pct"):
        PartyEpoch(loss=0.1, accuracy_pct=90.0)


def test_records_keep_the_keys_their_writer_gave_and_stay_strict_json(tmp_path):
    evaluation = Evaluation(accuracy=0.9, asr=None, asr_by_attack={}, peak_rss_mb=1.0)
    # A protocol that audits nothing writes no filter; SMuLe's warm-up writes a null one; the setup only seconds.
    assert "filter" not in PartyEpoch.scored(0.1, evaluation, {}).written()
    assert PartyEpoch.scored(0.1, evaluation, {}, filter=None).written()["filter"] is None
    assert set(PartyEpoch(seconds={"setup": 1.0}).written()) == {"seconds"}
    line = EpochRecord(epoch=1, party="A", **PartyEpoch.scored(math.nan, evaluation, {}).written(), bytes_sent=0, bytes_received=0, messages_sent=0, messages_received=0)
    text = to_json(line.written())
    assert list(json.loads(text))[:3] == ["epoch", "party", "loss"] and "NaN" not in text
    (tmp_path / "metrics.jsonl").write_text(text + "\n")
    assert read_epochs(tmp_path / "metrics.jsonl")[0].loss is None  # a diverged loss reads back as none
    # A summary written and read back is the same summary.
    summary = make_summary({"A": {"filter": {"kept": 0.5, "trust": 0.8, "by_peer": {"B": {"kept": 0.5, "trust": 0.8}}}}})
    again = read_summary(write(tmp_path / "summary.json", json.loads(to_json(summary.written()))))
    assert again == summary and again.parties["A"].filter.trust == 0.8  # a filter's own state keeps its name


def test_an_unreadable_summary_is_bad_input_for_the_analysis_commands(tmp_path):
    """A sweep, comparison or bench table over results it cannot read exits 2 naming the file."""
    raw = json.loads(json.dumps(FIRST_SUMMARY))
    del raw["parties"]["B"]["accuracy"]
    (tmp_path / "run").mkdir()
    write(tmp_path / "run" / "summary.json", raw)
    with pytest.raises(TableError, match="run/summary.json: not a summary of schema version 0 \\(parties.B.accuracy: required key is missing\\)"):
        summaries(["run"], {}, tmp_path)
    assert summaries(["run"], {}, tmp_path, failed=frozenset({"run"})) == {"run": (None, None)}

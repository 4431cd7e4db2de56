"""The command line end to end with Ray actors, and how runs fail."""

import json
import time

import pytest
import ray
import yaml

from testbed import driver
from testbed.cluster import PartyFailure, RayParties
from testbed.config import parse_scenario
from testbed.files import read_json_lines
from testbed.inprocess import InProcessParties
from testbed.run import main


def write(tmp_path, raw):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_writes_results_contract(tmp_path, tiny_raw, ray_local, capsys):
    out = tmp_path / "run"
    assert main([str(write(tmp_path, tiny_raw)), "--out", str(out), "--quiet", "--set", "epochs=4"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scenario"], summary["protocol"], summary["seed"], summary["epochs"]) == ("tiny", "smule", 3, 4)
    assert summary["evaluated_on"] == "test"
    for name in "AB":
        party = summary["parties"][name]
        assert party["role"] == "honest" and 0.0 <= party["accuracy"] <= 1.0 and party["asr"] is None
    messages = read_json_lines(out / "messages.jsonl")
    comm = summary["communication"]
    assert comm["setup_bytes"] == sum(m["bytes"] for m in messages if m["epoch"] == 0) > 0
    assert comm["bytes_per_epoch"] == sum(m["bytes"] for m in messages if m["epoch"] == 4) > 0
    assert comm["messages_per_epoch"] == 2
    metrics = read_json_lines(out / "metrics.jsonl")
    assert len(metrics) == 2 * 5
    last_a = [m for m in metrics if m["party"] == "A" and m["epoch"] == 4][0]
    assert last_a["accuracy"] == summary["parties"]["A"]["accuracy"]
    assert last_a["bytes_sent"] == comm["bytes_per_epoch"] // 2
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    assert yaml.safe_load((out / "scenario.yaml").read_text())["epochs"] == 4
    assert "accuracy" in capsys.readouterr().out
    # Results are never overwritten unless asked.
    assert main([str(write(tmp_path, tiny_raw)), "--out", str(out), "--quiet"]) == 2


def test_crashed_actor_names_party_and_phase(tiny_raw, ray_local):
    parties = RayParties(parse_scenario(tiny_raw))
    _kill(parties.actors["B"])
    with pytest.raises(PartyFailure) as info:
        parties.gather("train", [(p, parties[p].train(False)) for p in parties.names])
    assert info.value.party == "B" and info.value.phase == "train"
    assert "party 'B' failed during 'train'" in str(info.value)


def _kill(actor) -> None:
    """Kill ``actor`` and wait until it is gone: ``ray.kill`` returns at once, and a call made
    just after it can still reach the actor and succeed."""
    ray.kill(actor)
    for _ in range(200):
        try:
            ray.get(actor.__ray_ready__.remote())
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers after 10 s")


class FailingParties(InProcessParties):
    def gather(self, phase, calls):
        if phase == "train":
            raise PartyFailure("B", phase, RuntimeError("boom"))
        return super().gather(phase, calls)


@pytest.mark.parametrize("error, code, state", [(None, 1, "failed"), (KeyboardInterrupt, 130, "interrupted")])
def test_failed_run_leaves_no_summary(tmp_path, tiny_raw, monkeypatch, capsys, error, code, state):
    if error is None:
        monkeypatch.setattr(driver, "RayParties", FailingParties)
    else:
        monkeypatch.setattr(driver, "run_scenario", lambda *a, **k: (_ for _ in ()).throw(error()))
    out = tmp_path / "run"
    assert main([str(write(tmp_path, tiny_raw)), "--out", str(out), "--quiet"]) == code
    assert not (out / "summary.json").exists()
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == state
    if error is None:
        assert "party 'B' failed during 'train': boom" in status["error"]
        assert "party 'B' failed during 'train'" in capsys.readouterr().err

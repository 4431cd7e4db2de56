"""The MPC scheme (two-party CrypTen secure inference): real mode against the cost model,
manipulation under 2PC, bad input, a dying party, and one real-mode run on digits."""

import copy
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from testbed.config import ScenarioError, load_scenario, parse_scenario
from testbed.logit_map import LogitMap
from testbed.mpc_cost.crypten_measure import crypten_unavailable_reason, enter_phase, run_parties
from testbed.registry import MODELS
from testbed.schemes.mpc import scheme as mpc_scheme
from testbed.schemes.mpc.model import inference_model, realizable
from testbed.schemes.mpc.scheme import MpcScheme
from testbed.schemes.plaintext import PlaintextScheme

ROOT = Path(__file__).resolve().parents[1]
needs_crypten = pytest.mark.skipif(crypten_unavailable_reason() is not None, reason="CrypTen (extra 'mpc') not installed")


def _model(spec: dict, shape: tuple[int, ...]) -> torch.nn.Sequential:
    torch.manual_seed(1)
    model = MODELS.create(MODELS.parse_spec(spec)).build(shape, 10)
    model.train()
    model(torch.randn(16, *shape))  # batch-norm statistics that are not the identity
    return model.eval()


def _exchange(mode: str, model, samples, logit_map=None, **params):
    querier = MpcScheme(MpcScheme.Params(mode=mode, **params), 10, 0)
    responder = MpcScheme(MpcScheme.Params(mode=mode, **params), 10, 0)
    setup = querier.setup(samples)
    responder.load(setup)
    wire = responder.answer(model, logit_map)
    return setup, wire, querier.decode(wire)


CASES = {
    "poly2_mlp": ({"kind": "mlp", "hidden": [16], "activation": "poly2"}, (1, 8, 8)),
    "relu_mlp_bn": ({"kind": "mlp", "hidden": [16], "activation": "relu", "batch_norm": True}, (1, 8, 8)),
    "relu_maxpool_cnn": ({"kind": "he_convnet", "channels": [4], "activation": "relu", "pooling": "max"}, (1, 8, 8)),
}


@needs_crypten
@pytest.mark.parametrize("case", CASES)
def test_real_mode_charges_crypten_counters_and_the_cost_model_matches(case):
    spec, shape = CASES[case]
    model = _model(spec, shape)
    samples = np.random.default_rng(0).random((6, *shape)).astype(np.float32)
    setup, real, logits = _exchange("real", model, samples, batch_size=4)
    _, accounted, plain = _exchange("accounted", model, samples, batch_size=4)
    assert (setup.charged_bytes, setup.rounds) == (0, 0)  # pseudo-random zero sharing sends nothing
    assert real.charged_bytes > 0 and real.rounds >= 2 * 2  # two batches, each an evaluation and a reveal
    assert (real.charged_bytes, real.rounds) == (accounted.charged_bytes, accounted.rounds)
    np.testing.assert_allclose(logits, plain, atol=2e-3)  # fixed point, 16 fractional bits
    assert np.abs(logits - plain).max() > 0  # real mode really ran in fixed point


def test_batch_norm_and_a_logit_matrix_fold_into_the_model():
    model = _model(CASES["relu_mlp_bn"][0], (1, 8, 8))
    x = torch.randn(5, 1, 8, 8)
    swap = np.eye(10)[[1, 0, *range(2, 10)]]
    folded = inference_model(model, swap)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded)
    np.testing.assert_allclose(folded(x).detach().numpy(), model(x).detach().numpy() @ swap, atol=1e-5)


def test_a_2pc_responder_mixes_classes_in_every_row_or_none_and_keeps_per_row_offsets():
    selected = np.array([True, False, False, True])
    offset = np.arange(40, dtype=float).reshape(4, 10)
    swap = realizable(LogitMap(selected, np.eye(10)[::-1], offset))
    assert swap.selected.all()
    np.testing.assert_array_equal(swap.offset[[1, 2]], 0.0)
    np.testing.assert_array_equal(swap.offset[[0, 3]], offset[[0, 3]])
    push = LogitMap(selected, np.eye(10), offset)
    assert realizable(push) is push  # offsets alone are exact, row by row


@needs_crypten
@pytest.mark.parametrize("matrix", ["swap", "identity"])
def test_a_manipulation_through_2pc_gives_the_plaintext_schemes_logits(matrix):
    model = _model(CASES["relu_mlp_bn"][0], (1, 8, 8))
    samples = np.random.default_rng(1).random((6, 1, 8, 8)).astype(np.float32)
    m = np.eye(10)[[7, *range(1, 7), 0, 8, 9]] if matrix == "swap" else np.eye(10)
    offset = np.zeros((6, 10))
    offset[:, 7] = 3.0
    logit_map = realizable(LogitMap(np.array([True, False, True, False, False, False]), m, offset))
    plain = PlaintextScheme(PlaintextScheme.Params(), 10, 0)
    plain.load(plain.setup(samples))
    expected = plain.decode(plain.answer(model, logit_map))
    _, _, logits = _exchange("real", model, samples, logit_map)
    np.testing.assert_allclose(logits, expected, atol=2e-3)
    honest = plain.decode(plain.answer(model))
    assert np.abs(expected - honest).max() > 1.0  # the manipulation shows


def test_real_mode_without_crypten_exits_2_naming_the_key_and_the_install(tiny_raw, monkeypatch):
    monkeypatch.setattr(mpc_scheme, "crypten_unavailable_reason", lambda: "CrypTen is not installed")
    raw = copy.deepcopy(tiny_raw)
    raw["scheme"] = {"kind": "mpc", "mode": "real"}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(raw)
    message = str(info.value)
    assert "scheme" in message and "pip install -e '.[mpc]'" in message
    raw["scheme"] = {"kind": "mpc", "mode": "accounted"}  # the cost model needs no CrypTen
    assert parse_scenario(raw).scheme.params.mode == "accounted"


def test_relu_models_pass_under_mpc_and_stay_refused_under_ckks(tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    raw["dataset"] = {"kind": "digits"}
    for party in raw["parties"].values():
        party["model"] = {"kind": "mlp", "hidden": [8], "activation": "relu"}
    raw["scheme"] = {"kind": "mpc", "mode": "accounted"}
    parse_scenario(raw)
    raw["scheme"] = {"kind": "ckks", "mode": "accounted", "depth": 3}
    with pytest.raises(ScenarioError, match="parties.A.model"):
        parse_scenario(raw)


def _die_in_evaluate(rank: int) -> int:
    enter_phase("evaluate")
    if rank == 1:
        os._exit(3)
    import time

    time.sleep(30)  # the querier would wait for the responder forever
    return 0


@needs_crypten
def test_a_dying_party_is_named_with_its_phase_and_leaves_no_process():
    with pytest.raises(RuntimeError, match=r"CrypTen responder \(rank 1, phase evaluate\) died \(exit code 3\)"):
        run_parties(_die_in_evaluate, (), "TFP", 60, ("querier", "responder"))
    assert multiprocessing.active_children() == []


@needs_crypten
def test_real_mode_digits_run_records_crypten_bytes_and_rounds(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "testbed.run", str(ROOT / "scenarios/mpc_digits.yaml"), "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    communication = summary["communication"]
    answers = [json.loads(line) for line in (out / "messages.jsonl").read_text().splitlines()]
    answers = [m for m in answers if m["kind"] == "answer"]
    assert communication["setup_bytes"] == 0 and communication["setup_rounds"] == 0
    # what the cost model says one answer costs: the scheme's charge is CrypTen's counter
    scenario = load_scenario(ROOT / "scenarios/mpc_digits.yaml")
    model = MODELS.create(scenario.parties["A"].model).build((1, 8, 8), 10)
    from testbed.schemes.mpc.accounting import inference_cost

    queried = scenario.parties["A"].samples  # query_fraction 1: every training sample
    cost = inference_cost(inference_model(model), (1, 8, 8), 10, queried, None)
    assert answers[0]["bytes"] == cost["evaluate"]["bytes"] + cost["reveal"]["bytes"]
    assert communication["rounds_per_epoch"] == cost["evaluate"]["rounds"] + cost["reveal"]["rounds"] == answers[0]["rounds"]
    assert summary["parties"]["A"]["accuracy"] > 0.2


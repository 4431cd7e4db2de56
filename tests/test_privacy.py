"""The privacy audit: its attacks see leakage where there is some and none where there is none,
its bookkeeping pairs the right answers, models and samples, and its command line fails clearly."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_digits

from analysis import privacy, privacy_audit
from analysis.answer_leakage import ExchangeLog, agreement, distil, sequence_membership
from analysis.membership import (
    attack_metrics,
    complementary_halves,
    confidence_margin,
    lira_scores,
    loss_scores,
    reference_models,
    tpr_at_fpr,
    train_local,
)
from testbed.config import TrainingConfig, parse_scenario
from testbed.datasets import load_data
from testbed.inprocess import InProcessParties
from testbed.messages import Channel
from testbed.models import predict
from testbed.registry import MODELS, PROTOCOLS
from testbed.shares import party_data
from testbed.training import accuracy

OVERFIT = TrainingConfig(batch_size=20, learning_rate=0.01)
WIDE = MODELS.parse_spec({"kind": "mlp", "hidden": [128], "activation": "relu"})


@pytest.fixture(scope="module")
def digits_case():
    """40 members, 200 non-members and 40 other samples of digits, and LiRA reference models on
    halves of members + non-members: a wide network trained 100 epochs on 40 samples overfits."""
    bunch = load_digits()
    x, y = (bunch.images / 16).astype(np.float32)[:, None], bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    members, nonmembers, other = order[:40], order[40:240], order[240:280]
    pool = np.concatenate([members, nonmembers])
    refs = reference_models(WIDE, x[pool], y[pool], 10, OVERFIT, 100, 4, 0, "pool")
    is_member = np.r_[np.ones(40, bool), np.zeros(200, bool)]
    return {"x": x, "y": y, "members": members, "other": other, "pool": pool, "refs": refs, "is_member": is_member}


def both_attacks(case, trained_on):
    model = train_local(WIDE, case["x"][trained_on], case["y"][trained_on], 10, OVERFIT, 100, 1)
    logits, labels = predict(model, case["x"][case["pool"]]), case["y"][case["pool"]]
    loss = attack_metrics(loss_scores(logits, labels), case["is_member"])
    lira = attack_metrics(case["refs"].scores(confidence_margin(logits, labels)), case["is_member"])
    return loss, lira


def test_attacks_see_an_overfitted_model(digits_case):
    loss, lira = both_attacks(digits_case, digits_case["members"])
    assert loss["auc"] > 0.75 and lira["auc"] > 0.75
    assert lira["tpr_at_1%fpr"] > 0.01  # above chance where it matters: few false positives


def test_a_model_that_never_saw_the_members_gives_chance(digits_case):
    loss, lira = both_attacks(digits_case, digits_case["other"])
    assert abs(loss["auc"] - 0.5) < 0.1 and abs(lira["auc"] - 0.5) < 0.1


def test_lira_removes_per_sample_difficulty():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(0, 5, 400)  # how confident any model is on the sample: dwarfs membership
    is_member = np.arange(400) < 200
    target = difficulty + is_member * 1.0 + rng.normal(0, 0.2, 400)
    out = complementary_halves(400, 16, rng)
    reference = difficulty + rng.normal(0, 0.2, (16, 400)) + ~out * 1.0  # in-models see it as a member
    assert attack_metrics(target, is_member)["auc"] < 0.65
    assert attack_metrics(lira_scores(target, reference, out), is_member)["auc"] > 0.99
    # Per-sample spread (8 out-models each) and pooled spread rank the samples alike here.
    assert attack_metrics(lira_scores(target, reference, out, min_per_sample_std=99), is_member)["auc"] > 0.99


def test_lira_needs_an_out_model_per_sample():
    with pytest.raises(ValueError, match="no reference model"):
        lira_scores(np.zeros(3), np.zeros((2, 3)), np.array([[True, False, False], [True, False, True]]))


def test_tpr_at_fixed_fpr_allows_no_more_false_positives_than_asked():
    nonmembers = np.arange(100.0)
    members = np.r_[np.full(5, 1000.0), np.full(5, 98.5), np.full(10, -1.0)]
    scores, is_member = np.r_[members, nonmembers], np.r_[np.ones(20), np.zeros(100)]
    metrics = attack_metrics(scores, is_member)
    # Five members beat every non-member; the next five need the top non-member let in: one false
    # positive of 100 is allowed at 1% FPR, none at 0.1%.
    assert metrics["tpr_at_0.1%fpr"] == 0.25 and metrics["tpr_at_1%fpr"] == 0.5
    assert tpr_at_fpr(np.array([0, 0.01, 0.02, 1]), np.array([0.25, 0.25, 0.5, 1]), 0.02) == 0.5


def test_confidence_margin_is_the_log_odds_and_finite_when_saturated():
    logits = np.array([[2.0, 0.5, -1.0], [300.0, 0.0, 0.0]])
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    margins = confidence_margin(logits, np.array([0, 0]))
    assert margins[0] == pytest.approx(np.log(p[0] / (1 - p[0])))
    assert margins[1] == pytest.approx(300 - np.log(2))
    assert loss_scores(logits, np.array([1, 0]))[0] == pytest.approx(np.log(p[1]))


def test_reference_models_leave_every_sample_out_of_half():
    out = ~complementary_halves(9, 6, np.random.default_rng(0))
    assert (out.sum(axis=0) == 3).all()
    with pytest.raises(ValueError, match="even"):
        complementary_halves(9, 3, np.random.default_rng(0))


def test_sequence_check_is_blind_to_exchangeable_samples_and_sees_members():
    rng = np.random.default_rng(2)
    same = rng.normal(size=(600, 8)) + rng.normal(size=(600, 1))  # per-sample level, shared over epochs
    is_member = np.arange(600) < 300
    null = sequence_membership(same, same, is_member, 0)
    assert all(abs(auc - 0.5) < 0.07 for auc in null.values())
    shifted = same + is_member[:, None] * 0.5
    assert all(auc > 0.6 for auc in sequence_membership(shifted, shifted, is_member, 0).values())


def test_a_student_learns_its_teacher_from_answers_alone(tiny_raw):
    scenario = parse_scenario(tiny_raw)
    loaded = load_data(scenario)
    x, y = loaded.train.x[:100], loaded.train.y[:100]
    spec = scenario.parties["A"].model
    teacher = train_local(spec, x, y, loaded.classes, scenario.training, 20, 0)
    student = distil(spec, x, predict(teacher, x), scenario.training, 20, 1)
    untrained = train_local(spec, x, y, loaded.classes, scenario.training, 0, 1)
    assert agreement(student, teacher, loaded.test.x) > 0.9 > agreement(untrained, teacher, loaded.test.x)


# -- bookkeeping -----------------------------------------------------------------------------
def test_party_indices_and_held_out_samples(tiny_raw):
    tiny_raw["parties"]["A"]["samples"] = tiny_raw["parties"]["B"]["samples"] = 30
    scenario = parse_scenario(tiny_raw)
    loaded = load_data(scenario)
    shares = party_data(scenario, loaded)
    for share in shares.values():
        np.testing.assert_array_equal(loaded.train.x[share.indices], share.train.x)
    held = privacy_audit.held_out(loaded, shares, None, 0)
    assert len(held) == 60 and not set(held) & (set(shares["A"].indices) | set(shares["B"].indices))
    assert len(privacy_audit.held_out(loaded, shares, 55, 0)) == 55
    with pytest.raises(privacy_audit.AuditError, match="leave at least"):
        privacy_audit.held_out(loaded, party_data(parse_scenario(tiny_raw, ["parties.A.samples=40", "parties.B.samples=40"]), loaded), None, 0)


def test_each_answer_is_paired_with_the_model_state_that_gave_it(tiny_raw):
    scenario = parse_scenario(tiny_raw, ["epochs=4"])
    parties = InProcessParties(scenario)
    probes = {"B": {"queried": parties["A"].x}, "A": {"queried": parties["B"].x}}
    log = ExchangeLog(parties, probes, scenario.training.warmup_epochs)
    PROTOCOLS.create(scenario.protocol).run(scenario, parties, Channel(), log)
    assert log.answer_epochs("A", "B") == [2, 3, 4]
    # Plaintext answers are exactly the responder's logits before the epoch's training.
    np.testing.assert_array_equal(log.received("A", "B"), log.said("B", "queried", [2, 3, 4]))
    assert not np.array_equal(log.received("A", "B")[0], log.received("A", "B")[-1])


def test_variants_change_only_the_protocol_and_the_filters(tiny_raw):
    base = parse_scenario(tiny_raw)
    runs = {name: privacy_audit.variant(base, name, 7) for name in privacy_audit.PROTOCOL_VARIANTS}
    assert {run.seed for run in runs.values()} == {7}
    assert runs["smule_default"].parties["A"].filters and runs["smule_nofilter"].parties["A"].filters == []
    assert [runs[n].protocol.kind for n in ("local", "joint", "fedavg")] == ["local", "joint", "fedavg"]
    assert {run.parties["A"].samples for run in runs.values()} == {50}


# -- end to end and the command line ---------------------------------------------------------
@pytest.fixture
def small_file(tmp_path, tiny_raw):
    raw = copy.deepcopy(tiny_raw)
    raw["dataset"]["train_samples"] = 200
    raw["parties"]["A"]["samples"] = raw["parties"]["B"]["samples"] = 40
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_audit_writes_every_table_and_refuses_to_overwrite(small_file, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["audit", str(small_file), "--seeds", "0", "--references", "2", "--out", str(out)]
    assert privacy.main(args) == 0
    run = out / "tiny"
    membership = pd.read_csv(run / "membership.csv")
    assert len(membership) == len(privacy_audit.PROTOCOL_VARIANTS) * 4 * 2
    assert set(membership["nonmembers"]) == {120} and set(membership["setting"]) == {"synthetic, 2 x 40"}
    joint = membership[membership["protocol"] == "joint"].set_index(["members_of", "attack", "model_of"])["auc"]
    assert joint.xs("A", level="model_of").equals(joint.xs("B", level="model_of"))  # one joint model
    assert len(pd.read_csv(run / "extraction.csv")) == 4 and len(pd.read_csv(run / "sequence.csv")) == 8
    with np.load(run / "scores.npz") as scores:
        assert scores["smule_default|0|A|B|lira"].shape == (160,) and scores["members|0|A"].sum() == 40
    assert privacy.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    report = tmp_path / "report"
    assert privacy.main(["report", str(run), "--tables", str(report), "--figures", str(report)]) == 0
    assert {"membership_own.csv", "membership_peer.csv", "extraction.csv", "sequence.csv", "privacy_auc.png", "privacy_roc_synthetic_2_x_40.png"} <= {p.name for p in report.iterdir()}


def test_flood_zero_is_the_unflooded_run_and_real_ckks_error_is_small(small_file, tmp_path, tiny_raw):
    raw = yaml.safe_load(small_file.read_text())
    raw["scheme"] = {"kind": "ckks", "mode": "accounted", "depth": 3}
    small_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "results"
    assert privacy.main(["flood", str(small_file), "--levels", "5", "--seeds", "0", "--out", str(out)]) == 0
    flood = pd.read_csv(out / "tiny-flood" / "flood.csv").set_index(["flood_std", "party"])["accuracy"]
    plain = parse_scenario({**raw, "scheme": "plaintext", "seed": 0})
    parties = InProcessParties(plain)
    PROTOCOLS.create(plain.protocol).run(plain, parties, Channel(), lambda *_: None)
    assert flood[0.0]["A"] == accuracy(parties["A"].model, parties["A"].test.x, parties["A"].test.y)
    assert not flood[5.0].equals(flood[0.0])  # the flood reached the answers
    flags = pd.read_csv(out / "tiny-flood" / "flood_flags.csv").groupby("flood_std")["flagged"].mean()
    assert flags[0.0] == 0 and flags[5.0] > 0.5  # noise of 5 logits moves most answers past the harm threshold
    errors = pd.read_csv(out / "tiny-flood" / "ckks_error.csv")
    assert len(errors) == 2 and (errors["error_rms"] > 0).all() and (errors["error_max_abs"] < 0.01).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["audit", "no/such.yaml"], "No such file"),
        (["flood", "SMALL"], "scheme kind ckks"),
        (["report", "no/such/dir"], "no meta.json"),
    ],
)
def test_bad_input_is_reported_without_a_traceback(args, message, small_file, capsys):
    assert privacy.main([str(small_file) if a == "SMALL" else a for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_attacking_parties_are_refused(small_file, tmp_path, capsys):
    args = ["audit", str(small_file), "--set", "parties.B.role=malicious", "--set", "parties.B.attacks=[{kind: label_flip, source: 0, target: 1, rate: 0.1}]", "--out", str(tmp_path)]
    assert privacy.main(args) == 2
    assert "honest parties" in capsys.readouterr().err


def test_odd_reference_counts_are_refused_by_the_parser(small_file, capsys):
    with pytest.raises(SystemExit) as exit_:
        privacy.main(["audit", str(small_file), "--references", "3"])
    assert exit_.value.code == 2 and "complementary pairs" in capsys.readouterr().err

"""Attacks written against the defences (confidence_drain, confidence_boost), the blind Byzantine attacks on
distillation (loss_max, class_prior) and the distillation-surviving backdoor (distill_backdoor):
their exact maps, what fit() learns, determinism, and parameter validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from testbed.attackers import party_attacks, success_probe
from testbed.config import parse_scenario
from testbed.datasets import load_data
from testbed.registry import ATTACKS
from testbed.shares import party_data


def make(kind: str, **params):
    return ATTACKS.create(ATTACKS.parse_spec({"kind": kind, **params}))


def full_map(attack, logits: np.ndarray) -> np.ndarray:
    lmap = attack.logit_map(len(logits), logits.shape[1], np.random.default_rng(0))
    assert lmap.selected.all()
    return lmap.apply(logits)


def test_confidence_drain_lowers_the_source_logit_of_every_selected_answer_only():
    logits = np.random.default_rng(1).normal(size=(20, 5))
    attack = make("confidence_drain", rate=0.5, source=3, target=1, strength=6.0)
    lmap = attack.logit_map(20, 5, np.random.default_rng(2))
    out = lmap.apply(logits)
    assert lmap.selected.sum() == 10
    np.testing.assert_allclose(out[lmap.selected, 3], logits[lmap.selected, 3] - 6.0, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(out, 3, axis=1), np.delete(logits, 3, axis=1))
    np.testing.assert_array_equal(out[~lmap.selected], logits[~lmap.selected])
    x, y = np.zeros((6, 1, 2, 2), dtype=np.float32), np.array([3, 1, 3, 0, 2, 3])
    probe = attack.success_probe(x, y)
    assert len(probe.x) == 3 and probe.target == 1


def test_confidence_boost_raises_only_the_target_logit_and_passes_own_confidence_only_on_target_samples():
    from testbed.filters.base import PredictionView, rewritten
    from testbed.metrics import softmax
    from testbed.registry import FILTERS

    rng = np.random.default_rng(3)
    logits, own = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    attack = make("confidence_boost", rate=1.0, source=1, target=2, strength=5.0)
    boosted = full_map(attack, logits)
    np.testing.assert_allclose(boosted[:, 2], logits[:, 2] + 5.0, rtol=1e-6)
    np.testing.assert_array_equal(np.delete(boosted, 2, axis=1), np.delete(logits, 2, axis=1))
    # Through own_confidence + true_label: on target samples the raised p(label) passes; elsewhere
    # the querier's own confidence floors what the boost took away.
    labels = np.arange(12) % 4
    anchored = [FILTERS.create(FILTERS.parse_spec({"kind": k})) for k in ("own_confidence", "true_label")]
    def distilled_label_p(peer):
        out = softmax(rewritten(anchored, PredictionView(peer, own, labels, 2.0)), 2.0)
        return out[np.arange(12), labels]
    honest, attacked = distilled_label_p(logits), distilled_label_p(boosted)
    on_target = labels == 2
    assert (attacked[on_target] > honest[on_target] + 0.05).all()
    own_p = softmax(own, 2.0)[np.arange(12), labels]
    assert (attacked[~on_target] >= own_p[~on_target] - 1e-5).all()
    assert (attacked[~on_target] < honest[~on_target] + 1e-5).all()


def test_loss_max_puts_the_answer_on_the_least_likely_class():
    logits = np.array([[3.0, 1.0, -2.0, 0.5], [0.0, 2.0, 1.0, -1.0]])
    out = full_map(make("loss_max", rate=1.0, sharpness=4.0), logits)
    np.testing.assert_allclose(out, -4.0 * logits)
    np.testing.assert_array_equal(out.argmax(axis=1), logits.argmin(axis=1))
    assert make("loss_max", rate=1.0).success_probe(np.zeros((2, 1, 1, 1)), np.array([0, 1])) is None


def class_means_data(means: np.ndarray, per_class: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class means are ``means`` (classes x pixels), with zero-mean noise per class."""
    rng = np.random.default_rng(0)
    x, y = [], []
    for c, mean in enumerate(means):
        noise = rng.normal(0, 0.01, size=(per_class, len(mean)))
        x.append(mean + noise - noise.mean(axis=0))
        y += [c] * per_class
    return np.concatenate(x).reshape(-1, 1, 1, means.shape[1]).astype(np.float32), np.array(y)


def test_class_prior_maps_each_class_to_its_least_similar_by_the_attacker_data():
    means = np.random.default_rng(3).random((5, 6))
    x, y = class_means_data(means)
    attack = make("class_prior", rate=1.0, sharpness=2.0)
    with pytest.raises(RuntimeError, match="fit"):
        attack.matrix(5)
    attack.fit(x, y, 5, np.random.default_rng(0))
    sigma = attack.permutation
    assert sorted(sigma) == list(range(5)) and all(sigma[c] != c for c in range(5))
    class_means = np.array([x[y == c].reshape(-1, 6).mean(axis=0) for c in range(5)])
    unit = class_means / np.linalg.norm(class_means, axis=1, keepdims=True)
    similarity = unit @ unit.T
    best = min(
        sum(similarity[c, p[c]] for c in range(5)) for p in itertools.permutations(range(5)) if all(p[c] != c for c in range(5))
    )
    assert sum(similarity[c, sigma[c]] for c in range(5)) == pytest.approx(best)
    logits = np.random.default_rng(4).normal(size=(30, 5))
    out = full_map(attack, logits)
    np.testing.assert_allclose(out[:, sigma], 2.0 * logits)
    np.testing.assert_array_equal(out.argmax(axis=1), sigma[logits.argmax(axis=1)])


@pytest.fixture(scope="module")
def digits_share():
    scenario = parse_scenario(
        {"name": "t", "parties": {"A": {"samples": 300}, "B": {"role": "malicious", "samples": 300}}}
    )
    loaded = load_data(scenario)
    share = party_data(scenario, loaded, only="B")["B"].train
    return share.x, share.y, loaded


DISTILL = {"rate": 0.1, "target": 0, "rounds": 2, "shadow_epochs": 5, "trigger_steps": 10}  # a 3x3 patch at rows and columns 2..4


def test_distill_backdoor_learns_a_patch_deterministically_and_stamps_only_there(digits_share):
    x, y, _ = digits_share
    attack = make("distill_backdoor", **DISTILL)
    with pytest.raises(RuntimeError, match="fit"):
        attack.stamp(x[:2])
    attack.fit(x, y, 10, np.random.default_rng(7))
    again = make("distill_backdoor", **DISTILL)
    again.fit(x, y, 10, np.random.default_rng(7))
    other = make("distill_backdoor", **DISTILL)
    other.fit(x, y, 10, np.random.default_rng(8))
    assert attack.learned.shape == (1, 3, 3) and ((attack.learned >= 0) & (attack.learned <= 1)).all()
    np.testing.assert_array_equal(attack.learned, again.learned)
    assert not np.array_equal(attack.learned, other.learned)
    stamped = attack.stamp(x[:5])
    np.testing.assert_array_equal(stamped[:, :, 2:5, 2:5], np.broadcast_to(attack.learned, (5, 1, 3, 3)))
    outside = np.ones((8, 8), dtype=bool)
    outside[2:5, 2:5] = False
    np.testing.assert_array_equal(stamped[:, :, outside], x[:5, :, outside])
    poisoned = attack.poison(x, y, 10, np.random.default_rng(0))
    assert poisoned.poisoned.sum() == 30 and (poisoned.y[poisoned.poisoned] == 0).all()
    np.testing.assert_array_equal(poisoned.x[poisoned.poisoned], attack.stamp(x[poisoned.poisoned]))


def shadow_student_asr(attack, x, y, patch: np.ndarray) -> float:
    """A fresh shadow teacher trained on data poisoned with ``patch`` and a student distilled from
    it on clean data only, as fit() rehearses it: the student's ASR on triggered non-target images."""
    generator = torch.Generator().manual_seed(123)
    attack.learned = patch
    poisoned = attack.poison(x, y, 10, np.random.default_rng(1))
    teacher = attack._shadow(x.shape[1:], 10, generator)
    attack._train(teacher, torch.from_numpy(poisoned.x), torch.from_numpy(poisoned.y), None, generator)
    student = attack._shadow(x.shape[1:], 10, generator)
    with torch.no_grad():
        teacher_logits = teacher(torch.from_numpy(x))
    attack._train(student, torch.from_numpy(x), torch.from_numpy(y), teacher_logits, generator)
    with torch.no_grad():
        predicted = student(torch.from_numpy(attack.stamp(x[y != attack.params.target]))).argmax(1).numpy()
    return float((predicted == attack.params.target).mean())


def test_the_learned_patch_survives_distillation_but_does_not_fool_a_clean_model(digits_share):
    x, y, _ = digits_share
    params = {"rate": 0.1, "target": 8, "rounds": 3, "shadow_epochs": 10, "trigger_steps": 30}  # a 3x3 patch in the centre
    attack = make("distill_backdoor", **params)
    attack.fit(x, y, 10, np.random.default_rng(0))
    learned = attack.learned.copy()
    distilled = shadow_student_asr(attack, x, y, learned)
    clean = shadow_student_asr(make("distill_backdoor", **{**params, "rate": 0.0}), x, y, learned)  # teacher without poison
    scrambled = shadow_student_asr(attack, x, y, np.random.default_rng(1).random(learned.shape).astype(np.float32))
    assert distilled > clean + 0.1 and distilled > scrambled + 0.1


def test_every_process_fits_the_same_trigger_so_the_probe_is_the_poison():
    raw = {
        "name": "t",
        "parties": {"A": {"samples": 200}, "B": {"role": "malicious", "samples": 200, "attacks": [{"kind": "distill_backdoor", **DISTILL}]}},
    }
    scenario = parse_scenario(raw)
    loaded = load_data(scenario)
    (attack,) = party_attacks(scenario, "B")
    from testbed.attackers import _fitted_attacks

    _fitted_attacks.cache_clear()  # as in another process
    (refit,) = party_attacks(scenario, "B")
    assert refit is not attack
    np.testing.assert_array_equal(refit.learned, attack.learned)
    probe = success_probe(scenario, loaded)
    np.testing.assert_array_equal(probe.x, attack.stamp(loaded.test.x[loaded.test.y != 0]))


def test_the_rate_zero_reference_probes_the_same_trigger():
    """Attack harm is a delta against the same scenario at rate 0: the trigger must not depend on the rate."""
    x, y = np.random.default_rng(0).random((80, 1, 8, 8), dtype=np.float32), np.arange(80) % 4
    attacks = [make("distill_backdoor", **{**DISTILL, "rate": rate}) for rate in (0.3, 0.0)]
    for attack in attacks:
        attack.fit(x, y, 4, np.random.default_rng(5))
    np.testing.assert_array_equal(attacks[0].learned, attacks[1].learned)


@pytest.mark.parametrize("kind, params, culprit", [
    ("confidence_drain", {"rate": 1.0, "source": 1, "target": 1}, "must differ"),
    ("confidence_drain", {"rate": 1.0, "source": 1, "target": 2, "strength": 0}, "strength=0"),
    ("confidence_boost", {"rate": 1.0, "source": 1, "target": 2, "strength": -1}, "strength=-1"),
    ("loss_max", {"rate": 1.0, "sharpness": -1}, "sharpness=-1"),
    ("class_prior", {"rate": 2.0}, "rate=2.0"),
    ("distill_backdoor", {"rate": 0.1, "target": 0, "rounds": 0}, "rounds=0"),
    ("distill_backdoor", {"rate": 0.1, "target": 0, "trigger_lr": 0}, "trigger_lr=0"),
])
def test_params_are_checked_at_the_edge(kind, params, culprit):
    with pytest.raises(ValueError, match=culprit):
        ATTACKS.parse_spec({"kind": kind, **params})


def test_distill_backdoor_geometry_is_checked_before_any_fit():
    with pytest.raises(ValueError, match="does not fit"):
        make("distill_backdoor", rate=0.1, target=0, size=9).check((1, 8, 8), 10)
    make("distill_backdoor", rate=0.1, target=0, size=2).check((1, 8, 8), 10)

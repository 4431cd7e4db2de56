"""Filter-aware attacks on small hand-built arrays: the exact maps, where the argmax survives,
which samples the boundary flip picks, probes and parameter validation."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.config import parse_scenario
from testbed.datasets import load_data
from testbed.inprocess import InProcessParties
from testbed.models import predict
from testbed.registry import ATTACKS
from testbed.shares import party_data

CLASSES = 4
MANIPULATORS = {
    "mass_shift": {"rate": 0.25, "target": 2, "strength": 3.0, "sharpen": 2.0},
    "stealth_swap": {"rate": 0.25, "source": 0, "target": 1, "mix": 0.3},
}


def make(kind: str, **params):
    return ATTACKS.create(ATTACKS.parse_spec({"kind": kind, **params}))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def apply_to_all(kind: str, logits: np.ndarray, **params) -> np.ndarray:
    """The attack's map with every sample selected (rate 1), applied to ``logits``."""
    attack = make(kind, **{**MANIPULATORS[kind], "rate": 1.0, **params})
    lmap = attack.logit_map(len(logits), logits.shape[1], np.random.default_rng(0))
    assert lmap.selected.all()
    return lmap.apply(logits)


def images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 3x8x8 images with labels 0, 1, 2, 3, 0, ... (n / 4 per class)."""
    x = np.random.default_rng(seed).random((n, 3, 8, 8), dtype=np.float32)
    return x, np.arange(n, dtype=np.int64) % CLASSES


# --- both manipulations: ground truth and determinism ---------------------------------------


@pytest.mark.parametrize("kind", MANIPULATORS)
def test_selected_marks_exactly_the_manipulated_samples_and_is_replayed_per_seed(kind):
    logits = np.random.default_rng(100).normal(size=(40, CLASSES))
    attack = make(kind, **MANIPULATORS[kind])
    rng = np.random.default_rng(5)
    first, second = attack.logit_map(40, CLASSES, rng), attack.logit_map(40, CLASSES, rng)
    replay = attack.logit_map(40, CLASSES, np.random.default_rng(5))
    assert first.selected.sum() == second.selected.sum() == 10  # round(0.25 * 40)
    assert not np.array_equal(first.selected, second.selected)
    np.testing.assert_array_equal(replay.selected, first.selected)
    out = first.apply(logits)
    np.testing.assert_array_equal((out != logits).any(axis=1), first.selected)
    np.testing.assert_array_equal(out[~first.selected], logits[~first.selected])
    assert (first.offset[~first.selected] == 0).all()


# --- mass_shift -----------------------------------------------------------------------------


def test_mass_shift_is_sharpen_times_logits_plus_strength_on_the_target():
    logits = np.array([[1.0, -2.0, 0.5, 3.0], [0.0, 0.25, -1.5, 2.0]])
    out = apply_to_all("mass_shift", logits, target=2, strength=3.0, sharpen=2.0)
    expected = np.array([[2.0, -4.0, 4.0, 6.0], [0.0, 0.5, 0.0, 4.0]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_mass_shift_keeps_the_argmax_exactly_where_sharpen_times_margin_exceeds_strength():
    # target 2, sharpen 2, strength 3: the argmax survives iff top - target margin > 1.5
    logits = np.array(
        [
            [0.5, -1.0, 0.0, -2.0],  # margin 0.5 -> out [1, -2, 3, -4]: target
            [1.0, -1.0, 0.0, -2.0],  # margin 1.0 -> out 2 vs 3: target
            [1.4, -1.0, 0.0, -2.0],  # margin 1.4 -> out 2.8 vs 3: target
            [1.6, -1.0, 0.0, -2.0],  # margin 1.6 -> out 3.2 vs 3: kept
            [2.0, -1.0, 0.0, -2.0],  # margin 2.0 -> out 4 vs 3: kept
            [4.0, -1.0, 0.0, -2.0],  # margin 4.0 -> out 8 vs 3: kept
            [0.0, -1.0, 1.0, -2.0],  # already target: stays target
            [1.9, -1.0, 0.0, 2.0],  # top 3, runner-up 0 close: sharpening keeps their order (4 > 3.8)
        ]
    )
    out = apply_to_all("mass_shift", logits, target=2, strength=3.0, sharpen=2.0)
    np.testing.assert_array_equal(out.argmax(axis=1), [2, 2, 2, 0, 0, 0, 2, 3])
    np.testing.assert_array_equal(logits.argmax(axis=1), [0, 0, 0, 0, 0, 0, 2, 3])


def test_mass_shift_raises_target_mass_where_strength_beats_the_sharpening():
    # sharpen 1.5, strength 3: target mass must grow whenever every logit[j] - logit[target] < 6
    logits = np.random.default_rng(7).normal(0.0, 1.0, size=(200, CLASSES))
    assert (logits - logits[:, [1]]).max() < 3.0 / 0.5
    attack = make("mass_shift", rate=0.5, target=1, strength=3.0, sharpen=1.5)
    lmap = attack.logit_map(200, CLASSES, np.random.default_rng(1))
    before, after = softmax(logits)[:, 1], softmax(lmap.apply(logits))[:, 1]
    assert (after[lmap.selected] > before[lmap.selected]).all()
    np.testing.assert_array_equal(after[~lmap.selected], before[~lmap.selected])
    # and the argmax survived on the confident answers (margin over target > strength / sharpen = 2)
    top = logits.argmax(axis=1)
    confident = lmap.selected & (logits.max(axis=1) - logits[:, 1] > 2.0)
    assert confident.sum() > 10
    np.testing.assert_array_equal(lmap.apply(logits).argmax(axis=1)[confident], top[confident])


def test_mass_shift_on_a_very_confident_answer_the_sharpening_wins_and_target_mass_falls():
    # margin 6 > strength / (sharpen - 1) = 2: out [12, 2, 0, 0], target 1
    logits = np.array([[6.0, 0.0, 0.0, 0.0]])
    out = apply_to_all("mass_shift", logits, target=1, strength=2.0, sharpen=2.0)
    np.testing.assert_allclose(out, [[12.0, 2.0, 0.0, 0.0]], rtol=0, atol=1e-12)
    before, after = softmax(logits)[0, 1], softmax(out)[0, 1]
    assert before == pytest.approx(1 / (np.exp(6) + 3))
    assert after == pytest.approx(np.exp(2) / (np.exp(12) + np.exp(2) + 2))
    assert after < before


def test_mass_shift_probe_is_source_class_when_given_else_every_non_target_sample():
    x, y = images()
    with_source = make("mass_shift", rate=0.1, target=2, source=1).success_probe(x, y)
    np.testing.assert_array_equal(with_source.x, x[y == 1])
    assert with_source.target == 2 and len(with_source.x) == 10
    without = make("mass_shift", rate=0.1, target=2).success_probe(x, y)
    np.testing.assert_array_equal(without.x, x[y != 2])
    assert without.target == 2 and len(without.x) == 30


def test_mass_shift_defaults():
    params = make("mass_shift", rate=0.1, target=0).params
    assert (params.strength, params.sharpen, params.source) == (3.0, 1.5, None)


# --- stealth_swap ---------------------------------------------------------------------------


def test_stealth_swap_mixes_source_and_target_logits_only():
    logits = np.array([[4.0, 1.0, 0.0, -1.0], [0.0, -3.0, -3.5, 4.0]])
    out = apply_to_all("stealth_swap", logits, source=0, target=1, mix=0.3)
    expected = np.array([[3.1, 1.9, 0.0, -1.0], [-0.9, -2.1, -3.5, 4.0]])  # 0.7 * own + 0.3 * other
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_stealth_swap_moves_mass_to_target_on_source_answers_keeping_their_argmax():
    logits = np.array([[4.0, 1.0, 0.0, -1.0], [0.0, -3.0, -3.5, 4.0]])  # a source answer, a class-3 answer
    out = apply_to_all("stealth_swap", logits, source=0, target=1, mix=0.3)
    np.testing.assert_array_equal(out.argmax(axis=1), [0, 3])
    before, after = softmax(logits), softmax(out)
    assert after[0, 1] > 2 * before[0, 1]
    assert after[0, 0] > after[0, 1]
    # the same map barely touches the answer where source and target carry little mass
    shift = np.abs(after - before).sum(axis=1) / 2
    np.testing.assert_allclose(shift, [0.1966, 0.0106], rtol=0, atol=1e-4)  # total variation, by hand


def test_stealth_swap_argmax_falls_to_a_third_class_that_overtakes_the_lowered_source_logit():
    out = apply_to_all("stealth_swap", np.array([[4.0, 0.0, 3.5, 0.0]]), source=0, target=1, mix=0.3)
    np.testing.assert_allclose(out, [[2.8, 1.2, 3.5, 0.0]], rtol=0, atol=1e-12)
    assert out.argmax() == 2


def test_stealth_swap_probe_is_the_source_class_test_samples():
    x, y = images()
    probe = make("stealth_swap", **MANIPULATORS["stealth_swap"]).success_probe(x, y)
    np.testing.assert_array_equal(probe.x, x[y == 0])
    assert probe.target == 1


# --- boundary_label_flip --------------------------------------------------------------------


def boundary_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D points, shuffled: target class 1 around (-3, 0), other class 2 around (1, 6), source
    class 0 on the line y = 0 at x = 0.5, 1.0, ..., 5.0 plus one source point inside the target
    cluster. Returns ``(x, y, source_rank)``: ``source_rank`` orders the source samples from the
    one nearest the target cluster outward."""
    jitter = np.array(
        [[0.2, 0.1], [-0.1, 0.3], [0.3, -0.2], [-0.2, -0.1], [0.0, 0.2]]
        + [[0.1, -0.3], [-0.3, 0.0], [0.2, 0.2], [-0.1, -0.2], [0.0, 0.0]]
    )
    target = np.array([-3.0, 0.0]) + jitter
    other = np.array([1.0, 6.0]) + jitter
    source = np.array([[-3.0, 0.5]] + [[0.5 * k, 0.0] for k in range(1, 11)])
    x = np.concatenate([source, target, other]).astype(np.float32)
    y = np.array([0] * 11 + [1] * 10 + [2] * 10, dtype=np.int64)
    order = np.random.default_rng(42).permutation(len(y))
    position = np.argsort(order)  # where each original sample lands after shuffling
    return x[order], y[order], position[:11]


def boundary_flip(x, y, seed: int = 0, rate: float = 0.1, classes: int = 3):
    attack = make("boundary_label_flip", rate=rate, source=0, target=1)
    return attack, attack.poison(x, y, classes, np.random.default_rng(seed))


def test_boundary_label_flip_picks_the_source_samples_nearest_the_target_class():
    x, y, rank = boundary_data()
    _, out = boundary_flip(x, y)  # round(0.1 * 31) = 3
    expected = np.zeros(len(y), dtype=bool)
    expected[rank[:3]] = True  # the source point inside the target cluster, then x = 0.5 and 1.0
    np.testing.assert_array_equal(out.poisoned, expected)


def test_boundary_label_flip_margins_rise_with_distance_from_the_target_class():
    x, y, rank = boundary_data()
    attack, _ = boundary_flip(x, y)
    margin = attack.margins(x, y, 3, seed=0)[rank]
    assert margin[0] < 0  # the simple model already takes the misplaced source point for target
    assert (np.diff(margin) > 0).all()


def test_boundary_label_flip_relabels_exactly_the_mask_to_target():
    x, y, _ = boundary_data()
    x_before, y_before = x.copy(), y.copy()
    _, out = boundary_flip(x, y, rate=0.2)  # round(0.2 * 31) = 6
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(out.y, y) and not np.shares_memory(out.x, x)
    np.testing.assert_array_equal(out.x, x)
    assert out.poisoned.sum() == 6
    np.testing.assert_array_equal(out.poisoned, out.y != y)
    assert set(y[out.poisoned]) == {0} and set(out.y[out.poisoned]) == {1}
    assert out.y.dtype == np.int64


def test_boundary_label_flip_budget_is_capped_by_the_source_samples():
    x, y, _ = boundary_data()
    _, out = boundary_flip(x, y, rate=0.5)  # 16 asked, 11 source samples exist
    np.testing.assert_array_equal(out.poisoned, y == 0)


def test_boundary_label_flip_counts_over_all_samples_on_images():
    x, y = images()
    attack = make("boundary_label_flip", rate=0.2, source=1, target=3)
    out = attack.poison(x, y, CLASSES, np.random.default_rng(0))
    assert out.poisoned.sum() == 8  # round(0.2 * 40), among the 10 source samples
    assert set(y[out.poisoned]) == {1} and set(out.y[out.poisoned]) == {3}
    # exactly the 8 lowest-margin source samples
    margin = attack.margins(x, y, CLASSES, seed=0)
    source = np.flatnonzero(y == 1)
    np.testing.assert_array_equal(np.flatnonzero(out.poisoned), np.sort(source[np.argsort(margin[source])[:8]]))


def test_boundary_label_flip_is_deterministic_and_its_choice_depends_on_the_data_only():
    x, y = images()
    attack = make("boundary_label_flip", rate=0.1, source=2, target=0)
    runs = [attack.poison(x, y, CLASSES, np.random.default_rng(seed)) for seed in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0].poisoned, runs[1].poisoned)
    np.testing.assert_array_equal(runs[0].y, runs[1].y)
    # L-BFGS ignores its random_state: another seed picks the same samples
    np.testing.assert_array_equal(runs[0].poisoned, runs[2].poisoned)


def test_boundary_label_flip_with_a_single_class_takes_the_first_source_samples():
    x = np.zeros((6, 2), dtype=np.float32)
    y = np.zeros(6, dtype=np.int64)
    _, out = boundary_flip(x, y, rate=0.5, classes=2)
    np.testing.assert_array_equal(out.poisoned, [True, True, True, False, False, False])


def test_boundary_label_flip_probe_is_the_source_class_test_samples():
    x, y = images()
    probe = make("boundary_label_flip", rate=0.1, source=1, target=3).success_probe(x, y)
    np.testing.assert_array_equal(probe.x, x[y == 1])
    assert probe.target == 3


# --- through a scenario -------------------------------------------------------------------


def test_mass_shift_answers_reach_the_querier_as_specified(tiny_raw):
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "mass_shift", "rate": 1.0, "target": 1, "strength": 2.5}]
    parties = InProcessParties(parse_scenario(tiny_raw))
    for q, r in (("A", "B"), ("B", "A")):
        parties[r].accept(parties[q].query(r))
    message, truth = parties["B"].answer("A", 2)
    assert truth.manipulated.all()
    expected = 1.5 * predict(parties.parties["B"].model, parties.parties["A"].x)
    expected[:, 1] += 2.5
    parties["A"].receive(message)
    np.testing.assert_allclose(parties.parties["A"].received["B"].peer_logits, expected, rtol=1e-5, atol=1e-5)


def test_boundary_label_flip_poisons_the_malicious_party_data(tiny_raw):
    clean = parse_scenario(tiny_raw)
    tiny_raw["parties"]["B"]["role"] = "malicious"
    tiny_raw["parties"]["B"]["attacks"] = [{"kind": "boundary_label_flip", "rate": 0.1, "source": 0, "target": 2}]
    scenario = parse_scenario(tiny_raw)
    before = party_data(clean, load_data(clean))["B"]
    after = party_data(scenario, load_data(scenario))["B"]
    assert after.poisoned.sum() == 5  # round(0.1 * 50)
    np.testing.assert_array_equal(after.train.y != before.train.y, after.poisoned)
    assert set(before.train.y[after.poisoned]) == {0} and set(after.train.y[after.poisoned]) == {2}


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "culprit"),
    [
        ("mass_shift", {"rate": 1.5, "target": 0}, "rate"),
        ("mass_shift", {"rate": 0.1, "target": -1}, "target"),
        ("mass_shift", {"rate": 0.1, "target": 0, "sharpen": 0.5}, "sharpen"),
        ("mass_shift", {"rate": 0.1, "target": 0, "strength": 0.0}, "strength"),
        ("mass_shift", {"rate": 0.1, "target": 0, "strength": float("nan")}, "strength"),
        ("mass_shift", {"rate": 0.1, "target": 0, "source": -2}, "source"),
        ("mass_shift", {"rate": 0.1, "target": 1, "source": 1}, "must differ"),
        ("mass_shift", {"rate": 0.1, "target": 1, "sharp": 2.0}, "sharp"),
        ("stealth_swap", {"rate": 0.1, "source": 0, "target": 1, "mix": 0.5}, "mix"),
        ("stealth_swap", {"rate": 0.1, "source": 0, "target": 1, "mix": 0.0}, "mix"),
        ("stealth_swap", {"rate": 0.1, "source": 0, "target": 1}, "mix"),
        ("stealth_swap", {"rate": 0.1, "source": 3, "target": 3, "mix": 0.2}, "must differ"),
        ("boundary_label_flip", {"rate": 1.5, "source": 0, "target": 1}, "rate"),
        ("boundary_label_flip", {"rate": 0.1, "source": 0, "target": -1}, "target"),
        ("boundary_label_flip", {"rate": 0.1, "source": 2, "target": 2}, "must differ"),
        ("boundary_label_flip", {"rate": 0.1, "source": 0, "target": 1, "max_iter": 0}, "max_iter"),
    ],
)
def test_params_reject_invalid_values(kind, params, culprit):
    with pytest.raises(ValueError, match=culprit):
        ATTACKS.parse_spec({"kind": kind, **params})


@pytest.mark.parametrize(
    ("kind", "params", "culprit"),
    [
        ("mass_shift", {"rate": 0.1, "target": 4}, "target=4"),
        ("mass_shift", {"rate": 0.1, "target": 0, "source": 5}, "source=5"),
        ("stealth_swap", {"rate": 0.1, "source": 4, "target": 0, "mix": 0.2}, "source=4"),
        ("boundary_label_flip", {"rate": 0.1, "source": 0, "target": 7}, "target=7"),
    ],
)
def test_check_rejects_classes_beyond_the_dataset(kind, params, culprit):
    with pytest.raises(ValueError, match=culprit):
        make(kind, **params).check((3, 8, 8), CLASSES)


def test_check_accepts_fitting_parameters():
    make("mass_shift", rate=0.1, target=3).check((64,), CLASSES)
    make("mass_shift", rate=0.1, target=3, source=0).check((64,), CLASSES)
    make("stealth_swap", rate=0.1, source=3, target=0, mix=0.4).check((3, 8, 8), CLASSES)
    make("boundary_label_flip", rate=0.1, source=3, target=0).check((64,), CLASSES)


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "mass_shift", "rate": 0.2, "target": 1},
        {"kind": "mass_shift", "rate": 0.2, "target": 1, "source": 0, "strength": 1.0, "sharpen": 1.0},
        {"kind": "stealth_swap", **MANIPULATORS["stealth_swap"]},
        {"kind": "boundary_label_flip", "rate": 0.1, "source": 1, "target": 7, "max_iter": 20},
    ],
)
def test_specs_survive_a_dump_and_reload(raw):
    spec = ATTACKS.parse_spec(raw)
    assert ATTACKS.parse_spec(spec.dump()) == spec

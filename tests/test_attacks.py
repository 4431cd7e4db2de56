"""Attacks on small arrays: who is touched, how, the probes, and parameter validation."""

from __future__ import annotations

import numpy as np
import pytest

from attacks.budget import choose
from testbed.registry import ATTACKS

CLASSES = 4
POISONERS = {
    "label_flip": {"rate": 0.2, "source": 1, "target": 3},
    "random_label_flip": {"rate": 0.2},
    "backdoor_patch": {"rate": 0.2, "target": 0},
    "backdoor_blend": {"rate": 0.2, "target": 0},
}
MANIPULATORS = {
    "class_swap": {"rate": 0.25, "source": 0, "target": 2},
    "targeted_push": {"rate": 0.25, "target": 1, "strength": 3.0},
    "scale": {"rate": 0.25, "factor": -2.5},
    "noise": {"rate": 0.25, "std": 0.5},
}


def make(kind: str, **params):
    return ATTACKS.create(ATTACKS.parse_spec({"kind": kind, **params}))


def images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 3x8x8 images in [0, 1) with labels 0, 1, 2, 3, 0, ... (n / 4 per class)."""
    x = np.random.default_rng(seed).random((n, 3, 8, 8), dtype=np.float32)
    return x, np.arange(n, dtype=np.int64) % CLASSES


def poison(kind: str, seed: int = 0, x=None, y=None, **params):
    if x is None:
        x, y = images()
    return make(kind, **{**POISONERS[kind], **params}).poison(x, y, CLASSES, np.random.default_rng(seed))


# --- selection rule -------------------------------------------------------------------------


def test_choose_rounds_rate_times_n_and_caps_at_the_eligible_count():
    rng = np.random.default_rng(0)
    everyone = np.ones(10, dtype=bool)
    assert choose(rng, everyone, 0.3).sum() == 3
    assert choose(rng, everyone, 0.27).sum() == 3  # rounds, does not truncate
    assert choose(rng, everyone, 0.25).sum() == 2  # Python round: half to even
    assert choose(rng, everyone, 0.0).sum() == 0
    assert choose(rng, everyone, 1.0).sum() == 10
    few = np.zeros(10, dtype=bool)
    few[[2, 7]] = True
    np.testing.assert_array_equal(choose(rng, few, 0.5), few)


# --- data poisoning: ground truth and determinism ------------------------------------------


@pytest.mark.parametrize("kind", POISONERS)
def test_poisoned_marks_exactly_the_changed_samples_and_inputs_stay_untouched(kind):
    x, y = images()
    x_before, y_before = x.copy(), y.copy()
    out = poison(kind, x=x, y=y)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(out.x, x) and not np.shares_memory(out.y, y)
    assert out.x.dtype == np.float32 and out.y.dtype == np.int64
    changed = (out.x != x).reshape(len(x), -1).any(axis=1) | (out.y != y)
    np.testing.assert_array_equal(out.poisoned, changed)
    assert out.poisoned.sum() == 8  # round(0.2 * 40)


@pytest.mark.parametrize("kind", POISONERS)
def test_poisoning_is_deterministic_per_seed_and_the_count_does_not_depend_on_it(kind):
    a, b, c = poison(kind, seed=1), poison(kind, seed=1), poison(kind, seed=2)
    np.testing.assert_array_equal(a.poisoned, b.poisoned)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.poisoned.sum() == c.poisoned.sum() == 8
    assert not np.array_equal(a.poisoned, c.poisoned)


# --- label flips ----------------------------------------------------------------------------


def test_targeted_label_flip_relabels_source_samples_only():
    x, y = images()
    out = poison("label_flip", x=x, y=y)
    assert set(y[out.poisoned]) == {1}
    assert set(out.y[out.poisoned]) == {3}
    np.testing.assert_array_equal(out.y[~out.poisoned], y[~out.poisoned])
    np.testing.assert_array_equal(out.x, x)


def test_targeted_label_flip_flips_every_source_sample_when_the_budget_exceeds_them():
    x, y = images()
    out = poison("label_flip", x=x, y=y, rate=0.5)  # 20 asked, 10 source samples exist
    np.testing.assert_array_equal(out.poisoned, y == 1)
    assert (out.y[y == 1] == 3).all()


def test_random_label_flip_draws_a_different_label_uniformly():
    x = np.zeros((3000, 2), dtype=np.float32)
    y = np.zeros(3000, dtype=np.int64)
    out = poison("random_label_flip", x=x, y=y, rate=1.0)
    assert out.poisoned.all()
    counts = np.bincount(out.y, minlength=CLASSES)
    assert counts[0] == 0
    assert all(900 < c < 1100 for c in counts[1:])  # 1000 expected for each other label


def test_random_label_flip_changes_labels_exactly_where_poisoned():
    x, y = images()
    out = poison("random_label_flip", x=x, y=y)
    assert (out.y[out.poisoned] != y[out.poisoned]).all()
    assert ((0 <= out.y) & (out.y < CLASSES)).all()
    np.testing.assert_array_equal(out.y[~out.poisoned], y[~out.poisoned])


# --- backdoors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "rows", "cols"),
    [
        ("bottom_right", slice(5, 8), slice(5, 8)),
        ("top_left", slice(0, 3), slice(0, 3)),
        ("top_right", slice(0, 3), slice(5, 8)),
        ("bottom_left", slice(5, 8), slice(0, 3)),
        ("center", slice(2, 5), slice(2, 5)),
        ([1, 4], slice(1, 4), slice(4, 7)),
    ],
)
def test_patch_is_stamped_exactly_where_specified_on_all_channels(position, rows, cols):
    x, y = images()
    out = poison("backdoor_patch", x=x, y=y, position=position, size=3)
    expected = x.copy()
    expected[out.poisoned, :, rows, cols] = 1.0
    np.testing.assert_array_equal(out.x, expected)
    assert (y[out.poisoned] != 0).all() and (out.y[out.poisoned] == 0).all()
    np.testing.assert_array_equal(out.y[~out.poisoned], y[~out.poisoned])


def test_checkerboard_patch_alternates_from_a_one_in_its_top_left_pixel():
    x, y = images()
    out = poison("backdoor_patch", x=x, y=y, position=[2, 3], size=4, pattern="checkerboard")
    board = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=np.float32)
    expected = x.copy()
    expected[out.poisoned, :, 2:6, 3:7] = board
    np.testing.assert_array_equal(out.x, expected)


def test_blend_with_checkerboard_is_the_convex_combination():
    x, y = images()
    out = poison("backdoor_blend", x=x, y=y, alpha=0.3, pattern="checkerboard")
    board = (np.add.outer(np.arange(8), np.arange(8)) % 2 == 0).astype(np.float64)
    expected = x.astype(np.float64)
    expected[out.poisoned] = 0.7 * expected[out.poisoned] + 0.3 * board
    np.testing.assert_allclose(out.x, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.x[~out.poisoned], x[~out.poisoned])
    assert (out.y[out.poisoned] == 0).all()


def test_blend_noise_pattern_is_fixed_by_its_seed_and_differs_per_channel():
    black = np.zeros((1, 3, 8, 8), dtype=np.float32)
    trigger = make("backdoor_blend", rate=0.1, target=0, alpha=0.5, seed=7).stamp(black)[0] / 0.5
    again = make("backdoor_blend", rate=0.9, target=2, alpha=0.5, seed=7).stamp(black)[0] / 0.5
    other = make("backdoor_blend", rate=0.1, target=0, alpha=0.5, seed=8).stamp(black)[0] / 0.5
    np.testing.assert_array_equal(trigger, again)
    assert not np.allclose(trigger, other)
    assert not np.allclose(trigger[0], trigger[1])
    assert 0.0 <= trigger.min() and trigger.max() < 1.0 and trigger.std() > 0.2


@pytest.mark.parametrize("kind", ["backdoor_patch", "backdoor_blend"])
def test_backdoor_probe_is_the_triggered_non_target_test_samples(kind):
    x, y = images(seed=3)
    attack = make(kind, rate=0.2, target=2)
    probe = attack.success_probe(x, y)
    assert probe.target == 2
    assert len(probe.x) == 30
    np.testing.assert_array_equal(probe.x, attack.stamp(x[y != 2]))
    assert not np.array_equal(probe.x, x[y != 2])


def test_backdoor_training_stamp_equals_probe_stamp():
    x, y = images()
    attack = make("backdoor_blend", rate=0.2, target=0)
    out = attack.poison(x, y, CLASSES, np.random.default_rng(0))
    np.testing.assert_array_equal(out.x[out.poisoned], attack.stamp(x[out.poisoned]))


# --- prediction manipulation ----------------------------------------------------------------


def manipulate(kind: str, n: int = 20, seed: int = 0, **params):
    logits = np.random.default_rng(100).normal(size=(n, CLASSES))
    attack = make(kind, **{**MANIPULATORS[kind], **params})
    lmap = attack.logit_map(n, CLASSES, np.random.default_rng(seed))
    return logits, lmap, lmap.apply(logits)


@pytest.mark.parametrize("kind", MANIPULATORS)
def test_selected_marks_exactly_the_manipulated_samples(kind):
    logits, lmap, out = manipulate(kind)
    assert lmap.selected.sum() == 5  # round(0.25 * 20)
    np.testing.assert_array_equal((out != logits).any(axis=1), lmap.selected)
    np.testing.assert_array_equal(out[~lmap.selected], logits[~lmap.selected])
    # zero offsets off the selection keep the map correct for a scheme that adds offset slot-wise
    assert (lmap.offset[~lmap.selected] == 0).all()


@pytest.mark.parametrize("kind", MANIPULATORS)
def test_selection_is_drawn_afresh_each_call_and_deterministic_per_seed(kind):
    attack = make(kind, **MANIPULATORS[kind])
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    first, second = attack.logit_map(40, CLASSES, rng_a), attack.logit_map(40, CLASSES, rng_a)
    assert first.selected.sum() == second.selected.sum() == 10
    assert not np.array_equal(first.selected, second.selected)
    replay = attack.logit_map(40, CLASSES, rng_b)
    np.testing.assert_array_equal(replay.selected, first.selected)
    np.testing.assert_array_equal(replay.offset, first.offset)


def test_class_swap_swaps_the_two_columns_of_selected_rows():
    logits, lmap, out = manipulate("class_swap")
    sel = lmap.selected
    np.testing.assert_array_equal(out[sel, 0], logits[sel, 2])
    np.testing.assert_array_equal(out[sel, 2], logits[sel, 0])
    np.testing.assert_array_equal(out[sel][:, [1, 3]], logits[sel][:, [1, 3]])


def test_targeted_push_adds_strength_to_the_target_logit_only():
    logits, lmap, out = manipulate("targeted_push")
    expected = logits.copy()
    expected[lmap.selected, 1] += 3.0
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_scale_multiplies_selected_logits():
    logits, lmap, out = manipulate("scale")
    expected = np.where(lmap.selected[:, None], -2.5 * logits, logits)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)


def test_noise_has_the_requested_spread_on_selected_logits_only():
    logits, lmap, out = manipulate("noise", n=4000, rate=0.5, std=0.5)
    delta = out[lmap.selected] - logits[lmap.selected]
    assert delta.shape == (2000, CLASSES)
    assert abs(delta.std() - 0.5) < 0.02 and abs(delta.mean()) < 0.02


def test_manipulation_probes():
    x, y = images()
    swap = make("class_swap", **MANIPULATORS["class_swap"]).success_probe(x, y)
    np.testing.assert_array_equal(swap.x, x[y == 0])
    assert swap.target == 2
    push = make("targeted_push", **MANIPULATORS["targeted_push"]).success_probe(x, y)
    np.testing.assert_array_equal(push.x, x[y != 1])
    assert push.target == 1
    assert make("scale", **MANIPULATORS["scale"]).success_probe(x, y) is None
    assert make("noise", **MANIPULATORS["noise"]).success_probe(x, y) is None


def test_label_flip_probe_is_the_source_class_test_samples():
    x, y = images()
    probe = make("label_flip", **POISONERS["label_flip"]).success_probe(x, y)
    np.testing.assert_array_equal(probe.x, x[y == 1])
    assert probe.target == 3 and len(probe.x) == 10
    assert make("random_label_flip", rate=0.1).success_probe(x, y) is None


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "culprit"),
    [
        ("label_flip", {"rate": 1.5, "source": 0, "target": 1}, "rate"),
        ("random_label_flip", {"rate": -0.1}, "rate"),
        ("label_flip", {"rate": 0.1, "source": -1, "target": 1}, "source"),
        ("class_swap", {"rate": 0.1, "source": 0, "target": -2}, "target"),
        ("backdoor_patch", {"rate": 0.1, "target": -1}, "target"),
        ("label_flip", {"rate": 0.1, "source": 2, "target": 2}, "must differ"),
        ("label_flip", {"rate": 0.1, "source": 0, "target": 1, "sorce": 2}, "sorce"),
        ("backdoor_patch", {"rate": 0.1, "target": 0, "size": 0}, "size"),
        ("backdoor_patch", {"rate": 0.1, "target": 0, "position": "middle"}, "position"),
        ("backdoor_patch", {"rate": 0.1, "target": 0, "pattern": "stripes"}, "pattern"),
        ("backdoor_blend", {"rate": 0.1, "target": 0, "alpha": 0.0}, "alpha"),
        ("backdoor_blend", {"rate": 0.1, "target": 0, "alpha": 1.5}, "alpha"),
        ("scale", {"rate": 0.1, "factor": 1.0}, "factor"),
        ("scale", {"rate": 0.1, "factor": float("inf")}, "factor"),
        ("noise", {"rate": 0.1, "std": 0.0}, "std"),
        ("targeted_push", {"rate": 0.1, "target": 0, "strength": -1.0}, "strength"),
    ],
)
def test_params_reject_invalid_values(kind, params, culprit):
    with pytest.raises(ValueError, match=culprit):
        ATTACKS.parse_spec({"kind": kind, **params})


@pytest.mark.parametrize(
    ("kind", "params", "shape", "culprit"),
    [
        ("label_flip", {"rate": 0.1, "source": 0, "target": 4}, (3, 8, 8), "target=4"),
        ("class_swap", {"rate": 0.1, "source": 7, "target": 1}, (3, 8, 8), "source=7"),
        ("targeted_push", {"rate": 0.1, "target": 4, "strength": 1.0}, (3, 8, 8), "target=4"),
        ("backdoor_blend", {"rate": 0.1, "target": 5}, (3, 8, 8), "target=5"),
        ("backdoor_patch", {"rate": 0.1, "target": 0, "size": 9}, (3, 8, 8), "size=9"),
        ("backdoor_patch", {"rate": 0.1, "target": 0, "size": 3, "position": [6, 0]}, (1, 8, 8), "position"),
        ("backdoor_patch", {"rate": 0.1, "target": 0}, (64,), "images"),
        ("backdoor_blend", {"rate": 0.1, "target": 0}, (64,), "images"),
    ],
)
def test_check_rejects_parameters_that_do_not_fit_the_dataset(kind, params, shape, culprit):
    with pytest.raises(ValueError, match=culprit):
        make(kind, **params).check(shape, CLASSES)


def test_check_accepts_fitting_parameters():
    make("backdoor_patch", rate=0.1, target=3, size=3, position=[5, 5]).check((1, 8, 8), CLASSES)
    make("backdoor_patch", rate=0.1, target=3, size=8).check((3, 8, 8), CLASSES)
    make("label_flip", rate=0.1, source=3, target=0).check((64,), CLASSES)
    make("noise", rate=0.1, std=1.0).check((64,), CLASSES)


def test_random_label_flip_needs_two_classes():
    with pytest.raises(ValueError, match="classes=1"):
        make("random_label_flip", rate=0.1).check((64,), 1)


SPECS = [{"kind": kind, **params} for kind, params in {**POISONERS, **MANIPULATORS}.items()]


@pytest.mark.parametrize("raw", [*SPECS, {"kind": "backdoor_patch", "rate": 0.1, "target": 0, "position": [1, 2]}])
def test_specs_survive_a_dump_and_reload(raw):
    spec = ATTACKS.parse_spec(raw)
    assert ATTACKS.parse_spec(spec.dump()) == spec

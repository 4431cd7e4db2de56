"""Datasets, splits, models and the training objective, checked by hand on small inputs."""

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from testbed.config import parse_scenario
from testbed.datasets import Cifar10
from testbed.models import he_friendly_problem, is_he_friendly
from testbed.party import Party
from testbed.registry import DATASETS, MODELS, SPLITS, Spec
from testbed.training import CROP_PADDING, augmented, mutual_learning_loss


def dataset(raw):
    return DATASETS.create(DATASETS.parse_spec(raw))


def test_digits_shapes_and_stratified_test_set():
    data = dataset({"kind": "digits", "test_samples": 300}).load(seed=0)
    assert data.train.x.shape == (1497, 1, 8, 8) and data.test.x.shape == (300, 1, 8, 8)
    assert data.train.x.dtype == np.float32 and 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    assert np.bincount(data.test.y).min() >= 29  # stratified: 30 per class, give or take one


def test_cifar10_missing_copy_names_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv("SMULE_CIFAR10", raising=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset({"kind": "cifar10"}).load(0)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.zip")):
        dataset({"kind": "cifar10", "path": str(tmp_path / "absent.zip")}).load(0)


def test_cifar10_reads_image_zip_and_batches_layouts(monkeypatch, tmp_path):
    monkeypatch.setenv("SMULE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = {(split, c): rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for split in ("train", "test") for c in (0, 9)}
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for (split, c), pixels in images.items():
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")  # lossless, so pixels can be compared
            z.writestr(f"{split}/{Cifar10.CLASS_NAMES[c]}/0001.png", buffer.getvalue())
    data = dataset({"kind": "cifar10", "path": str(archive)}).load(0)
    assert dataset({"kind": "cifar10", "path": str(archive)}).label() == "CIFAR-10 (JPEG)"
    assert list(data.train.y) == [0, 9]
    np.testing.assert_allclose(data.train.x[1], images[("train", 9)].transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # decoded once, cached

    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    flat = lambda c: images[("train", c)].transpose(2, 0, 1).reshape(1, -1)  # noqa: E731
    for i in range(1, 6):
        (batches / f"data_batch_{i}").write_bytes(pickle.dumps({b"data": flat(0), b"labels": [0]}))
    (batches / "test_batch").write_bytes(pickle.dumps({b"data": flat(9), b"labels": [9]}))
    data = dataset({"kind": "cifar10", "path": str(batches)}).load(0)
    assert dataset({"kind": "cifar10", "path": str(batches)}).label() == "CIFAR-10"
    assert len(data.train) == 5 and list(data.test.y) == [9]
    np.testing.assert_allclose(data.test.x[0], images[("train", 9)].transpose(2, 0, 1) / 255.0, atol=1e-6)


@pytest.mark.parametrize("split", [{"kind": "iid"}, {"kind": "dirichlet", "alpha": 0.1}])
def test_splits_are_disjoint_and_sized(split):
    labels = np.repeat(np.arange(5), 40)
    parts = SPLITS.create(SPLITS.parse_spec(split)).assign(labels, [60, 70, 50], 5, np.random.default_rng(1))
    assert [len(p) for p in parts] == [60, 70, 50]
    assert len(np.unique(np.concatenate(parts))) == 180


def test_dirichlet_skews_labels_more_than_iid():
    labels = np.repeat(np.arange(10), 100)

    def dominant_share(raw):
        parts = SPLITS.create(SPLITS.parse_spec(raw)).assign(labels, [200, 200], 10, np.random.default_rng(0))
        return np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])

    assert dominant_share({"kind": "dirichlet", "alpha": 0.05}) > 0.4 > 0.2 > dominant_share({"kind": "iid"})


def test_he_friendliness():
    build = lambda raw: MODELS.create(MODELS.parse_spec(raw)).build((1, 8, 8), 10)  # noqa: E731
    assert is_he_friendly(build({"kind": "mlp", "activation": "square"}))
    assert is_he_friendly(build({"kind": "he_cnn"}))
    assert not is_he_friendly(build({"kind": "mlp", "activation": "relu"}))
    assert not is_he_friendly(build({"kind": "relu_cnn"}))
    assert he_friendly_problem(build({"kind": "he_cnn"})) is None
    assert he_friendly_problem(build({"kind": "relu_cnn"})).endswith("found MaxPool2d, ReLU")


def test_mutual_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    peer = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]]])
    weights = torch.tensor([[1.0, 0.0]])  # second peer prediction filtered out
    T, lam = 2.0, 0.5
    p = torch.softmax(peer[0, 0] / T, 0)
    q = torch.softmax(logits[0] / T, 0)
    kl_first = float((p * (p / q).log()).sum())
    expected = float(F.cross_entropy(logits, labels)) + lam * T**2 * kl_first / 2
    assert float(mutual_learning_loss(logits, labels, peer, weights, T, lam)) == pytest.approx(expected, rel=1e-6)
    assert float(mutual_learning_loss(logits, labels, peer, weights, T, 0.0)) == pytest.approx(float(F.cross_entropy(logits, labels)))


def test_registry_spec_round_trip():
    spec = MODELS.parse_spec({"kind": "mlp", "hidden": [3]})
    assert isinstance(spec, Spec) and MODELS.parse_spec(spec.dump()) == spec


def test_augmentation_crops_and_flips_each_image_reproducibly():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6).repeat(50, 1, 1, 1)
    out = augmented(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    torch.testing.assert_close(out, augmented(images, torch.Generator().manual_seed(0)))
    # Every output is a shifted window of the reflect-padded image, possibly mirrored: its rows come from the original's.
    padded = torch.nn.functional.pad(images, (CROP_PADDING,) * 4, mode="reflect")
    windows = {
        (top, left, flip): None for top in range(2 * CROP_PADDING + 1) for left in range(2 * CROP_PADDING + 1) for flip in (False, True)
    }
    seen = set()
    for image, source in zip(out, padded):
        matches = [k for k in windows if torch.equal(image, (lambda w: w.flip(-1) if k[2] else w)(source[:, k[0] : k[0] + 6, k[1] : k[1] + 6]))]
        assert matches, "an output that is no crop of the padded image"
        seen.add(matches[0])
    assert len(seen) > 20 and any(k[2] for k in seen) and not all(k[2] for k in seen)


def test_cosine_schedule_anneals_to_zero_over_the_epochs(tiny_raw):
    scenario = parse_scenario(tiny_raw, ["training.schedule=cosine", "epochs=4", "protocol=local"])
    party = Party(scenario, "A", with_twin=False)
    rates = []
    for _ in range(4):
        rates.append(party.optimizer.param_groups[0]["lr"])
        party.train(False)
    assert rates[0] == pytest.approx(0.01) and rates == sorted(rates, reverse=True)
    assert party.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)



def test_validation_samples_replace_the_test_set_with_a_held_out_slice_of_the_train_pool(tiny_raw):
    from testbed.datasets import load_data
    from testbed.shares import party_data

    full = load_data(parse_scenario(tiny_raw))
    scenario = parse_scenario(tiny_raw, ["validation_samples=20"])
    held = load_data(scenario)
    rows = {row.tobytes(): i for i, row in enumerate(full.train.x)}
    validation = [rows[row.tobytes()] for row in held.test.x]  # KeyError if a row is not from the train pool
    remaining = [rows[row.tobytes()] for row in held.train.x]
    assert len(held.test) == 20 and len(held.train) == len(full.train) - 20
    assert sorted(validation + remaining) == list(range(len(full.train)))
    assert np.array_equal(held.test.y, full.train.y[validation])
    shares = party_data(scenario, held)
    assert not set(validation) & {remaining[i] for share in shares.values() for i in share.indices}
    assert Party(scenario, "A", with_twin=False).test is held.test
    other_seed = load_data(parse_scenario(tiny_raw, ["validation_samples=20", "seed=4"]))
    assert not np.array_equal(other_seed.test.x, held.test.x)


def test_validation_samples_must_leave_room_for_the_parties(tiny_raw):
    from testbed.config import ScenarioError

    with pytest.raises(ScenarioError, match=r"A=50, B=50 add up to 100, more than the 90 training samples left after validation_samples=30"):
        parse_scenario(tiny_raw, ["validation_samples=30"])

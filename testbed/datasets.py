"""Datasets, selected by ``kind``: a train pool the parties split, and a shared clean test set.

Images are float32 arrays ``(n, channels, height, width)`` scaled to [0, 1]; labels are int64.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from testbed.config import Scenario
from testbed.files import atomic_path
from testbed.registry import DATASETS, Component, Params
from testbed.seeding import seeded_rng


@dataclass(frozen=True)
class ArrayDataset:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> "ArrayDataset":
        return ArrayDataset(self.x[index], self.y[index])


@dataclass(frozen=True)
class LoadedData:
    train: ArrayDataset
    test: ArrayDataset
    classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


class Dataset(Component):
    classes: int
    input_shape: tuple[int, ...]

    def train_pool_size(self) -> int:
        """Samples available to split between parties, known without loading (for validation)."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the data cannot be loaded (e.g. a missing local copy); called at validation."""

    def label(self) -> str:
        """How results must name the data, e.g. "CIFAR-10 (JPEG)"."""
        return self.kind

    def load(self, seed: int) -> LoadedData:
        raise NotImplementedError




def load_data(scenario: Scenario) -> LoadedData:
    """The scenario's data set, loaded once per process: parties, clean twins and audits in one
    process share it (nobody writes to it: shares and poison are copies), which matters for CIFAR-10 (600 MB as float32).

    With ``validation_samples``, a seeded slice of the train pool takes the test set's place and
    the parties split the rest: a hyperparameter search then never sees the test set."""
    return _load(json.dumps(scenario.dataset.dump(), sort_keys=True), scenario.seed, scenario.validation_samples)


# One data set at a time: every load within a run has the same key, and a Ray worker that runs
# several runs in turn must not carry a finished run's copy (600 MB for CIFAR-10) into the next
# run's memory and peak.
@functools.lru_cache(maxsize=1)
def _load(dataset: str, seed: int, validation_samples: int) -> LoadedData:
    loaded = DATASETS.create(DATASETS.parse_spec(json.loads(dataset))).load(seed)
    if not validation_samples:
        return loaded
    order = seeded_rng(seed, "validation").permutation(len(loaded.train))
    held, rest = np.sort(order[:validation_samples]), np.sort(order[validation_samples:])
    return LoadedData(loaded.train.subset(rest), loaded.train.subset(held), loaded.classes)


def _take_test(data: ArrayDataset, count: int | None, seed: int) -> ArrayDataset:
    if count is None or count >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:count]))


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): no download."""

    TOTAL = 1797
    classes = 10
    input_shape = (1, 8, 8)

    class Params(Params):
        test_samples: int = Field(360, ge=10, le=1000, description="held-out clean test set size (stratified)")

    def train_pool_size(self) -> int:
        return self.TOTAL - self.params.test_samples

    def load(self, seed: int) -> LoadedData:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
        y = bunch.target.astype(np.int64)
        # The test split is fixed (seed 0), not the run seed, so runs with different seeds share one test set.
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=self.params.test_samples, stratify=y, random_state=0)
        return LoadedData(ArrayDataset(x_tr, y_tr), ArrayDataset(x_te, y_te), self.classes)


@DATASETS.register("synthetic")
class Synthetic(Dataset):
    """Gaussian class clusters as tiny images: for fast tests."""

    class Params(Params):
        train_samples: int = Field(400, ge=2, le=1_000_000, description="size of the train pool the parties split")
        test_samples: int = Field(200, ge=2, le=1_000_000, description="size of the clean test set")
        classes: int = Field(4, ge=2, le=100, description="number of classes, one Gaussian cluster each")
        side: int = Field(4, ge=2, le=32, description="images are 1 x side x side")
        separation: float = Field(1.0, gt=0, description="distance between the cluster centres, in standard deviations of the noise")

    def train_pool_size(self) -> int:
        return self.params.train_samples

    @property
    def input_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return (1, self.params.side, self.params.side)

    @property
    def classes(self) -> int:  # type: ignore[override]
        return self.params.classes

    def load(self, seed: int) -> LoadedData:
        p = self.params
        rng = np.random.default_rng(12345)  # fixed: the data set is part of the scenario, not the run
        centres = rng.uniform(0, 1, size=(p.classes, p.side * p.side))
        n = p.train_samples + p.test_samples
        y = np.arange(n) % p.classes
        rng.shuffle(y)
        x = centres[y] + rng.normal(0, 0.3 / p.separation, size=(n, p.side * p.side))
        x = np.clip(x, 0, 1).astype(np.float32).reshape(n, 1, p.side, p.side)
        y = y.astype(np.int64)
        train = ArrayDataset(x[: p.train_samples], y[: p.train_samples])
        test = ArrayDataset(x[p.train_samples :], y[p.train_samples :])
        return LoadedData(train, test, p.classes)


CIFAR10_ENV = "SMULE_CIFAR10"
CACHE_ENV = "SMULE_CACHE"


@DATASETS.register("cifar10")
class Cifar10(Dataset):
    """CIFAR-10 (Krizhevsky, 2009) from a local copy; never downloaded.

    Reads either the standard ``cifar-10-batches-py`` directory or a zip in ImageFolder layout
    (``{train,test}/{class}/NNNN.jpg``, as the project's shared JPEG copy). The path comes from
    ``dataset.path`` or the ``SMULE_CIFAR10`` environment variable. Decoded arrays are cached as
    ``.npz`` under ``SMULE_CACHE`` (default ``.cache/`` in the working directory).
    """

    classes = 10
    input_shape = (3, 32, 32)
    CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    class Params(Params):
        path: str | None = Field(None, description="cifar-10-batches-py directory or ImageFolder zip")
        test_samples: int | None = Field(None, ge=10, le=10000, description="subsample the 10,000 test images")

    def train_pool_size(self) -> int:
        return 50000

    def check(self) -> None:
        """The copy exists and has CIFAR-10's layout (its contents are read only when a run loads it)."""
        path = self.source()
        if path.is_dir():
            missing = [name for name in BATCH_FILES if not (path / name).is_file()]
            if missing:
                raise ValueError(f"CIFAR-10 at {path}: not a cifar-10-batches-py directory, it lacks {', '.join(missing)}")
            return
        if not zipfile.is_zipfile(path):
            raise ValueError(f"CIFAR-10 at {path}: neither a cifar-10-batches-py directory nor a zip")
        with zipfile.ZipFile(path) as archive:
            first: dict[str, str] = {}  # per split, the first image a run decodes
            for member in sorted(archive.namelist()):
                if entry := _image_member(member, self.CLASS_NAMES):
                    first.setdefault(entry[0], member)
            if set(first) != {"train", "test"}:
                raise ValueError(f"CIFAR-10 at {path}: no images in the {{train,test}}/{{class}}/*.jpg layout for {' and '.join(sorted({'train', 'test'} - set(first)))}")
            for member in first.values():  # a copy of other files under image names fails here, not 30 s into a run
                _decode(archive, member, path)

    def label(self) -> str:
        return "CIFAR-10" if self.source().is_dir() else "CIFAR-10 (JPEG)"

    def source(self) -> Path:
        """The configured copy; raises ``FileNotFoundError`` naming where it looked."""
        tried = [p for p in (self.params.path, os.environ.get(CIFAR10_ENV)) if p]
        for candidate in map(Path, tried):
            if candidate.exists():
                return candidate
        where = ", ".join(tried) if tried else "nowhere (no dataset.path and no $" + CIFAR10_ENV + ")"
        raise FileNotFoundError(
            f"CIFAR-10 not found; looked at: {where}. Set dataset.path or ${CIFAR10_ENV} to a "
            "cifar-10-batches-py directory or to an ImageFolder zip such as ../shared/data/cifar10-jpeg.zip"
        )

    def load(self, seed: int) -> LoadedData:
        path = self.source()
        arrays = self._cached_arrays(path)
        train = ArrayDataset(_to_float(arrays["x_train"]), arrays["y_train"].astype(np.int64))
        test = ArrayDataset(_to_float(arrays["x_test"]), arrays["y_test"].astype(np.int64))
        return LoadedData(train, _take_test(test, self.params.test_samples, 0), self.classes)

    def _cached_arrays(self, path: Path) -> dict[str, np.ndarray]:
        stat = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        cache = Path(os.environ.get(CACHE_ENV, ".cache")) / f"cifar10-{key}.npz"
        if cache.exists():
            with np.load(cache) as stored:
                return dict(stored)
        arrays = _read_batches(path) if path.is_dir() else _read_image_zip(path, self.CLASS_NAMES)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, suffix=".tmp.npz") as partial:
            np.savez(partial, **arrays)
        return arrays


def _image_member(member: str, class_names: tuple[str, ...]) -> tuple[str, str] | None:
    """``(split, class)`` of a zip member in the ImageFolder layout, else ``None``."""
    parts = member.split("/")
    if len(parts) < 3 or not member.lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in ("train", "test") and cls in class_names else None


def _to_float(images_uint8: np.ndarray) -> np.ndarray:
    return (images_uint8.astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _read_batches(directory: Path) -> dict[str, np.ndarray]:
    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            with open(directory / name, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            xs.append(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[b"labels"]))
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = read(list(BATCH_FILES[:5]))
    x_test, y_test = read([BATCH_FILES[5]])
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _decode(archive: zipfile.ZipFile, member: str, path: Path) -> np.ndarray:
    """The 32x32 RGB image ``member`` of the zip at ``path``; ``ValueError`` naming it otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(archive.read(member))) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, zipfile.BadZipFile, ValueError) as err:
        reason = "not a format PIL knows" if isinstance(err, UnidentifiedImageError) else str(err)
        raise ValueError(f"CIFAR-10 at {path}: {member} is not a decodable image ({reason}); allowed: JPEG or PNG images, 32x32") from None
    if pixels.shape != (32, 32, 3):
        raise ValueError(f"CIFAR-10 at {path}: {member} is {pixels.shape[1]}x{pixels.shape[0]} pixels; allowed: 32x32")
    return pixels


def _read_image_zip(path: Path, class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    index = {name: label for label, name in enumerate(class_names)}
    out: dict[str, list] = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    with zipfile.ZipFile(path) as archive:
        for member in sorted(archive.namelist()):
            if not (entry := _image_member(member, class_names)):
                continue
            split, cls = entry
            out[f"x_{split}"].append(_decode(archive, member, path))
            out[f"y_{split}"].append(index[cls])
    if not out["x_train"]:
        raise ValueError(f"{path}: no images in {{train,test}}/{{class}}/*.jpg layout")
    return {key: np.stack(values) if key[0] == "x" else np.asarray(values, np.int64) for key, values in out.items()}

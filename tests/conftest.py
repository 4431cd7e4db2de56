import copy

import pytest
import torch

torch.set_num_threads(1)

TINY = {
    "name": "tiny",
    "seed": 3,
    "epochs": 3,
    "dataset": {"kind": "synthetic", "train_samples": 120, "test_samples": 60, "classes": 3, "side": 3},
    "training": {"batch_size": 16, "learning_rate": 0.01, "warmup_epochs": 1},
    "parties": {
        "A": {"samples": 50, "model": {"kind": "mlp", "hidden": [8]}},
        "B": {"samples": 50, "model": {"kind": "mlp", "hidden": [8]}},
    },
}


@pytest.fixture
def tiny_raw():
    """A valid raw scenario on the synthetic data set: fast to validate and to run."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()

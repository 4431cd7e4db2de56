"""The benchmark scripts, run as programs, refuse bad input before anything runs; and they
aggregate what they ran correctly."""

import subprocess
import sys

import pytest
from clitools import ROOT, make_summary
from clitools import load_bench as load

BENCH = ROOT / "bench"


#: Each script with arguments it must refuse, and what its message names.
REFUSED = {
    "ckks.py": (["--out", "."], "--out .: . is a directory"),
    "ckks_full_batch.py": (["--out", "out.json", "--samples", "9000"], "--samples 9000: one batch holds at most 8192 images"),
    "mpc_inference.py": (["--out", "."], "--out .: . is a directory"),
    "routing.py": (["--out", "out.json", "--cifar10", "no-such-copy.zip"], "--cifar10 no-such-copy.zip: no such file or directory"),
    "cifar10.py": (["--data", "no-such-copy.zip", "--out", "out"], "--data no-such-copy.zip: no such file or directory"),
    "parallel_ceiling.py": (["--out", "out.json", "--repeats", "0"], "--repeats 0: allowed: 1 to 10000"),
}


#: Modules the scripts import, not programs.
HELPERS = {"tenseal_reference.py"}


def test_every_bench_script_is_checked():
    assert sorted(REFUSED) == sorted(p.name for p in BENCH.glob("*.py") if p.name not in HELPERS)


def test_tenseal_reference_matches_plaintext_on_a_tiny_mlp():
    """TenSEAL's CKKSTensor baseline (bench/tenseal_reference.py) computes the model: same logits
    as plaintext within TenSEAL's precision (its rescale resets the scale, so looser than ours)."""
    import numpy as np
    import torch

    from testbed.registry import MODELS
    from testbed.schemes.ckks.plan import plan_for_depth

    sys.path.insert(0, str(BENCH))
    from tenseal_reference import tenseal_answer

    torch.manual_seed(0)
    model = MODELS.create(MODELS.parse_spec({"kind": "mlp", "hidden": [8], "activation": "poly2"})).build((1, 4, 4), 3).eval()
    x = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    logits, seconds = tenseal_answer(model, x, plan_for_depth(3, 26, 10))
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert logits.shape == reference.shape and seconds > 0
    assert np.abs(logits - reference).max() < 0.05 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("script", sorted(REFUSED))
def test_a_bench_script_run_as_a_program_exits_2_naming_the_bad_argument(script, tmp_path):
    """As docs/analysis.md runs them (``python bench/X.py``), from another directory: the exit status is
    the command's, the message names the argument, and nothing is written."""
    args, named = REFUSED[script]
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def _summary(seed: int, accuracy_a: float, asr_a: float | None, wall: float, accuracy_b: float | None = None):
    return make_summary({
        "A": {"role": "honest", "accuracy": accuracy_a, "asr": asr_a, "peak_rss_mb": 900.0},
        "B": {"role": "malicious" if accuracy_b is None else "honest", "accuracy": accuracy_b or 0.5, "asr": 0.9, "peak_rss_mb": 1200.0},
    }, {"setup_bytes": 1000, "bytes_per_epoch": 10, "exchange_epochs": 3, "rounds_per_epoch": 1},
        seed=seed, epochs=4, scheme="ckks", dataset="CIFAR-10 (JPEG)", seconds={"wall": wall, "by_party_and_phase": {}})


def test_cifar10_table_aggregates_honest_parties_over_seeds_with_rate0_deltas():
    cifar10 = load("cifar10")
    rate0_seed1 = _summary(1, 0.66, 0.10, 0.0)
    rate0_seed1 = rate0_seed1.model_copy(update={"parties": {**rate0_seed1.parties, "B": rate0_seed1.parties["B"].model_copy(update={"asr": 0.5})}})
    results = {
        "poison-smule-seed0": (_summary(0, 0.60, 0.30, 40.0), _summary(0, 0.62, 0.10, 0.0)),
        "poison-smule-seed1": (_summary(1, 0.70, 0.20, 80.0), rate0_seed1),
    }
    (row,) = cifar10.table(results)
    assert (row["scenario"], row["protocol"], row["seeds"]) == ("poison", "smule", 2)
    assert row["honest_accuracy"]["mean"] == pytest.approx(0.65) and row["honest_accuracy"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert row["honest_asr_delta"]["mean"] == pytest.approx(0.15)  # (0.30 - 0.10 + 0.20 - 0.10) / 2, the attacker excluded
    assert row["honest_accuracy_delta"]["mean"] == pytest.approx(0.01)  # (0.60 - 0.62 + 0.70 - 0.66) / 2
    assert row["attacker_asr_delta"]["mean"] == pytest.approx(0.2)  # (0.9 - 0.9 + 0.9 - 0.5) / 2, B only
    assert row["total_bytes"] == 1000 + 10 * 3
    assert row["seconds_per_epoch"]["mean"] == pytest.approx(15.0)
    assert row["peak_rss_mb"] == 1200.0
    assert "| poison | smule | 2 | 0.650 +- 0.071 | 0.150 +- 0.071 |" in cifar10.markdown([row])


def test_cifar10_table_takes_the_std_over_seeds_of_each_seeds_party_mean():
    cifar10 = load("cifar10")
    results = {
        "clean-smule-seed0": (_summary(0, 0.60, None, 40.0, accuracy_b=0.70), None),
        "clean-smule-seed1": (_summary(1, 0.66, None, 40.0, accuracy_b=0.66), None),
    }
    (row,) = cifar10.table(results)
    # Seed means 0.65 and 0.66: std 0.00707 over the 2 seeds (pooling the 4 parties would give 0.041).
    assert row["honest_accuracy"]["mean"] == pytest.approx(0.655) and row["honest_accuracy"]["std"] == pytest.approx(0.0070711, rel=1e-4)
    assert row["honest_accuracy"]["n"] == 2
    assert row["honest_accuracy_delta"]["mean"] is None  # no attack, no reference: no delta to report

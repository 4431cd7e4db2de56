"""The benchmark scripts import, parse their arguments, and aggregate what they ran correctly."""

import subprocess
import sys

import pytest
from clitools import ROOT
from clitools import load_bench as load

BENCH = ROOT / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_starts(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--out" in done.stdout


def _summary(seed: int, accuracy_a: float, asr_a: float | None, wall: float, accuracy_b: float | None = None) -> dict:
    return {
        "seed": seed, "epochs": 4, "protocol": "smule", "scheme": "ckks", "dataset": "CIFAR-10 (JPEG)",
        "parties": {
            "A": {"role": "honest", "accuracy": accuracy_a, "asr": asr_a, "peak_rss_mb": 900.0},
            "B": {"role": "malicious" if accuracy_b is None else "honest", "accuracy": accuracy_b or 0.5, "asr": 0.9, "peak_rss_mb": 1200.0},
        },
        "communication": {"setup_bytes": 1000, "bytes_per_epoch": 10, "exchange_epochs": 3, "rounds_per_epoch": 1},
        "seconds": {"wall": wall},
    }


def test_cifar10_table_aggregates_honest_parties_over_seeds_with_rate0_deltas():
    cifar10 = load("cifar10")
    results = {
        "poison-smule-seed0": (_summary(0, 0.60, 0.30, 40.0), _summary(0, 0.62, 0.10, 0.0)),
        "poison-smule-seed1": (_summary(1, 0.70, 0.20, 80.0), _summary(1, 0.66, 0.10, 0.0)),
    }
    results["poison-smule-seed1"][1]["parties"]["B"]["asr"] = 0.5
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

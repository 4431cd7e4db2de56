"""Benchmark where payloads travel: the driver's peak memory against the size of the setup payload.

    python bench/routing.py --out results/bench/routing.json [--megabytes 50 500]
    python bench/routing.py --out results/bench/routing_cifar10.json --cifar10 PATH [--samples 2000 4500]

Runs a one-epoch SMuLe scenario with Ray party actors on synthetic 32x32 data, the plaintext
scheme (its setup payload is the querier's samples: ``samples x 4 KB``), once per payload size,
and records the driver process's peak resident memory (reset before each run) beside the bytes
the channel recorded. With ``--cifar10``, the scenario is scenarios/cifar10_real_ckks.yaml for
one epoch (real CKKS, ``he_cnn``) at ``--samples`` images per party: its setup payload is one
batch of ciphertexts per 4,096 images, 1.3 GB each. Under :class:`testbed.cluster.PartyActor` a
payload goes from actor to actor through Ray's object store, so the driver's peak should not
grow with the payload.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cli import UsageError, output, path_argument, run_command  # noqa: E402
from testbed.config import parse_scenario  # noqa: E402
from testbed.driver import run_scenario  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.memory import peak_rss_mb, reset_peak_rss  # noqa: E402
from testbed.results import RunDirectory  # noqa: E402

BYTES_PER_SAMPLE = 32 * 32 * 4  # one float32 image of the synthetic data set


def log(message: str) -> None:
    print(f"[bench/routing {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def scenario(samples: int) -> dict:
    return {
        "name": f"routing_{samples}", "seed": 0, "epochs": 1,
        "dataset": {"kind": "synthetic", "train_samples": 2 * samples, "test_samples": 100, "classes": 4, "side": 32},
        "training": {"batch_size": 256, "warmup_epochs": 0},
        "ray": {"object_store_mb": 2048, "num_cpus": 2},
        "parties": {name: {"samples": samples, "model": {"kind": "mlp", "hidden": [8]}} for name in ("A", "B")},
    }


def cifar10_scenario(path: Path, samples: int) -> dict:
    import yaml

    raw = yaml.safe_load((ROOT / "scenarios" / "cifar10_real_ckks.yaml").read_text())
    raw.update(name=f"routing_cifar10_{samples}", epochs=1)
    raw["dataset"]["path"] = str(path)
    for party in raw["parties"].values():
        party["samples"] = samples
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--megabytes", type=float, nargs="+", default=[50.0, 500.0], help="setup payload sizes per direction, MB (default: 50 500)")
    parser.add_argument("--cifar10", type=path_argument, help="a CIFAR-10 copy (e.g. the project's cifar10-jpeg.zip): real-CKKS CIFAR-10 setups instead of synthetic ones")
    parser.add_argument("--samples", type=int, nargs="+", default=[2000, 4500], help="with --cifar10: images per party, one run each (default: 2000 4500, one and two batches)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        bad = [m for m in args.megabytes if not 0.1 <= m <= 1000]
        if bad:
            raise UsageError(f"--megabytes {bad[0]:g}: allowed: 0.1 to 1000")
        if args.cifar10 is not None and not args.cifar10.exists():
            raise UsageError(f"--cifar10 {args.cifar10}: no such file or directory")
        bad = [n for n in args.samples if not 2 <= n <= 25_000]
        if bad:
            raise UsageError(f"--samples {bad[0]}: allowed: 2 to 25000 images per party")
        if args.cifar10 is not None:
            scenarios = [parse_scenario(cifar10_scenario(args.cifar10, n)) for n in args.samples]  # a bad copy stops here, not after a run
        else:
            scenarios = [parse_scenario(scenario(max(2, round(megabytes * 1e6 / BYTES_PER_SAMPLE)))) for megabytes in args.megabytes]
        out = output(args.out, "--out", "file")
        rows = []
        for config in scenarios:
            log(f"{config.name}: {config.parties['A'].samples} samples per party")
            reset_peak_rss()
            with tempfile.TemporaryDirectory() as run:
                summary = run_scenario(config, RunDirectory(Path(run) / "run"), progress=False)
            rows.append({"setup_megabytes_per_direction": summary.communication.setup_bytes / 2 / 1e6, "driver_peak_rss_mb": peak_rss_mb()})
            log(f"driver peak {rows[-1]['driver_peak_rss_mb']:.0f} MB")
        write_atomic(out, json.dumps({"runs": rows}, indent=2) + "\n")
        log(f"wrote {out}")
        return 0

    return run_command("bench/routing.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())

"""One full batch of the full-width CIFAR-10 convnet in real CKKS mode, within a memory bound.

    python bench/ckks_full_batch.py --out results/bench/ckks_full_batch.json [--calibration results/bench/ckks_costs.json]
        [--max-memory-gb 12] [--samples 8192] [--channels 16 32 64] [--train 5000] [--spill-dir DIR]

The setting of scenarios/cifar10_clean.yaml's model (``he_convnet`` 16-32-64, depth 7, ring
16384) with real packing: one batch fills the 8,192 slots. The model is first trained briefly in
plaintext (``--train`` images, 3 epochs) so that its logits have the margins of a used model;
then a querier encrypts ``--samples`` CIFAR-10 test images and a responder answers them once, in
real mode, its evaluation streamed to disk (``scheme.evaluation`` auto) within
``--max-memory-gb``. Reported: the answer's seconds per phase (and the time model's prediction
with ``--calibration``), the process's peak resident memory (during the answer, and overall
with the querier's encryption), real against accounted bytes, and the agreement of the
decrypted logits with the plaintext model's. Flooding is off (``flood_std`` 0): its noise is
there on purpose and would blur the agreement measured. Needs the project's CIFAR-10 copy;
about 20 minutes and 18 GB of free disk for spill files on a 2-core machine at full size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ckks import CIFAR_ZIP, CLASSES, train  # noqa: E402

from testbed.cli import UsageError, at_least, output, path_argument, run_command  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.memory import peak_rss_mb, reset_peak_rss  # noqa: E402
from testbed.registry import DATASETS, MODELS, SCHEMES  # noqa: E402
from testbed.schemes.ckks.plan import plan_for_depth  # noqa: E402
from testbed.schemes.ckks.time_model import Calibration, CalibrationError  # noqa: E402


def log(message: str) -> None:
    print(f"[bench/ckks_full_batch {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def scheme(mode: str, seed: int, args: argparse.Namespace):
    spec = {"kind": "ckks", "mode": mode, "depth": 7, "flood_std": 0.0, "max_memory_gb": args.max_memory_gb, "spill_dir": args.spill_dir and str(args.spill_dir)}
    if args.calibration is not None:
        spec["calibration"] = str(args.calibration)
    return SCHEMES.create(SCHEMES.parse_spec(spec), CLASSES, seed)


def run(args: argparse.Namespace, out: Path) -> dict:
    dataset = DATASETS.create(DATASETS.parse_spec({"kind": "cifar10", "path": str(CIFAR_ZIP)}))
    data = dataset.load(0)
    chosen = np.random.default_rng(1).permutation(len(data.test.y))[: args.samples]  # the zip is sorted by class
    samples, labels = data.test.x[chosen], data.test.y[chosen]
    torch.manual_seed(0)
    spec = {"kind": "he_convnet", "channels": args.channels}
    model = MODELS.create(MODELS.parse_spec(spec)).build((3, 32, 32), CLASSES)
    party = np.random.default_rng(0).permutation(len(data.train.y))[: args.train]  # the zip is sorted by class
    log(f"training {spec} on {args.train} images, 3 epochs")
    train(model, data.train.x[party], data.train.y[party], epochs=3)
    del data
    with torch.no_grad():
        reference = model(torch.from_numpy(samples)).numpy()
    SCHEMES.get("ckks").check_model(scheme("real", 2, args).params, model, (3, 32, 32))  # refuses a bound it cannot keep, before the encryption

    querier, responder = scheme("real", 1, args), scheme("real", 2, args)
    log(f"encrypting {len(samples)} images")
    started = time.perf_counter()
    setup = querier.setup(samples)
    setup_s = time.perf_counter() - started
    setup_predicted = querier.predicted_timings()
    responder.load(setup)
    responder.timings()
    responder.predicted_timings()
    peak_setup_mb = peak_rss_mb()
    reset_peak_rss()
    log(f"setup {len(setup.data) / 1e9:.2f} GB in {setup_s:.0f} s; answering (streamed within {args.max_memory_gb:g} GB)")
    responder.streamed.progress = log
    started = time.perf_counter()
    answer = responder.answer(model)
    answer_s = time.perf_counter() - started
    peak_answer_mb = peak_rss_mb()
    phases, predicted = responder.timings(), responder.predicted_timings()
    chunks = responder.streamed.chunk_counts
    logits = querier.decode(answer)
    log(f"answer in {answer_s:.0f} s, peak {peak_answer_mb / 1024:.2f} GB")

    accounted_querier, accounted_responder = scheme("accounted", 1, args), scheme("accounted", 2, args)
    accounted_setup = accounted_querier.setup(samples)
    accounted_responder.load(accounted_setup)
    accounted_answer = accounted_responder.answer(model)
    error = np.abs(logits - reference)
    evaluated = sum(seconds for phase, seconds in phases.items() if phase != "lower")
    return {
        "dataset": dataset.label(),
        "model": spec,
        "samples": len(samples),
        "plan": {"poly_modulus_degree": querier.plan.poly_modulus_degree, "coeff_mod_bit_sizes": list(querier.plan.coeff_mod_bit_sizes), "slots": querier.plan.slots, "complex_packing": False},
        "max_memory_gb": args.max_memory_gb,
        "plaintext_accuracy": float((reference.argmax(1) == labels).mean()),
        "encrypted_accuracy": float((logits.argmax(1) == labels).mean()),
        "argmax_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_error": float(error.max()),
        "max_abs_logit": float(np.abs(reference).max()),
        "seconds": {"setup_encrypt": setup_s, "answer": answer_s, **{f"answer_{k}": v for k, v in phases.items()}},
        "chunks_per_pass": chunks,
        **({"predicted_seconds": {"setup_encrypt": setup_predicted.get("encrypt", 0.0), **{f"answer_{k}": v for k, v in predicted.items()}},
            "predicted_over_measured": {"setup_encrypt": setup_predicted.get("encrypt", 0.0) / setup_s, "answer": sum(predicted.values()) / evaluated}} if predicted else {}),
        "peak_rss_gb": {"answer": peak_answer_mb / 1024, "setup_and_load": peak_setup_mb / 1024},
        "bytes": {"setup_real": len(setup.data), "setup_accounted": accounted_setup.charged_bytes, "answer_real": len(answer.data), "answer_accounted": accounted_answer.charged_bytes},
        "accounted_over_real": {"setup": accounted_setup.charged_bytes / len(setup.data), "answer": accounted_answer.charged_bytes / len(answer.data)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--calibration", type=path_argument, help="a file from 'python bench/ckks.py --calibrate' on this machine: the time model's prediction beside the measurement")
    parser.add_argument("--max-memory-gb", type=float, default=12.0, help="scheme.max_memory_gb of the responder (default 12)")
    parser.add_argument("--samples", type=at_least(1), default=8192, help="test images encrypted (default 8192, one full batch)")
    parser.add_argument("--channels", type=at_least(1), nargs="+", default=[16, 32, 64], help="he_convnet channels (default 16 32 64, the full width)")
    parser.add_argument("--train", type=at_least(1), default=5000, help="training images for the brief plaintext training (default 5000)")
    parser.add_argument("--spill-dir", type=path_argument, help="scheme.spill_dir (default: the system's temporary directory)")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        if args.max_memory_gb <= 0:
            raise UsageError(f"--max-memory-gb {args.max_memory_gb:g}: allowed: a positive number of GB")
        if args.samples > 8192:
            raise UsageError(f"--samples {args.samples}: one batch holds at most 8192 images (ring 16384, real packing); allowed: 1..8192")
        if args.spill_dir is not None and not args.spill_dir.is_dir():
            raise UsageError(f"--spill-dir {args.spill_dir}: not a directory; allowed: an existing directory")
        if not CIFAR_ZIP.is_file():
            raise UsageError(f"the CIFAR-10 copy {CIFAR_ZIP.name} is not in ../shared/data; this bench needs it")
        if args.calibration is not None:
            try:
                Calibration.load(args.calibration, plan_for_depth(7, 26, 10), check_speed=True)
            except CalibrationError as err:
                raise UsageError(f"--calibration {err}") from None
        spill = args.spill_dir or Path(tempfile.gettempdir())
        log(f"spill directory {spill}: {shutil.disk_usage(spill).free / 2**30:.0f} GB free")
        out = output(args.out, "--out", "file")  # before the half hour, not after
        write_atomic(out, json.dumps(run(args, out), indent=2) + "\n")
        log(f"wrote {out}")
        return 0

    return run_command("bench/ckks_full_batch.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())

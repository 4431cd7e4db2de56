"""Benchmark the CKKS secure-inference scheme: throughput, bytes, precision.

    python bench/ckks.py --out results/bench/ckks.json [--quick]

Cases: a digits MLP (``--quick`` runs only this one, about a minute) and small CIFAR-10
convnets (``--cifar``): ``he_cnn`` (depth 5), the same without its hidden layer (depth 3), and
the three-block ``he_convnet`` at an eighth of its width with complex packing (depth 7): one full
batch each in real mode, and per-epoch bytes for 25,000 samples per party in accounted mode,
cross-checked against the real batch. Throughput counts what the responder redoes every
epoch: loading the stored input ciphertexts, evaluating, re-randomising and serializing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cli import UsageError, output, path_argument, run_command  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.registry import DATASETS, MODELS, SCHEMES  # noqa: E402
from testbed.schemes.ckks.circuit import Linear, SumPool, circuit_depth, lower_model  # noqa: E402

CLASSES = 10
CIFAR_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
CIFAR_MODEL = {"kind": "he_cnn", "channels": 8, "kernel": 4, "stride": 4, "padding": 0, "pool": 2, "hidden": 32, "activation": "poly2", "batch_norm": True}
PARTY_SAMPLES = 25_000
#: name -> (model, key depth, complex packing). ``convnet_narrow`` is the three-block CIFAR-10
#: model of docs/results.md at an eighth of its width: the same depth (7), ring (16384) and
#: packing, so the same parameters and bytes per ciphertext, at a real-mode cost that fits a run.
CIFAR_CASES = {
    "he_cnn": (CIFAR_MODEL, 5, False),
    "shallow": ({**CIFAR_MODEL, "hidden": 0}, 3, False),
    "convnet_narrow": ({"kind": "he_convnet", "channels": [2, 4, 8]}, 7, True),
}


def log(message: str) -> None:
    print(f"[bench/ckks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int = 128) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.from_numpy(x[index.numpy()])), torch.from_numpy(y[index.numpy()])).backward()
            optimizer.step()
    model.eval()


def op_counts(circuit: list) -> dict[str, int]:
    """Homomorphic operations per batch, following the evaluation rules of ``ckks.evaluate``."""
    counts: Counter[str] = Counter()
    pending, width, size3 = 0, None, False
    for stage in circuit:
        if isinstance(stage, Linear):
            used = stage.weight.reshape(*stage.weight.shape[:2], -1).any(axis=2)
            outputs = used.shape[0]
            counts["plain_multiplications"] += int(used.sum())
            counts["additions"] += int(used.sum()) - int(used.any(axis=1).sum())
            counts["relinearizations"] += outputs if size3 else 0
            counts["rescales"] += outputs * (pending + 1)
            pending, width, size3 = 0, outputs, False
        elif isinstance(stage, SumPool):
            counts["additions"] += sum(len(window) - 1 for window in stage.windows)
            width = len(stage.windows)
        else:
            counts["relinearizations"] += width if size3 else 0
            counts["rescales"] += width * pending
            counts["squarings"] += width
            pending, size3 = 1, True
    counts["relinearizations"] += width if size3 else 0
    counts["rescales"] += width * pending
    return dict(counts)


def scheme(mode: str, depth: int, seed: int, complex_packing: bool = False):
    return SCHEMES.create(SCHEMES.parse_spec({"kind": "ckks", "mode": mode, "depth": depth, "complex_packing": complex_packing, "flood_std": 0.0}), CLASSES, seed)


#: Set by ``--tenseal``: also evaluate each case through TenSEAL's high-level CKKSTensor (bench/tenseal_reference.py).
TENSEAL = False


def tenseal_fields(name: str, model: nn.Module, samples: np.ndarray, plan, reference: np.ndarray, answer_s: float) -> dict:
    """TenSEAL's CKKSTensor on the same model, samples and parameters: seconds over the project's answer seconds, and error."""
    if not TENSEAL or plan.complex_packing:
        return {}
    from tenseal_reference import tenseal_answer

    log(f"{name}: the TenSEAL CKKSTensor reference")
    logits, seconds = tenseal_answer(model, samples, plan)
    error = np.abs(logits - reference)
    log(f"{name}: TenSEAL {seconds:.1f} s ({seconds / answer_s:.1f}x), max abs error {error.max():.2e}")
    return {"tenseal_seconds": seconds, "tenseal_ratio": seconds / answer_s, "tenseal_max_abs_error": float(error.max()),
            "tenseal_argmax_agreement": float((logits.argmax(1) == reference.argmax(1)).mean())}


def run_case(name: str, model: nn.Module, samples: np.ndarray, depth: int, complex_packing: bool = False) -> dict:
    """One real exchange and one accounted exchange on the same samples and model."""
    input_shape = samples.shape[1:]
    model.eval()
    with torch.no_grad():
        reference = model(torch.from_numpy(samples)).numpy()
    circuit = lower_model(model, input_shape)
    querier, responder = scheme("real", depth, 1, complex_packing), scheme("real", depth, 2, complex_packing)
    log(f"{name}: encrypting {len(samples)} samples x {int(np.prod(input_shape))} features")
    start = time.perf_counter()
    setup = querier.setup(samples)
    setup_s = time.perf_counter() - start
    responder.load(setup)
    responder.timings()
    log(f"{name}: setup {len(setup.data) / 1e6:.1f} MB in {setup_s:.1f} s; evaluating")
    start = time.perf_counter()
    answer = responder.answer(model)
    answer_s = time.perf_counter() - start
    answer_phases = responder.timings()
    logits = querier.decode(answer)
    decrypt_s = querier.timings().get("decrypt", 0.0)
    log(f"{name}: answer {len(answer.data) / 1e6:.2f} MB in {answer_s:.1f} s ({len(samples) / answer_s:.0f} samples/s)")

    accounted_querier, accounted_responder = scheme("accounted", depth, 1, complex_packing), scheme("accounted", depth, 2, complex_packing)
    accounted_setup = accounted_querier.setup(samples)
    accounted_responder.load(accounted_setup)
    accounted_answer = accounted_responder.answer(model)
    plan = querier.plan
    error = np.abs(logits - reference)
    return {
        "samples": len(samples),
        "input_shape": list(input_shape),
        "ckks": {
            "poly_modulus_degree": plan.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(plan.coeff_mod_bit_sizes),
            "scale_bits": plan.scale_bits,
            "slots_per_batch": plan.slots,
            "model_depth": circuit_depth(circuit),
            "key_depth": depth,
            "complex_packing": complex_packing,
        },
        "circuit": [type(stage).__name__ for stage in circuit],
        "ops_per_batch": op_counts(circuit),
        "seconds": {"setup_encrypt": setup_s, "answer": answer_s, **{f"answer_{k}": v for k, v in answer_phases.items()}, "decrypt": decrypt_s},
        "throughput_samples_per_s": len(samples) / answer_s,
        "evaluate_only_samples_per_s": len(samples) / answer_phases["he_evaluate"],
        "max_abs_error": float(error.max()),
        "mean_abs_error": float(error.mean()),
        "max_abs_logit": float(np.abs(reference).max()),
        "argmax_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
        "bytes": {
            "setup_real": len(setup.data),
            "setup_accounted": accounted_setup.charged_bytes,
            "answer_real": len(answer.data),
            "answer_accounted": accounted_answer.charged_bytes,
        },
        "accounted_over_real_setup": accounted_setup.charged_bytes / len(setup.data),
        "accounted_over_real_answer": accounted_answer.charged_bytes / len(answer.data),
        **tenseal_fields(name, model, samples, plan, reference, answer_s),
    }


def digits_case() -> dict:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    spec = {"kind": "mlp", "hidden": [32], "activation": "poly2"}
    model = MODELS.create(MODELS.parse_spec(spec)).build((1, 8, 8), CLASSES)
    train(model, x, data.target, epochs=20)
    result = run_case("digits", model, x, depth=3)
    return {"dataset": "sklearn digits (8x8, /16)", "model": spec, **result}


def cifar_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """A shuffled party-sized training set and 4096 test images (random inputs if CIFAR-10 is absent)."""
    dataset = DATASETS.create(DATASETS.parse_spec({"kind": "cifar10", "path": str(CIFAR_ZIP)}))
    try:
        dataset.check()
        data = dataset.load(0)
    except ValueError as err:
        raise UsageError(f"the CIFAR-10 copy: {err}") from None
    except FileNotFoundError:
        log(f"cifar10: {CIFAR_ZIP} not found; random inputs, models only set their batch-norm statistics")
        rng = np.random.default_rng(0)
        x = rng.random((PARTY_SAMPLES + 4096, 3, 32, 32), dtype=np.float32)
        return x[:PARTY_SAMPLES], None, x[PARTY_SAMPLES:], None, "random [0,1] inputs"
    party = np.random.default_rng(0).permutation(len(data.train.y))[:PARTY_SAMPLES]  # the zip is sorted by class
    return data.train.x[party], data.train.y[party], data.test.x[:4096], data.test.y[:4096], dataset.label()


def cifar_case(name: str, model: nn.Module, description: object, depth: int, data: tuple, complex_packing: bool = False) -> dict:
    train_x, train_y, test_x, test_y, source = data
    if train_y is None:
        model.train()
        with torch.no_grad():
            model(torch.from_numpy(train_x[:1024]))
        accuracy = None
    else:
        log(f"{name}: training briefly on {len(train_x)} images")
        train(model, train_x, train_y, epochs=5)
        with torch.no_grad():
            accuracy = float((model(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean())
    result = run_case(name, model, test_x, depth, complex_packing)

    log(f"{name}: accounted bytes for {PARTY_SAMPLES} samples per party")
    querier, responder = scheme("accounted", depth, 1, complex_packing), scheme("accounted", depth, 2, complex_packing)
    setup = querier.setup(train_x)
    responder.load(setup)
    answer = responder.answer(model)
    batches = -(-PARTY_SAMPLES // result["ckks"]["slots_per_batch"])
    return {
        "dataset": source,
        "model": description,
        "test_accuracy_after_brief_training": accuracy,
        **result,
        "per_epoch_at_25000_samples_per_party": {
            "batches": batches,
            "answer_ciphertexts_per_direction": batches * CLASSES,
            "answer_bytes_per_direction": answer.charged_bytes,
            "answer_bytes_both_directions": 2 * answer.charged_bytes,
            "setup_bytes_per_direction_once": setup.charged_bytes,
            "real_one_batch_times_batches_over_accounted": result["bytes"]["answer_real"] * batches / answer.charged_bytes,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--quick", action="store_true", help="digits case only (about a minute)")
    parser.add_argument("--cifar", nargs="+", choices=sorted(CIFAR_CASES), help="CIFAR-10 cases to run (default: all; not with --quick)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--tenseal", action="store_true", help="also time TenSEAL's CKKSTensor on each case (bench/tenseal_reference.py)")
    args = parser.parse_args(argv)
    global TENSEAL
    TENSEAL = args.tenseal

    def body() -> int:
        if args.quick and args.cifar:
            raise UsageError(f"--cifar {' '.join(args.cifar)}: --quick runs the digits case only; allowed: one of --quick and --cifar")
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        out = output(args.out, "--out", "file")  # before minutes of benchmarking, not after
        data = None if args.quick else cifar_data()  # a broken copy stops the bench before the digits case runs
        cases = {"digits_mlp": digits_case()}
        if data is not None:
            for name in args.cifar or sorted(CIFAR_CASES):
                spec, depth, complex_packing = CIFAR_CASES[name]
                torch.manual_seed(0)
                model = MODELS.create(MODELS.parse_spec(spec)).build((3, 32, 32), CLASSES)
                cases[f"cifar10_{name}"] = cifar_case(f"cifar10_{name}", model, spec, depth, data, complex_packing)
        digits = cases["digits_mlp"]
        bytes_ = digits["bytes"]
        write_atomic(out, json.dumps({
            "throughput_samples_per_s": digits["throughput_samples_per_s"],
            "max_abs_error": digits["max_abs_error"],
            "argmax_agreement": digits["argmax_agreement"],
            "accounted_over_real_bytes": (bytes_["setup_accounted"] + bytes_["answer_accounted"]) / (bytes_["setup_real"] + bytes_["answer_real"]),
            "quick": args.quick,
            **{k: v for k, v in digits.items() if k.startswith("tenseal_")},
            "cases": cases,
        }, indent=2) + "\n")
        log(f"wrote {out}")
        return 0

    return run_command("bench/ckks.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())

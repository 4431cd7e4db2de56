"""Benchmark the CKKS secure-inference scheme: throughput, bytes, precision, predicted time.

    python bench/ckks.py --calibrate --out results/bench/ckks_costs.json [--depth 3 5 7]
    python bench/ckks.py --out results/bench/ckks.json [--quick] [--calibration results/bench/ckks_costs.json] [--workers 2] [--no-tenseal]

``--calibrate`` measures every operation the CKKS time model counts, for the plans of the given
depths, on this machine, and writes the file that ``scheme.calibration`` and ``--calibration``
read (about 20 seconds per depth: each cost is the median of three rounds).

Cases: a digits MLP (``--quick`` runs only this one, about a minute) and small CIFAR-10
convnets (``--cifar``): ``he_cnn`` (depth 5), the same without its hidden layer (depth 3), and
the three-block ``he_convnet`` at an eighth of its width with complex packing (depth 7): one full
batch each in real mode, and per-epoch bytes for 25,000 samples per party in accounted mode,
cross-checked against the real batch. Throughput counts what the responder redoes every
epoch: loading the stored input ciphertexts, evaluating, re-randomising and serializing. The
answer runs four times; the median of the last three is the per-epoch figure (the first also
pays the first touch of the evaluation's scratch memory). With ``--calibration``, every case reports the time
model's prediction beside the measurement; with ``--workers N`` (default 2), the same answer
spread over N Ray workers and ``workers_speedup``, which is N x ``workers_busy_fraction`` (the
share of the answer's wall time the workers spent in their calls, from Ray's timeline) /
``workers_work_over_single`` (their summed call time over the single responder's answer); and,
unless ``--no-tenseal``, TenSEAL's ``CKKSTensor`` path on the same circuit, timed the same way in
the same run (``tenseal_ratio``: its seconds over this path's).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cli import UsageError, output, path_argument, run_command  # noqa: E402
from testbed.files import write_atomic  # noqa: E402
from testbed.registry import DATASETS, MODELS, SCHEMES  # noqa: E402
from testbed.memory import peak_rss_mb, reset_peak_rss  # noqa: E402
from testbed.schemes.ckks.circuit import circuit_depth, lower_model, stage_widths  # noqa: E402
from testbed.schemes.ckks.evaluation import memory_needed  # noqa: E402
from testbed.schemes.ckks.scheme import BLOCK_INPUTS  # noqa: E402
from testbed.schemes.ckks.plan import plan_for_depth  # noqa: E402
from testbed.schemes.ckks.time_model import Calibration, CalibrationError, answer_operations, calibration_file, decode_operations, setup_operations  # noqa: E402

CLASSES = 10
CIFAR_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
CIFAR_MODEL = {"kind": "he_cnn", "channels": 8, "kernel": 4, "stride": 4, "padding": 0, "pool": 2, "hidden": 32, "activation": "poly2", "batch_norm": True}
PARTY_SAMPLES = 25_000
#: name -> (model, key depth, complex packing). ``convnet_narrow`` is the three-block CIFAR-10
#: model of docs/results.md at an eighth of its width: the same depth (7), ring (16384) and
#: packing, so the same parameters and bytes per ciphertext, at a real-mode cost that fits a run;
#: ``convnet_narrow_real`` the same without complex packing (its first layer then goes through the
#: bulk path), ``convnet_one_block`` one block of four channels (depth 3).
CIFAR_CASES = {
    "he_cnn": (CIFAR_MODEL, 5, False),
    "shallow": ({**CIFAR_MODEL, "hidden": 0}, 3, False),
    "convnet_narrow": ({"kind": "he_convnet", "channels": [2, 4, 8]}, 7, True),
    "convnet_narrow_real": ({"kind": "he_convnet", "channels": [2, 4, 8]}, 7, False),
    "convnet_one_block": ({"kind": "he_convnet", "channels": [4]}, 3, False),
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


#: Set by main: the calibration file every real scheme predicts its phases with, and the workers compared.
SETTINGS: dict = {"calibration": None, "workers": 2, "tenseal": True}


def scheme(mode: str, depth: int, seed: int, complex_packing: bool = False, workers: int = 1):
    spec = {"kind": "ckks", "mode": mode, "depth": depth, "complex_packing": complex_packing, "flood_std": 0.0, "workers": workers}
    if SETTINGS["calibration"] and mode == "real":
        spec["calibration"] = str(SETTINGS["calibration"])
    return SCHEMES.create(SCHEMES.parse_spec(spec), CLASSES, seed)


#: Answers timed after the first, whose median is a case's per-epoch figure: one of each, single
#: and spread, put the same one-block convnet's two-worker speedup anywhere from 1.6x to 2.1x.
TIMED_ANSWERS = 3


class Answers(NamedTuple):
    """A responder's answers: the first also pays the first touch of the scratch memory; the
    per-epoch figures are the median of the timed ones."""

    answer: object
    first_phases: dict[str, float]
    phases: dict[str, float]
    first_seconds: float
    seconds: float
    began: float  # the median answer's start, in seconds since the epoch (Ray's timeline clock)

    @property
    def window(self) -> tuple[float, float]:
        return self.began, self.began + self.seconds


def answer_repeatedly(responder, model: nn.Module) -> Answers:
    runs = []
    for _ in range(1 + TIMED_ANSWERS):
        responder.timings()
        start, began = time.perf_counter(), time.time()
        answer = responder.answer(model)
        runs.append((time.perf_counter() - start, responder.timings(), began))
    first, timed = runs[0], sorted(runs[1:], key=lambda run: run[0])
    median = timed[len(timed) // 2]
    return Answers(answer, first[1], median[1], first[0], median[0], median[2])


def workers_busy_seconds(window: tuple[float, float]) -> list[float]:
    """Seconds each evaluation worker spent in its calls within ``window``, from Ray's timeline:
    with the answer's wall time and the single responder's, it tells idle workers (waiting on each
    other) from slower ones (sharing the memory bandwidth)."""
    import ray

    busy: dict[str, float] = {}
    for event in ray.timeline():
        if str(event.get("cat", "")).startswith("task::ShardWorker.") and window[0] <= event["ts"] / 1e6 <= window[1]:
            busy[event["tid"]] = busy.get(event["tid"], 0.0) + event["dur"] / 1e6
    return sorted(busy.values())


def spread_figures(workers: int, spread_s: float, busy: list[float], single_s: float) -> dict:
    """The spread answer against the single one: ``workers_speedup`` is ``workers`` x
    ``workers_busy_fraction`` / ``workers_work_over_single``."""
    return {"workers": workers, "workers_answer_s": spread_s, "workers_speedup": single_s / spread_s, "workers_busy_s": busy,
            "workers_busy_fraction": sum(busy) / (workers * spread_s), "workers_work_over_single": sum(busy) / single_s}


def tenseal_fields(name: str, model: nn.Module, samples: np.ndarray, plan, reference: np.ndarray, answer_s: float) -> dict:
    """TenSEAL's CKKSTensor on the same model, samples and parameters: its seconds over the
    project's for the same work (``answer_s``: loading, evaluating, serializing; lowering the
    model is timed on neither side), and its error."""
    if not SETTINGS["tenseal"] or plan.complex_packing:
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
    setup_predicted, load_predicted = querier.predicted_timings(), responder.predicted_timings()
    workers = SETTINGS["workers"]
    if workers > 1:  # first: SEAL's memory pool keeps what this process's own answer takes, GBs for a convnet
        spread = scheme("real", depth, 3, complex_packing, workers)
        spread.load(setup)
        spread_answers = answer_repeatedly(spread, model)
        busy = workers_busy_seconds(spread_answers.window)
        spread.close()
    reset_peak_rss()
    answer, first_phases, answer_phases, first_s, answer_s, _ = answer_repeatedly(responder, model)
    versus_spread = spread_figures(workers, spread_answers.seconds, busy, answer_s) if workers > 1 else {}
    peak_mb = peak_rss_mb()
    widths = stage_widths(model, input_shape)
    needed, _ = memory_needed(widths, circuit_depth(circuit), querier.plan.poly_modulus_degree, querier.plan.input_ciphertexts(int(np.prod(input_shape))), BLOCK_INPUTS)
    answer_predicted = {k: v / (1 + TIMED_ANSWERS) for k, v in responder.predicted_timings().items()}  # every answer counted
    logits = querier.decode(answer)
    decrypt_s = querier.timings().get("decrypt", 0.0)
    decrypt_predicted = querier.predicted_timings()
    log(f"{name}: answer {len(answer.data) / 1e6:.2f} MB in {answer_s:.1f} s ({len(samples) / answer_s:.0f} samples/s; first epoch {first_s:.1f} s)")
    log(f"{name}: with {workers} workers {versus_spread['workers_answer_s']:.1f} s ({versus_spread['workers_speedup']:.2f}x; busy {versus_spread['workers_busy_fraction']:.0%} of the time, "
        f"work {versus_spread['workers_work_over_single']:.2f}x the single answer's)" if versus_spread else f"{name}: no workers compared")

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
        "ops_per_batch": {f"{op}@{primes}": count for (op, primes), count in sorted(answer_operations(circuit, querier.plan, querier.plan.input_ciphertexts(int(np.prod(input_shape))), 256, complex_packing, True, False, CLASSES).items())},
        "seconds": {
            "setup_encrypt": setup_s, "answer": answer_s, **{f"answer_{k}": v for k, v in answer_phases.items()}, "decrypt": decrypt_s,
            "answer_first_epoch": first_s, **{f"answer_first_epoch_{k}": v for k, v in first_phases.items()},
        },
        **(time_model_figures(setup_s, answer_phases, decrypt_s, setup_predicted, answer_predicted, decrypt_predicted) if SETTINGS["calibration"] else {}),
        **versus_spread,
        "answer_peak_rss_mb": peak_mb,
        "evaluation_memory_estimate_mb": needed / 2**20,
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
        **tenseal_fields(name, model, samples, plan, reference, sum(v for k, v in answer_phases.items() if k != "lower")),
    }


def isolated_cifar_case(name: str, settings: dict) -> dict:
    SETTINGS.update(settings)
    spec, depth, complex_packing = CIFAR_CASES[name]
    torch.manual_seed(0)
    model = MODELS.create(MODELS.parse_spec(spec)).build((3, 32, 32), CLASSES)
    return cifar_case(f"cifar10_{name}", model, spec, depth, cifar_data(), complex_packing)


def time_model_figures(setup_s: float, answer_phases: dict, decrypt_s: float, setup: dict, answer: dict, decrypt: dict) -> dict:
    """The time model's prediction beside the measurement, per phase and as ratios. The answer is
    compared on the CKKS phases (deserialize, he_evaluate, serialize): lowering the model to a
    circuit is plaintext work the model does not count (``answer_lower``)."""
    predicted = {"setup_encrypt": setup.get("encrypt", 0.0), "answer": sum(answer.values()), **{f"answer_{k}": v for k, v in answer.items()}, "decrypt": decrypt.get("decrypt", 0.0)}
    evaluated = sum(seconds for phase, seconds in answer_phases.items() if phase != "lower")
    return {
        "predicted_seconds": predicted,
        "predicted_over_measured": {"setup_encrypt": predicted["setup_encrypt"] / setup_s, "answer": predicted["answer"] / evaluated, "decrypt": predicted["decrypt"] / decrypt_s},
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


def full_scale_prediction(calibration: Path) -> dict:
    """The time model on the paper-scale setting of scenarios/cifar10_clean.yaml: the full-width
    three-block convnet, 25,000 images per party, per direction and epoch (one worker, so per
    core), with and without complex packing. Nothing is evaluated: the circuit's pattern is counted."""
    torch.manual_seed(0)
    model = MODELS.create(MODELS.parse_spec({"kind": "he_convnet", "channels": [16, 32, 64]})).build((3, 32, 32), CLASSES).eval()
    log("full scale: lowering the full-width convnet to count its operations")
    circuit = lower_model(model, (3, 32, 32))
    figures = {"model": "he_convnet 16-32-64, depth 7, ring 16384", "samples_per_party": PARTY_SAMPLES}
    for complex_packing in (True, False):
        plan = plan_for_depth(7, 26, 10, complex_packing=complex_packing)
        costs = Calibration.load(calibration, plan)
        features, batches = plan.input_ciphertexts(3 * 32 * 32), -(-PARTY_SAMPLES // plan.slots)
        answer = costs.seconds(answer_operations(circuit, plan, features, BLOCK_INPUTS, complex_packing, True, True, CLASSES))
        setup = costs.seconds(setup_operations(plan, batches * features))
        decode = costs.seconds(decode_operations(batches * CLASSES))
        per_epoch = batches * sum(answer.values()) + sum(decode.values())
        figures["complex_packing" if complex_packing else "real_packing"] = {
            "batches_per_direction": batches,
            "answer_seconds_per_batch": answer,
            "setup_seconds_per_direction": sum(setup.values()),
            "epoch_seconds_per_party_one_core": per_epoch,  # each party answers its peer and decodes its peer's answer
            "epoch_hours_per_party_one_core": per_epoch / 3600,
        }
    return figures


def calibrate_command(out: Path, depths: list[int]) -> int:
    plans = []
    for depth in depths:
        try:
            plans.append(plan_for_depth(depth, 26, 10, complex_packing=True))  # complex: the conjugation is measured too
        except ValueError as err:
            raise UsageError(f"--depth {depth}: {err}") from None
    log(f"calibrating depths {', '.join(map(str, depths))}")
    write_atomic(out, json.dumps(calibration_file(plans), indent=1) + "\n")
    log(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=path_argument, required=True, help="JSON file to write (checked before anything runs)")
    parser.add_argument("--quick", action="store_true", help="digits case only (about a minute)")
    parser.add_argument("--cifar", nargs="+", choices=sorted(CIFAR_CASES), help="CIFAR-10 cases to run (default: all; not with --quick)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--calibrate", action="store_true", help="measure the time model's operation costs and write them to --out (nothing else runs)")
    parser.add_argument("--depth", type=int, nargs="+", default=[3, 5, 7], help="with --calibrate: the plans' multiplicative depths (default: 3 5 7, the digits MLP, he_cnn, the convnets)")
    parser.add_argument("--calibration", type=path_argument, help="a file written by --calibrate on this machine: every case also reports the time model's prediction")
    parser.add_argument("--workers", type=int, default=2, help="also answer with this many Ray workers and report workers_speedup (1: skip; default 2)")
    parser.add_argument("--tenseal", action=argparse.BooleanOptionalAction, default=True,
                        help="also time TenSEAL's CKKSTensor path on each case, side by side (bench/tenseal_reference.py; default on: "
                        "seconds on the digits MLP, 1 to 3 minutes per CIFAR-10 case)")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.quick and args.cifar:
            raise UsageError(f"--cifar {' '.join(args.cifar)}: --quick runs the digits case only; allowed: one of --quick and --cifar")
        if args.out.is_file() and not args.overwrite:
            raise UsageError(f"--out {args.out}: exists; allowed: --overwrite to replace it, or another --out")
        if not 1 <= args.workers <= (os.cpu_count() or 1):
            raise UsageError(f"--workers {args.workers}: allowed: 1..{os.cpu_count() or 1}, the CPUs of this machine")
        out = output(args.out, "--out", "file")  # before minutes of benchmarking, not after
        if args.calibrate:
            return calibrate_command(out, args.depth)
        SETTINGS["workers"], SETTINGS["tenseal"] = args.workers, args.tenseal
        if args.calibration is not None:
            depths = {3} | (set() if args.quick else {CIFAR_CASES[name][1] for name in args.cifar or CIFAR_CASES})
            for depth in sorted(depths):
                try:
                    Calibration.load(args.calibration, plan_for_depth(depth, 26, 10), check_speed=depth == min(depths))
                except CalibrationError as err:
                    raise UsageError(f"--calibration {err}") from None
            SETTINGS["calibration"] = args.calibration
        data = None if args.quick else cifar_data()  # a broken copy stops the bench before the digits case runs
        cases = {"digits_mlp": digits_case()}
        if data is not None:
            del data
            for name in args.cifar or sorted(CIFAR_CASES):
                # Each case in a fresh process: SEAL's memory pool never hands memory back, and a
                # convnet's evaluation leaves GBs in it that the next case would add to.
                with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    cases[f"cifar10_{name}"] = pool.submit(isolated_cifar_case, name, dict(SETTINGS)).result()
        digits = cases["digits_mlp"]
        bytes_ = digits["bytes"]
        write_atomic(out, json.dumps({
            "throughput_samples_per_s": digits["throughput_samples_per_s"],
            "max_abs_error": digits["max_abs_error"],
            "argmax_agreement": digits["argmax_agreement"],
            "accounted_over_real_bytes": (bytes_["setup_accounted"] + bytes_["answer_accounted"]) / (bytes_["setup_real"] + bytes_["answer_real"]),
            **{key: digits[key] for key in ("workers_speedup", "predicted_over_measured") if key in digits},
            **({"full_scale_prediction": full_scale_prediction(args.calibration)} if args.calibration is not None and not args.quick else {}),
            "quick": args.quick,
            **{k: v for k, v in digits.items() if k.startswith("tenseal_")},
            "cases": cases,
        }, indent=2) + "\n")
        log(f"wrote {out}")
        return 0

    return run_command("bench/ckks.py", body, lambda: f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())

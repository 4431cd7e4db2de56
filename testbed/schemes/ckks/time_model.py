"""Seconds that CKKS secure inference takes, predicted like its bytes are charged.

A phase's time is the operations it performs times what each costs on this machine:

- :func:`answer_operations` counts, for one batch, what :mod:`.evaluation` does, following
  the same rules (levels, lazy relinearisation and rescaling, inputs in blocks): SEAL calls by
  kind and by the number of primes they run at, and the bulk arithmetic of linear stages in
  coefficient words (one prime's coefficient of one ciphertext component);
- :func:`setup_operations` and :func:`decode_operations` do the same for the querier;
- a :class:`Calibration` holds the cost of each operation, measured on one machine for one
  plan by ``python bench/ckks.py --calibrate`` (:func:`calibrate`).

The prediction is for one worker (``scheme.workers: 1``): per core. What is not counted: Python
overhead between calls, and the first touch of the evaluation's scratch memory, which only the
first epoch of a responder pays (docs/ckks.md, "Time").
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tenseal.sealapi as seal

from testbed.schemes.ckks.bulk_linear import IntegerWeights, add_combination, limbs_for
from testbed.schemes.ckks.circuit import Linear, Stage, SumPool, circuit_depth
from testbed.schemes.ckks.crypto import PublicContext, encoded, encrypt_dataset, make_keys, public_frames
from testbed.schemes.ckks.evaluation import one_product_per_weight
from testbed.schemes.ckks.plan import CkksPlan
from testbed.schemes.ckks.wire import seal_bytes, seal_load

#: Operation -> phase of real mode's timings (:meth:`CkksScheme.timings`).
PHASES = {
    "load_input": "deserialize",
    "save_logit": "serialize",
    "keygen": "encrypt",
    "encrypt_input": "encrypt",
    "decrypt_logit": "decrypt",
    "load_context": "deserialize",
}
#: Operations measured in coefficient words rather than per call.
WORD_OPERATIONS = ("copy_word", "term_word", "output_word")


class CalibrationError(ValueError):
    """A calibration file that cannot serve this plan on this machine; the message says why."""


def machine() -> dict[str, Any]:
    """What identifies the machine a calibration was measured on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count() or 1}


def plan_key(plan: CkksPlan) -> dict[str, Any]:
    """What a calibration is for: the ring and primes (complex packing changes the counts, not the costs)."""
    return {"poly_modulus_degree": plan.poly_modulus_degree, "coeff_mod_bit_sizes": list(plan.coeff_mod_bit_sizes)}


# -- counting --------------------------------------------------------------------------------
def _limbs(plan: CkksPlan) -> int:
    return limbs_for(max(plan.coeff_mod_bit_sizes[:-1]))


def answer_operations(circuit: list[Stage], plan: CkksPlan, features: int, block_inputs: int | None, complex_inputs: bool, rerandomize: bool, flood: bool, classes: int) -> Counter:
    """Operations of one batch's answer, keyed ``(operation, primes)`` (``primes`` 0 for word
    operations), as :func:`.evaluation.evaluate` with one shard, then protecting and saving;
    ``block_inputs`` ``None`` counts :mod:`.streamed` evaluation, whose chunks combine all their
    inputs at once."""
    ops: Counter = Counter()
    degree, limbs = plan.poly_modulus_degree, _limbs(plan)
    primes, size, pending = circuit_depth(circuit) + 1, 2, 0
    top = plan.depth + 1
    ops[("load_input", top)] += features
    if primes < top:
        ops[("mod_switch", top)] += features
    width = features

    def settle(count: int, drops: int) -> None:
        nonlocal primes, size
        if size == 3:
            ops[("relinearize", primes)] += count
        for _ in range(drops):
            ops[("rescale", primes)] += count
            primes -= 1
        size = 2

    for stage in circuit:
        if isinstance(stage, (Linear, SumPool)):
            if isinstance(stage, SumPool):
                pattern = np.zeros((len(stage.windows), width), dtype=bool)
                for o, window in enumerate(stage.windows):
                    pattern[o, window] = True
            else:
                pattern = stage.weight.reshape(*stage.weight.shape[:2], -1).any(axis=2)
            outputs = len(pattern)
            words = size * primes * degree
            reached = pattern.any(axis=1)
            if one_product_per_weight(stage, complex_inputs):
                ops[("encode_vector" if stage.weight.ndim == 3 else "encode_complex", primes)] += int(pattern.sum())
                ops[("multiply_plain", primes)] += int(pattern.sum())
                ops[("add", primes)] += int(pattern.sum()) - int(reached.sum())
                ops[("copy_word", 0)] += int(reached.sum()) * words
            else:
                per_block = block_inputs or width
                for start in range(0, width, per_block):
                    block = pattern[:, start : start + per_block]
                    ops[("copy_word", 0)] += block.shape[1] * words
                    ops[("term_word", 0)] += int(block.sum()) * words * limbs
                    ops[("output_word", 0)] += int(block.any(axis=1).sum()) * words
            ops[("copy_word", 0)] += outputs * words * 2  # zeroing the sums, then each output's ciphertext
            if isinstance(stage, Linear):
                if complex_inputs:
                    ops[("conjugate", primes)] += int(reached.sum())
                    ops[("add", primes)] += int(reached.sum())
                settle(int(reached.sum()), pending + 1)
                ops[("add_plain", primes)] += int(np.any(stage.bias.reshape(outputs, -1), axis=1).sum())
                pending, complex_inputs = 0, False
            width = outputs
        else:
            settle(width, pending)
            if stage.shift:
                ops[("add_plain", primes)] += width
            ops[("square", primes)] += width
            size, pending = 3, 1
    settle(width, pending)
    if primes > 1:
        ops[("mod_switch", primes)] += width
    if rerandomize:
        ops[("encrypt_zero", 1)] += classes
        ops[("add", 1)] += classes
    if flood:
        ops[("encode_vector", 1)] += classes
        ops[("add_plain", 1)] += classes
    ops[("save_logit", 1)] += classes
    return ops


def setup_operations(plan: CkksPlan, inputs: int) -> Counter:
    """The querier's setup: keys, then every input encoded, encrypted and saved."""
    return Counter({("keygen", plan.depth + 1): 1, ("encrypt_input", plan.depth + 1): inputs})


def decode_operations(logits: int) -> Counter:
    return Counter({("decrypt_logit", 1): logits})


# -- costs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Seconds per operation for one plan on one machine."""

    plan: dict[str, Any]
    machine: dict[str, Any]
    costs: dict[str, dict[str, float]]  # operation -> str(primes) -> seconds

    @classmethod
    def load(cls, path: Path, plan: CkksPlan, check_speed: bool = False) -> "Calibration":
        """The calibration for ``plan`` in the file at ``path``; :class:`CalibrationError` when the
        file is unreadable, was measured on another machine, or has no entry for this plan. With
        ``check_speed``, also when this machine now runs :func:`probe_seconds` more than
        :data:`SPEED_TOLERANCE` times faster or slower than when the file was written."""
        if not Path(path).is_file():
            raise CalibrationError(f"{path}: no such file; write one with 'python bench/ckks.py --calibrate --out {path}'")
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            entries, measured_on = data["plans"], data["machine"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CalibrationError(f"{path}: not a calibration file written by 'python bench/ckks.py --calibrate' ({err})") from None
        here = machine()
        if measured_on != here:
            raise CalibrationError(f"{path}: measured on {measured_on}, not on this machine ({here}); run 'python bench/ckks.py --calibrate' here")
        if check_speed:
            _check_speed(path, data.get("probe_seconds"))
        wanted = plan_key(plan)
        for entry in entries:
            if entry.get("plan") == wanted:
                return cls(wanted, measured_on, entry["costs"])
        known = "; ".join(str(e.get("plan")) for e in entries)
        raise CalibrationError(f"{path}: no costs for the plan {wanted} (the file has {known}); calibrate with --depth {plan.depth}")

    def seconds(self, ops: Counter) -> dict[str, float]:
        """Predicted seconds per phase of real mode's timings."""
        phases: Counter = Counter()
        for (operation, primes), count in ops.items():
            costs = self.costs[operation]
            cost = costs[str(primes)] if str(primes) in costs else costs[max(costs, key=int)]
            phases[PHASES.get(operation, "he_evaluate")] += count * cost
        return dict(phases)


def _seconds(run, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def _median_seconds(run, repeats: int) -> float:
    return statistics.median(_seconds(run, repeats))


def calibrate(plan: CkksPlan, repeats: int = 15) -> dict[str, dict[str, float]]:
    """Measure every operation :func:`answer_operations` and its peers count, at every level of
    ``plan``, on this machine (medians of ``repeats``)."""
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(f) for f in public_frames(keys)], plan)
    rng = np.random.default_rng(0)
    slots, degree = plan.slots, plan.poly_modulus_degree
    costs: dict[str, dict[str, float]] = {}

    def record(operation: str, primes: int, seconds: float) -> None:
        costs.setdefault(operation, {})[str(primes)] = seconds

    features = rng.uniform(-1, 1, (slots, 4))
    frame = encrypt_dataset(keys, features)[0]
    top = plan.depth + 1
    record("keygen", top, _median_seconds(lambda: make_keys(plan), max(3, repeats // 5)))
    record("encrypt_input", top, _median_seconds(lambda: encrypt_dataset(keys, features[:, :1]), repeats))
    record("load_input", top, _median_seconds(lambda: seal_load(seal.Ciphertext(), frame, public.context), repeats))
    record("load_context", top, _median_seconds(lambda: PublicContext.load([memoryview(f) for f in public_frames(keys)], plan), 3))
    for primes in range(top, 0, -1):
        ct = seal_load(seal.Ciphertext(), frame, public.context)
        public.evaluator.mod_switch_to_inplace(ct, public.parms_id_at(primes - 1))
        level = ct.parms_id()
        vector = rng.uniform(-1, 1, slots)
        record("encode_vector", primes, _median_seconds(lambda: encoded(public, vector, level, plan.scale), repeats))
        record("encode_complex", primes, _median_seconds(lambda: encoded(public, 0.3 - 0.2j, level, plan.scale), repeats))
        plain = encoded(public, 0.5, level, plan.scale if primes > 1 else 2.0)  # one prime has no room for a second scale
        out = seal.Ciphertext()
        record("multiply_plain", primes, _median_seconds(lambda: public.evaluator.multiply_plain(ct, plain, out), repeats))
        record("add", primes, _median_seconds(lambda: public.evaluator.add_inplace(out, out), repeats))
        bias = encoded(public, 0.25, level, out.scale)
        record("add_plain", primes, _median_seconds(lambda: public.evaluator.add_plain_inplace(out, bias), repeats))
        record("encrypt_zero", primes, _median_seconds(lambda: public.encryptor.encrypt_zero(level, seal.Ciphertext()), repeats))
        record("save_logit", primes, _median_seconds(lambda: seal_bytes(ct), repeats))
        saved = seal_bytes(ct)
        record("decrypt_logit", primes, _median_seconds(lambda: _decrypt(keys, saved), repeats))
        if keys.galois_keys is not None:
            record("conjugate", primes, _median_seconds(lambda: public.evaluator.complex_conjugate(ct, keys.galois_keys, seal.Ciphertext()), repeats))
        if primes > 1:
            lower = public.parms_id_at(primes - 2)
            record("mod_switch", primes, _median_seconds(lambda: public.evaluator.mod_switch_to(ct, lower, seal.Ciphertext()), repeats))
            record("rescale", primes, _median_seconds(lambda: public.evaluator.rescale_to_next(out, seal.Ciphertext()), repeats))
            squared = seal.Ciphertext()
            record("square", primes, _median_seconds(lambda: public.evaluator.square(ct, squared), repeats))
            if plan.relinearizes:
                record("relinearize", primes, _median_seconds(lambda: public.evaluator.relinearize(squared, public.relin_keys, seal.Ciphertext()), repeats))
    costs.update(_word_costs(public, plan, repeats))
    return costs


def _decrypt(keys, data: bytes) -> None:
    plain = seal.Plaintext()
    keys.decryptor.decrypt(seal_load(seal.Ciphertext(), data, keys.context), plain)
    keys.encoder.decode_double(plain)


#: The bulk kernel's calibration: terms per output fitted over, inputs drawn from, outputs per run.
#: 1,024 inputs make a working set (8 kB per input and block of coefficients) beyond the caches,
#: as a convolution's is: on 32 inputs the cost per term came out 20-30% lower than on 256 to 1,024.
FIT_TERMS = (4, 16, 64, 256)
FIT_INPUTS, FIT_OUTPUTS = 1024, 32


def _word_costs(public: PublicContext, plan: CkksPlan, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per coefficient word of the bulk arithmetic: a copy, one term (per limb), and one
    output's fold, as the slope and intercept of a least-squares line through kernel runs (medians
    of a few each) that differ only in the terms per output (:data:`FIT_TERMS`). The inputs are
    random coefficients at two primes: 2 x 2 x degree words each, 0.5 GB at degree 16384."""
    level = public.parms_id_at(min(1, plan.depth))
    moduli = np.array(public.primes(level), dtype=np.int64)
    degree = plan.poly_modulus_degree
    rng = np.random.default_rng(1)
    inputs = (rng.integers(0, np.iinfo(np.int64).max, (FIT_INPUTS, 2, len(moduli), degree)) % moduli[:, None]).astype(np.uint64)
    out = np.zeros((FIT_OUTPUTS, *inputs.shape[1:]), dtype=np.uint64)
    words, limbs = int(np.prod(inputs.shape[1:])), _limbs(plan)
    per_output_word = []
    for terms in FIT_TERMS:
        weight = np.zeros((FIT_OUTPUTS, FIT_INPUTS))
        for o in range(FIT_OUTPUTS):
            weight[o, rng.choice(FIT_INPUTS, terms, replace=False)] = rng.normal(size=terms)
        rounded = IntegerWeights.rounded(weight, plan.scale)
        add_combination(inputs, rounded, moduli, out)  # compiled, and the pages touched, before timing
        per_output_word.append(_median_seconds(lambda: add_combination(inputs, rounded, moduli, out), max(3, repeats // 5)) / (FIT_OUTPUTS * words))
    # Relative residuals: the fold's cost is the intercept, which absolute ones would leave to the largest runs' noise.
    slope, intercept = np.polyfit(np.array(FIT_TERMS, dtype=float) * limbs, per_output_word, 1, w=1 / np.array(per_output_word))
    copy = _median_seconds(lambda: np.copyto(out, inputs[:FIT_OUTPUTS]), max(3, repeats // 3)) / (FIT_OUTPUTS * words)
    return {"term_word": {"0": float(slope)}, "output_word": {"0": max(0.0, float(intercept))}, "copy_word": {"0": copy}}


def calibration_file(plans: list[CkksPlan], repeats: int = 15, rounds: int = 3) -> dict[str, Any]:
    """The contents of a calibration file for ``plans``, measured now on this machine: each cost
    the median of ``rounds`` calibrations taken in turn over the plans, so that a slow moment
    moves one round's figure, not the file's (one round once put a plan's loads 22% high)."""
    measured = [[calibrate(plan, repeats) for plan in plans] for _ in range(rounds)]
    return {"machine": machine(), "probe_seconds": probe_seconds(), "plans": [{"plan": plan_key(plan), "costs": _median_costs([r[i] for r in measured])} for i, plan in enumerate(plans)]}


def _median_costs(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {operation: {key: statistics.median(run[operation][key] for run in runs) for key in by_key} for operation, by_key in runs[0].items()}


#: How much faster or slower than at calibration this machine may run the probe. Machines that
#: report the same CPU model and count answered the same batches 2.3 and 3.5 times apart (docs/ckks.md).
SPEED_TOLERANCE = 1.5
#: The probe: the bulk kernel on inputs beyond the second-level cache, 16 terms per output.
PROBE_INPUTS, PROBE_TERMS, PROBE_DEGREE = 64, 16, 8192


def probe_seconds(repeats: int = 15) -> float:
    """Seconds of a fixed run of the bulk kernel (the fastest of ``repeats``, which a busy moment
    rarely slows; 10 to 14 ms on the fastest 2-core machine measured): the machine's speed, read
    where a calibration is written and used."""
    rng = np.random.default_rng(2)
    moduli = np.array([2**26 - 5, 2**26 - 27], dtype=np.int64)  # any 26-bit moduli: the probe times arithmetic
    inputs = rng.integers(0, moduli.min(), (PROBE_INPUTS, 2, len(moduli), PROBE_DEGREE)).astype(np.uint64)
    weight = np.zeros((FIT_OUTPUTS, PROBE_INPUTS))
    for o in range(FIT_OUTPUTS):
        weight[o, rng.choice(PROBE_INPUTS, PROBE_TERMS, replace=False)] = rng.normal(size=PROBE_TERMS)
    rounded, out = IntegerWeights.rounded(weight, 2.0**26), np.zeros((FIT_OUTPUTS, *inputs.shape[1:]), dtype=np.uint64)
    add_combination(inputs, rounded, moduli, out)  # compiled, and the pages touched, before timing
    return min(_seconds(lambda: add_combination(inputs, rounded, moduli, out), repeats))


def _check_speed(path: Path, then: Any) -> None:
    if not isinstance(then, (int, float)) or then <= 0:
        raise CalibrationError(f"{path}: has no speed probe (written before this version); run 'python bench/ckks.py --calibrate' here")
    ratio = probe_seconds() / then
    if not 1 / SPEED_TOLERANCE <= ratio <= SPEED_TOLERANCE:
        pace = f"{ratio:.1f} times slower" if ratio > 1 else f"{1 / ratio:.1f} times faster"
        raise CalibrationError(f"{path}: this machine runs the speed probe {pace} than the one it was measured on (another machine of the same CPU model, or a busy one; allowed: within {SPEED_TOLERANCE}x); run 'python bench/ckks.py --calibrate' here")

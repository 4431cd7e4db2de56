"""CKKS secure inference: the querier's samples stay encrypted, the responder's weights stay home.

Two modes share the plan (:mod:`.plan`) and the message headers: :class:`RealCkks` encrypts,
evaluates and decrypts everything (:mod:`.crypto`); :class:`AccountedCkks` computes the same
logits in plaintext and charges exactly the bytes real mode sends (:mod:`.accounting`).
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import tenseal.sealapi as seal
import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import nn

from testbed.messages import Wire
from testbed.models import he_friendly_problem
from testbed.registry import SCHEMES, Params
from testbed.logit_map import LogitMap
from testbed.schemes.base import SecureInferenceScheme, plaintext_logits
from testbed.schemes.ckks.accounting import answer_bytes, answer_header, batches, setup_bytes, setup_header
from testbed.schemes.ckks.circuit import circuit_depth, fuse_logit_map, lower_model, model_depth, stage_widths
from testbed.schemes.ckks.crypto import PublicContext, decrypt_logits, encrypt_dataset, make_keys, protect, public_frames
from testbed.schemes.ckks.evaluation import LocalShards, evaluate, memory_needed
from testbed.schemes.ckks.streamed import RESERVE, StreamedEvaluation, minimum_bytes
from testbed.schemes.ckks.workers import RayShards
from testbed.schemes.ckks.plan import CkksPlan, check_depth, plan_for_depth
from testbed.schemes.ckks.time_model import Calibration, CalibrationError, answer_operations, decode_operations, setup_operations
from testbed.schemes.ckks.wire import pack, seal_bytes, unpack
from testbed.schemes.plaintext import array_from_bytes, array_to_bytes
from testbed.timing import Stopwatch

#: Input ciphertexts deserialised and combined at a time (about 200 MB for a CIFAR-10 he_cnn).
BLOCK_INPUTS = 256


@SCHEMES.register("ckks")
class CkksScheme(SecureInferenceScheme):
    """CKKS secure inference with feature-major packing (CryptoNets-style, Gilad-Bachrach et al.,
    ICML 2016): the querier's samples stay encrypted, the responder's weights stay home.

    Creating one gives a :class:`RealCkks` or an :class:`AccountedCkks` by ``mode``."""

    class Params(Params):
        mode: Literal["real", "accounted"] = Field("real", description="real: the cryptography runs; accounted: plaintext logits, charged the bytes real mode sends")
        depth: int = Field(5, ge=1, description="multiplicative depth the querier's keys support; he_cnn and one-hidden-layer mlp need 5 and 3")
        poly_modulus_degree: Literal[4096, 8192, 16384, 32768] | None = Field(None, description="ring degree; null: the smallest secure one that fits depth")
        scale_bits: int = Field(26, ge=20, le=40, description="CKKS scale 2^scale_bits; also the bit size of each rescaling prime")
        headroom_bits: int = Field(10, ge=4, le=20, description="extra bits of the last prime: logits must stay below 2^(headroom_bits-1)")
        rerandomize: bool = Field(True, description="add a fresh encryption of zero to every reply ciphertext")
        flood_std: float = Field(0.1, ge=0.0, description="std of Gaussian noise flooded onto every returned logit (0: off); 0.1 chosen in docs/privacy.md")
        complex_packing: bool = Field(False, description="two features per slot (real and imaginary part): half the setup bytes, one conjugation key")
        max_memory_gb: float = Field(12.0, gt=0, description="real mode: the most memory a responder's evaluating process may hold (each worker's evaluation, with workers); a model that cannot run within it is refused before the run, naming the minimum")
        evaluation: Literal["auto", "in_memory", "streamed"] = Field("auto", description="real mode: in_memory holds a stage's ciphertexts at once; streamed spills them to disk and computes in chunks within max_memory_gb (one worker); auto streams what in_memory would not fit")
        spill_dir: str | None = Field(None, description="streamed evaluation: the directory its spill files go to (null: the system's temporary directory); each batch's are deleted after it")
        workers: int = Field(1, ge=1, le=256, description="Ray workers a responder spreads each batch's evaluation over (real mode, in memory), one shard of features each; at most the cluster's CPUs")
        calibration: str | None = Field(None, description="costs measured by 'python bench/ckks.py --calibrate' on this machine for this plan: each phase's seconds are then also predicted (predicted_seconds), in either mode")

        @field_validator("calibration")
        @classmethod
        def _calibrated_here(cls, path: str | None, info: ValidationInfo) -> str | None:
            if path is not None and {"depth", "scale_bits", "headroom_bits"} <= set(info.data):
                d = info.data
                Calibration.load(Path(path), plan_for_depth(d["depth"], d["scale_bits"], d["headroom_bits"], d.get("poly_modulus_degree"), d.get("complex_packing", False)))
            return path

        @model_validator(mode="after")
        def _fits(self) -> "CkksScheme.Params":
            self.plan()
            if self.evaluation == "streamed" and self.workers > 1:
                raise ValueError(f"scheme.evaluation streamed runs in one process, scheme.workers is {self.workers}; allowed: workers 1, or evaluation in_memory")
            if self.spill_dir is not None and not Path(self.spill_dir).is_dir():
                raise ValueError(f"scheme.spill_dir {self.spill_dir!r} is not a directory; allowed: an existing directory, or null")
            return self

        def streams(self, in_memory_bytes: int) -> bool:
            """Whether a model whose in-memory evaluation takes ``in_memory_bytes`` per process is streamed."""
            if self.evaluation == "auto":
                return self.workers == 1 and in_memory_bytes > self.max_memory_gb * 2**30
            return self.evaluation == "streamed"

        def plan(self) -> CkksPlan:
            return plan_for_depth(self.depth, self.scale_bits, self.headroom_bits, self.poly_modulus_degree, self.complex_packing)

    def __init__(self, params: Params, classes: int, seed: int):
        super().__init__(params, classes, seed)
        p = self.params
        self.plan = p.plan()
        self.stopwatch = Stopwatch()
        self.calibration = Calibration.load(Path(p.calibration), self.plan) if p.calibration else None
        self._predicted: Counter = Counter()
        self._answer_operations: dict[bool, Counter] = {}  # by whether a logit map is fused: counted once per model
        self._streams: bool | None = None  # decided at the first answer: the model's shape does not change

    @classmethod
    def machine_problems(cls, params: Params) -> list[tuple[str, str]]:
        try:
            if params.calibration:
                Calibration.load(Path(params.calibration), params.plan(), check_speed=True)
        except CalibrationError as err:
            return [("scheme.calibration", str(err))]
        return []

    @classmethod
    def check_model(cls, params: Params, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        problem = he_friendly_problem(model)
        if problem:
            raise ValueError(f"scheme '{cls.kind}' {problem}")
        depth = model_depth(model)
        check_depth(depth, params)
        if params.mode != "real":
            return
        plan = params.plan()
        features = plan.input_ciphertexts(int(np.prod(input_shape)))
        bound = params.max_memory_gb
        widths = stage_widths(model, input_shape)
        needed, stage = memory_needed(widths, depth, plan.poly_modulus_degree, features, BLOCK_INPUTS)
        per_process = needed / params.workers
        if params.streams(per_process):
            # Lowering a convnet takes seconds: only a model too large for memory pays it here.
            least, where = minimum_bytes(lower_model(model, input_shape), plan.poly_modulus_degree, features, plan.scale, plan.complex_packing)
            least = (least + RESERVE) / 2**30
            if least > bound:
                raise ValueError(
                    f"streamed evaluation needs {least:.2f} GB for one output's arrays in {where} (beside what the process holds: the setup, the model), more than "
                    f"scheme.max_memory_gb {bound:g}; allowed: scheme.max_memory_gb of at least {least:.2f}, or mode accounted"
                )
        elif per_process / 2**30 > bound:
            raise ValueError(
                f"needs {per_process / 2**30:.1f} GB per evaluating process in real mode (stage {stage + 1}, a {widths[stage][0]} of {widths[stage][1]} outputs, "
                f"with {params.workers} worker(s)), more than scheme.max_memory_gb {bound:g}; allowed: scheme.max_memory_gb of at least "
                f"{per_process / 2**30:.1f}, more scheme.workers, scheme.evaluation streamed or auto with one worker, or mode accounted"
            )

    def timings(self) -> dict[str, float]:
        """Seconds in ``encrypt`` (setup), ``lower``, ``deserialize``, ``he_evaluate``, ``spill`` (streamed evaluation's disk traffic), ``serialize`` (answer), ``decrypt``."""
        return self.stopwatch.take()

    def predicted_timings(self) -> dict[str, float]:
        """The phases of :meth:`timings` as :mod:`.time_model` predicts them for one worker."""
        if self.calibration is None:
            return {}
        ops, self._predicted = self._predicted, Counter()
        return self.calibration.seconds(ops)

    def _count_setup(self, samples: np.ndarray) -> None:
        if self.calibration is not None:
            inputs = batches(self.plan, len(samples)) * self.plan.input_ciphertexts(int(np.prod(samples.shape[1:])))
            self._predicted += setup_operations(self.plan, inputs)

    def _count_answer(self, model: nn.Module, logit_map: LogitMap | None, circuit: list | None = None) -> None:
        """Count one answer's operations, from ``circuit`` where the caller has lowered ``model`` already."""
        if self.calibration is None:
            return
        fused = logit_map is not None
        if fused not in self._answer_operations:  # lowering a convnet takes seconds: the pattern of its weights does not change
            circuit = circuit or lower_model(model, self.input_shape)
            if fused:
                rows = np.arange(min(self.plan.slots, self.sample_count))
                circuit = circuit[:-1] + [fuse_logit_map(circuit[-1], logit_map.selected[rows], logit_map.matrix, logit_map.offset[rows])]
            features = self.plan.input_ciphertexts(int(np.prod(self.input_shape)))
            p = self.params
            # Streamed evaluation combines all the inputs a chunk needs at once: each output's sums are folded once, not once per block.
            block = None if self.streams(model) else BLOCK_INPUTS
            self._answer_operations[fused] = answer_operations(circuit, self.plan, features, block, p.complex_packing, p.rerandomize, p.flood_std > 0, self.classes)
        for _ in range(batches(self.plan, self.sample_count)):
            self._predicted += self._answer_operations[fused]

    def streams(self, model: nn.Module) -> bool:
        """Whether a real responder evaluates ``model`` streamed (:meth:`Params.streams`)."""
        if self._streams is None:
            self._streams = self.params.streams(in_memory_needed(model, self.input_shape, self.params))
        return self._streams

    def _count_decode(self, samples: int) -> None:
        if self.calibration is not None:
            self._predicted += decode_operations(batches(self.plan, samples) * self.classes)

    def load(self, wire: Wire) -> None:
        header, frames = unpack(wire.data)
        self.sample_count = header["samples"]
        self.input_shape = tuple(header["input_shape"])
        self.scale = 2.0 ** header["scale_bits"]
        self._load_frames(frames)
        if self.calibration is not None:
            self._predicted[("load_context", self.plan.depth + 1)] += 1

    def _load_frames(self, frames: list[memoryview]) -> None:
        raise NotImplementedError


def in_memory_needed(model: nn.Module, input_shape: tuple[int, ...], params: CkksScheme.Params) -> int:
    """Bytes one evaluating process holds for a batch evaluated in memory (:func:`.evaluation.memory_needed`)."""
    plan = params.plan()
    needed, _ = memory_needed(stage_widths(model, input_shape), model_depth(model), plan.poly_modulus_degree, plan.input_ciphertexts(int(np.prod(input_shape))), BLOCK_INPUTS)
    return needed // params.workers


class RealCkks(CkksScheme):
    """Encrypts, evaluates and decrypts everything: the bytes sent are the bytes charged."""

    serves_mode = "real"

    def __init__(self, params: CkksScheme.Params, classes: int, seed: int):
        super().__init__(params, classes, seed)
        self._rng = np.random.default_rng()  # flood noise the querier could regenerate would hide nothing

    # querier -------------------------------------------------------------------------------
    def setup(self, samples: np.ndarray) -> Wire:
        self.sample_count = len(samples)
        self._count_setup(samples)
        with self.stopwatch.timed("encrypt"):
            self._keys = make_keys(self.plan)
            frames = public_frames(self._keys) + encrypt_dataset(self._keys, samples)
        return Wire(pack(setup_header(self.plan, samples), frames))

    def decode(self, wire: Wire) -> np.ndarray:
        header, frames = unpack(wire.data)
        self._count_decode(header["samples"])
        with self.stopwatch.timed("decrypt"):
            return decrypt_logits(self._keys, frames, header["samples"], header["classes"])

    # responder -----------------------------------------------------------------------------
    def _load_frames(self, frames: list[memoryview]) -> None:
        with self.stopwatch.timed("deserialize"):
            self._public = PublicContext.load(frames, self.plan)
        # Inputs stay serialized (seeded, compressed): a CIFAR batch loaded is GBs.
        inputs = frames[self._public.frames :]
        self.streamed = StreamedEvaluation(self._public, inputs, int(self.params.max_memory_gb * 2**30), self.params.spill_dir)
        if self.params.workers == 1:
            self._shards = LocalShards(self._public, inputs, BLOCK_INPUTS)
        else:
            self._shards = RayShards(self._public, frames[: self._public.frames], self.plan, inputs, self.input_shape, self.params.workers, BLOCK_INPUTS)

    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        n = self.sample_count
        with self.stopwatch.timed("lower"):  # the model's weights into circuit stages: plaintext work, seconds for a convnet
            circuit = lower_model(model, self.input_shape)
        self._count_answer(model, logit_map, circuit)
        check_depth(circuit_depth(circuit), self.params)
        slots, features = self.plan.slots, self.plan.input_ciphertexts(int(np.prod(self.input_shape)))
        if self.streams(model):
            run, evaluator = self.streamed.evaluate, self.streamed
        else:
            run, evaluator = partial(evaluate, self._shards), self._shards
        frames = []
        for batch in range(batches(self.plan, n)):
            rows = slice(batch * slots, min((batch + 1) * slots, n))
            batch_circuit = circuit
            if logit_map is not None:
                mapped = fuse_logit_map(circuit[-1], logit_map.selected[rows], logit_map.matrix, logit_map.offset[rows])
                batch_circuit = circuit[:-1] + [mapped]
            with self.stopwatch.timed("he_evaluate"):
                logits = run(batch_circuit, batch, features, self.scale, self.plan.complex_packing)
                for ct in logits:
                    self._protect(ct, rows.stop - rows.start)
            for phase, seconds in evaluator.take_seconds().items():  # inputs are deserialized as they stream in
                self.stopwatch.seconds[phase] += seconds
                self.stopwatch.seconds["he_evaluate"] -= seconds
            with self.stopwatch.timed("serialize"):
                frames += [seal_bytes(ct) for ct in logits]
        return Wire(pack(answer_header(n, self.classes), frames))

    def close(self) -> None:
        """Stop the responder's evaluation workers, if any (a run's end stops them with Ray)."""
        if hasattr(self, "_shards"):
            self._shards.close()
            self.streamed.close()

    def _protect(self, ct: seal.Ciphertext, rows: int) -> None:
        flood = self._rng.normal(0.0, self.params.flood_std, rows) if self.params.flood_std else None
        protect(self._public, ct, self.params.rerandomize, flood)


class AccountedCkks(CkksScheme):
    """Computes the same logits in plaintext and charges exactly the bytes real mode sends (same
    plan, same packing), refusing what real mode cannot carry."""

    serves_mode = "accounted"

    def __init__(self, params: CkksScheme.Params, classes: int, seed: int):
        super().__init__(params, classes, seed)
        self._rng = np.random.default_rng(seed)  # seeded flood noise: accounted runs are reproducible

    def setup(self, samples: np.ndarray) -> Wire:
        self.sample_count = len(samples)
        self._count_setup(samples)
        payload = pack(setup_header(self.plan, samples), [array_to_bytes(samples.astype(np.float32))])
        return Wire(payload, setup_bytes(self.plan, samples))

    def decode(self, wire: Wire) -> np.ndarray:
        header, frames = unpack(wire.data)
        self._count_decode(header["samples"])
        return array_from_bytes(bytes(frames[0]))

    def _load_frames(self, frames: list[memoryview]) -> None:
        self._samples = torch.from_numpy(array_from_bytes(bytes(frames[0])))

    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        self._count_answer(model, logit_map)
        logits = plaintext_logits(model, self._samples, logit_map)
        if self.params.flood_std:
            logits = logits + self._rng.normal(0.0, self.params.flood_std, logits.shape).astype(np.float32)
        check_logit_bound(logits, self.params.headroom_bits)
        n, classes = self.sample_count, self.classes
        return Wire(pack(answer_header(n, classes), [array_to_bytes(logits)]), answer_bytes(self.plan, n, classes))


def check_logit_bound(logits: np.ndarray, headroom_bits: int) -> None:
    """Raise ``ValueError`` for logits beyond what real mode guarantees to carry, so that accounted
    mode refuses what real mode refuses. The lowest level keeps ``headroom_bits`` above the scale:
    magnitudes below ``2^(headroom_bits - 1)`` always decrypt; beyond it real mode carries some
    logits with an error growing with their size (it depends on the data: 0.4 at 8,900 on the
    digits MLP) and fails outright, "encoded values are too large", once the weights producing
    them cannot be encoded (near 10^5 there)."""
    bound = 2.0 ** (headroom_bits - 1)
    largest = float(np.abs(logits).max(initial=0.0))
    if not largest < bound:
        raise ValueError(
            f"encoded values are too large: a logit of magnitude {largest:.4g} exceeds the {bound:g} "
            f"(2^(headroom_bits - 1)) that CKKS with headroom_bits {headroom_bits} can carry; raise headroom_bits"
        )

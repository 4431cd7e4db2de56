"""CKKS secure inference: the querier's samples stay encrypted, the responder's weights stay home.

One direction of the SMuLe exchange (DESIGN.md section 3), querier Q and responder R:

    Q  keys = make_context(parameters)                  the secret key never leaves Q
    Q  -> R  public_context(keys) + encrypt_dataset(keys, samples)          once
    R  per batch: evaluate(public, circuit, inputs)     one ciphertext per class, lowest level
    R  -> Q  the logit ciphertexts, re-randomised (and optionally noise-flooded)   every epoch
    Q  decrypt_logits(keys, frames, ...)

Packing is feature-major: slot ``i`` of ciphertext ``k`` holds feature ``k`` of sample ``i``, so
one batch is ``poly_modulus_degree / 2`` samples, every layer is a slot-wise operation, and no
rotation (Galois) keys exist. The parameters follow from the multiplicative depth
(:func:`ckks_parameters`); the byte accounting (:func:`setup_bytes`, :func:`answer_bytes`) uses
the same parameters and packing plan, so ``mode: accounted`` charges what ``mode: real`` sends.

The scheme drives SEAL through TenSEAL's bindings (``tenseal.sealapi``) rather than TenSEAL's
``CKKSVector``: a vector's automatic rescale resets the scale to the nominal ``2^scale_bits``
although SEAL's primes differ from it by up to 1% (about 2% error after five levels), it cannot
sum products first and rescale once per output, and it cannot save a seeded (half-size)
ciphertext.
"""

from __future__ import annotations

import functools
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import tenseal.sealapi as seal
import torch
from pydantic import Field, model_validator
from torch import nn

from testbed.registry import Params
from testbed.schemes.base import SCHEMES, LogitMap, SecureInferenceScheme, Wire, plaintext_logits
from testbed.schemes.ckks_circuit import Linear, Stage, SumPool, circuit_depth, fuse_logit_map, lower_model
from testbed.schemes.ckks_wire import pack, packed_size, seal_bytes, seal_load, unpack
from testbed.schemes.plaintext import array_from_bytes, array_to_bytes

#: SEAL's largest total coefficient modulus (bits) per polynomial degree at 128-bit security
#: (HomomorphicEncryption.org standard; SEAL's ``CoeffModulus::MaxBitCount``).
MAX_COEFF_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


# -- parameters from depth -----------------------------------------------------------------
@dataclass(frozen=True)
class CkksParameters:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]  # [q0, depth x scale_bits, special prime]
    scale_bits: int

    @property
    def depth(self) -> int:
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return 2.0**self.scale_bits

    @property
    def relinearizes(self) -> bool:
        """Whether the querier makes relinearisation keys: a Square needs a Linear after it, so a
        circuit of depth 1 never multiplies ciphertexts."""
        return self.depth >= 2


def max_depth(poly_modulus_degree: int, scale_bits: int, headroom_bits: int) -> int:
    """The deepest circuit that fits ``poly_modulus_degree`` at 128-bit security."""
    return (MAX_COEFF_BITS[poly_modulus_degree] - 2 * (scale_bits + headroom_bits)) // scale_bits


def ckks_parameters(depth: int, scale_bits: int, headroom_bits: int, poly_modulus_degree: int | None = None) -> CkksParameters:
    """The smallest 128-bit-secure CKKS parameters for a circuit of multiplicative ``depth``.

    Each level's rescale divides by a prime of ``scale_bits`` bits, bringing the scale back to
    ``2^scale_bits``; the last prime ``q0`` has ``headroom_bits`` more, so logits up to
    ``2^(headroom_bits - 1)`` in magnitude survive at the lowest level; the special
    (key-switching) prime is as large as ``q0`` so relinearisation adds less noise than a
    rescale. Raises ``ValueError`` naming ``depth`` and the maximum the constraints allow.
    """
    degrees = [poly_modulus_degree] if poly_modulus_degree else sorted(MAX_COEFF_BITS)
    for degree in degrees:
        if depth <= max_depth(degree, scale_bits, headroom_bits):
            top = scale_bits + headroom_bits
            return CkksParameters(degree, (top, *[scale_bits] * depth, top), scale_bits)
    largest = degrees[-1]
    raise ValueError(
        f"multiplicative depth {depth} exceeds the maximum {max_depth(largest, scale_bits, headroom_bits)} of "
        f"128-bit-secure CKKS with poly_modulus_degree {largest}, scale 2^{scale_bits} and {headroom_bits} headroom bits"
    )


def check_depth(model_depth: int, params: "CkksScheme.Params") -> None:
    """Raise ``ValueError`` unless the querier's keys (``params``) can evaluate ``model_depth`` levels."""
    if model_depth <= params.depth:
        return
    degree = params.poly_modulus_degree or max(MAX_COEFF_BITS)
    limit = max_depth(degree, params.scale_bits, params.headroom_bits)
    if model_depth > limit:
        raise ValueError(
            f"model needs multiplicative depth {model_depth}, more than the maximum {limit} of 128-bit-secure CKKS "
            f"(poly_modulus_degree {degree}, scale 2^{params.scale_bits}, {params.headroom_bits} headroom bits)"
        )
    raise ValueError(f"model needs multiplicative depth {model_depth}, more than the scheme's depth {params.depth}; set the scheme's depth to {model_depth}")


# -- keys and contexts ---------------------------------------------------------------------
def _encryption_parameters(parameters: CkksParameters, seed: int | None = None) -> seal.EncryptionParameters:
    """SEAL's parameters. A ``seed`` fixes SEAL's PRNG, which then hands every draw the same
    stream: for measuring sizes (:func:`serialized_sizes`), never for keys in use."""
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(parameters.poly_modulus_degree)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(parameters.poly_modulus_degree, list(parameters.coeff_mod_bit_sizes)))
    if seed is not None:
        parms.set_random_generator(seal.Blake2xbPRNGFactory([seed, 0, 0, 0, 0, 0, 0, 0]))
    return parms


def _seal_context(parms: seal.EncryptionParameters) -> seal.SEALContext:
    context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise ValueError(f"invalid CKKS parameters: {context.parameters_error_message()}")
    return context


@dataclass
class QuerierKeys:
    """The querier's side: everything, the secret key included."""

    parameters: CkksParameters
    parms: seal.EncryptionParameters
    context: seal.SEALContext
    secret_key: seal.SecretKey
    public_key: seal.PublicKey
    relin_keys: seal.RelinKeys | None
    encoder: seal.CKKSEncoder
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor


def make_context(parameters: CkksParameters) -> QuerierKeys:
    """Querier: a fresh CKKS key pair (plus relinearisation keys when the circuit can square)."""
    parms = _encryption_parameters(parameters)
    context = _seal_context(parms)
    generator = seal.KeyGenerator(context)
    secret_key, public_key = generator.secret_key(), seal.PublicKey()
    generator.create_public_key(public_key)
    relin_keys = None
    if parameters.relinearizes:
        relin_keys = seal.RelinKeys()
        generator.create_relin_keys(relin_keys)
    return QuerierKeys(
        parameters, parms, context, secret_key, public_key, relin_keys, seal.CKKSEncoder(context),
        seal.Encryptor(context, public_key, secret_key), seal.Decryptor(context, secret_key),
    )


def public_context(keys: QuerierKeys) -> list[bytes]:
    """What the querier sends the responder: parameters, public key, relinearisation keys.

    Never the secret key. No Galois keys: feature-major evaluation never rotates. The public key
    lets the responder re-randomise its replies.
    """
    objects = [keys.parms, keys.public_key] + ([keys.relin_keys] if keys.relin_keys is not None else [])
    return [seal_bytes(obj) for obj in objects]


@dataclass
class PublicContext:
    """The responder's side: it can encrypt, evaluate and relinearise, never decrypt."""

    context: seal.SEALContext
    public_key: seal.PublicKey
    relin_keys: seal.RelinKeys | None
    encoder: seal.CKKSEncoder
    evaluator: seal.Evaluator
    encryptor: seal.Encryptor

    @classmethod
    def load(cls, frames: list[memoryview]) -> "PublicContext":
        context = _seal_context(seal_load(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), frames[0]))
        public_key = seal_load(seal.PublicKey(), frames[1], context)
        relin_keys = seal_load(seal.RelinKeys(), frames[2], context) if len(frames) > 2 else None
        return cls(context, public_key, relin_keys, seal.CKKSEncoder(context), seal.Evaluator(context), seal.Encryptor(context, public_key))

    def parms_id_at(self, chain_index: int) -> list[int]:
        """The parameter id of the level with ``chain_index`` primes left above ``q0``."""
        data = self.context.first_context_data()
        while data.chain_index() > chain_index:
            data = data.next_context_data()
        return data.parms_id()

    def primes(self, parms_id: list[int]) -> list[int]:
        return [modulus.value() for modulus in self.context.get_context_data(parms_id).parms().coeff_modulus()]


# -- the protocol ----------------------------------------------------------------------------
def encrypt_dataset(keys: QuerierKeys, samples: np.ndarray) -> list[bytes]:
    """Querier: one ciphertext per feature per batch, batch-major, samples across the slots.

    Symmetric (secret-key) encryption, saved seeded: SEAL regenerates the uniform half of each
    ciphertext from a 64-byte seed, which halves the setup bytes. Only the querier encrypts
    inputs, and it holds the secret key; symmetric CKKS is as IND-CPA secure as public-key CKKS.
    """
    flat = samples.reshape(len(samples), -1).astype(np.float64)
    scale, slots = keys.parameters.scale, keys.parameters.slots
    frames = []
    for start in range(0, len(flat), slots):
        for feature in flat[start : start + slots].T:
            plain = seal.Plaintext()
            keys.encoder.encode(feature.tolist(), scale, plain)
            frames.append(seal_bytes(keys.encryptor.encrypt_symmetric(plain)))
    return frames


def evaluate(public: PublicContext, circuit: list[Stage], inputs: Iterable[seal.Ciphertext], scale: float) -> list[seal.Ciphertext]:
    """Responder: the circuit on one batch of input ciphertexts -> one ciphertext per output.

    Inputs are first dropped to the level the circuit needs, so it ends on the lowest level
    (``q0`` alone, the smallest ciphertext). A ``Linear`` stage encodes its weights at the scale
    that brings each output back to exactly ``scale`` after its rescales, which happen once per
    output, not per product. A ``Square`` leaves its rescale pending: the next ``Linear`` drops
    both primes at once, on fewer ciphertexts.
    """
    start = public.parms_id_at(circuit_depth(circuit))
    cts: Iterable[seal.Ciphertext] = (_mod_switched(public, ct, start) for ct in inputs)
    pending = 0  # rescales owed by the current ciphertexts
    for stage in circuit:
        if isinstance(stage, Linear):
            cts, pending = _linear(public, cts, stage, pending, scale), 0
        elif isinstance(stage, SumPool):
            cts = list(cts)
            cts = [_sum(public, [cts[j] for j in window]) for window in stage.windows]
        else:
            cts, pending = [_square(public, ct, pending, stage.shift) for ct in cts], 1
    last = public.context.last_parms_id()
    return [_mod_switched(public, _settled(public, ct, pending), last) for ct in cts]


def protect(public: PublicContext, ct: seal.Ciphertext, rerandomize: bool, flood: np.ndarray | None) -> None:
    """Responder, before replying: hide how ``ct`` was computed.

    Re-randomising adds a fresh public-key encryption of zero, so the reply's ciphertext
    components no longer are a known function of the querier's input ciphertexts and the weights
    (without it, the querier could solve a linear model's weights from its own ciphertexts).
    Flooding adds ``flood`` (noise in logit units) to the message, masking the weight-dependent
    CKKS error the querier sees after decryption, statistically only to the extent the flood
    exceeds that error.
    """
    parms_id = ct.parms_id()
    if rerandomize:
        zero = seal.Ciphertext()
        public.encryptor.encrypt_zero(parms_id, zero)
        zero.scale = ct.scale
        public.evaluator.add_inplace(ct, zero)
    if flood is not None:
        public.evaluator.add_plain_inplace(ct, _plain(public, flood, parms_id, ct.scale))


def decrypt_logits(keys: QuerierKeys, frames: list[memoryview], samples: int, classes: int) -> np.ndarray:
    """Querier: ``(samples, classes)`` float32 logits from one ciphertext per class per batch."""
    logits = np.empty((samples, classes), dtype=np.float32)
    slots = keys.parameters.slots
    for index, frame in enumerate(frames):
        batch, cls = divmod(index, classes)
        rows = slice(batch * slots, min((batch + 1) * slots, samples))
        plain = seal.Plaintext()
        keys.decryptor.decrypt(seal_load(seal.Ciphertext(), frame, keys.context), plain)
        logits[rows, cls] = keys.encoder.decode_double(plain)[: rows.stop - rows.start]
    return logits


def _plain(public: PublicContext, value: float | np.ndarray, parms_id: list[int], scale: float) -> seal.Plaintext:
    """A scalar (every slot) or per-sample vector, encoded at ``scale`` for level ``parms_id``."""
    plain = seal.Plaintext()
    public.encoder.encode(value.tolist() if np.ndim(value) else float(value), parms_id, scale, plain)
    return plain


def _mod_switched(public: PublicContext, ct: seal.Ciphertext, parms_id: list[int]) -> seal.Ciphertext:
    public.evaluator.mod_switch_to_inplace(ct, parms_id)
    return ct


def _settled(public: PublicContext, ct: seal.Ciphertext, drops: int) -> seal.Ciphertext:
    """Relinearise, then rescale ``drops`` times.

    In that order: key switching adds noise of fixed size, which the rescales then divide by
    2^(drops * scale_bits). Relinearising after them gave a CIFAR-10 ``he_cnn`` a logit error
    of 0.027 instead of 2e-4.
    """
    if ct.size() > 2:
        public.evaluator.relinearize_inplace(ct, public.relin_keys)
    for _ in range(drops):
        public.evaluator.rescale_to_next_inplace(ct)
    return ct


def _linear(public: PublicContext, inputs: Iterable[seal.Ciphertext], stage: Linear, pending: int, scale: float) -> list[seal.Ciphertext]:
    """Scatter each input into the outputs it feeds (inputs may stream in one at a time)."""
    outputs: list[seal.Ciphertext | None] = [None] * stage.weight.shape[0]
    used = stage.weight.reshape(*stage.weight.shape[:2], -1).any(axis=2)
    product = seal.Ciphertext()
    drops = pending + 1
    for j, ct in enumerate(inputs):
        if j == 0:
            parms_id = ct.parms_id()
            weight_scale = scale * math.prod(public.primes(parms_id)[-drops:]) / ct.scale
        for o in np.flatnonzero(used[:, j]):
            plain = _plain(public, stage.weight[o, j], parms_id, weight_scale)
            if plain.is_zero():
                # The weight rounds to 0 at weight_scale, so its product is exactly zero: a
                # transparent ciphertext, which SEAL refuses. Per-sample vectors round away far
                # sooner than scalars: a scalar is one coefficient, while n per-sample values
                # spread over N coefficients of at most 2n/N of their size.
                continue
            if outputs[o] is None:
                outputs[o] = seal.Ciphertext()
                public.evaluator.multiply_plain(ct, plain, outputs[o])
            else:
                public.evaluator.multiply_plain(ct, plain, product)
                public.evaluator.add_inplace(outputs[o], product)
    after = public.parms_id_at(public.context.get_context_data(parms_id).chain_index() - drops)
    for o, out in enumerate(outputs):
        if out is None:  # every weight zero at this scale: the output is its bias, added to an encryption of zero
            out = outputs[o] = seal.Ciphertext()
            public.encryptor.encrypt_zero(after, out)
        else:
            _settled(public, out, drops)
        out.scale = scale  # what weight_scale makes it, up to float rounding, which SEAL's additions reject
        if np.any(stage.bias[o]):
            public.evaluator.add_plain_inplace(out, _plain(public, stage.bias[o], after, out.scale))
    return outputs


def _sum(public: PublicContext, cts: list[seal.Ciphertext]) -> seal.Ciphertext:
    total = seal.Ciphertext()
    public.evaluator.add_many(cts, total)
    return total


def _square(public: PublicContext, ct: seal.Ciphertext, pending: int, shift: float) -> seal.Ciphertext:
    ct = _settled(public, ct, pending)
    if shift:
        public.evaluator.add_plain_inplace(ct, _plain(public, shift, ct.parms_id(), ct.scale))
    public.evaluator.square_inplace(ct)
    return ct


# -- byte accounting -------------------------------------------------------------------------
#: Seeded contexts whose objects' sizes are averaged: the compressed size of one object varies
#: by about 0.07% (one standard deviation), the mean of 16 by under 0.02%.
SIZE_SAMPLES = 16


@functools.lru_cache(maxsize=8)
def serialized_sizes(parameters: CkksParameters) -> dict[str, int]:
    """Bytes of every object kind the protocol sends: a function of the parameters alone.

    SEAL compresses what it saves, and uniformly random residues compress to sizes that vary by
    a few hundred bytes from one object to the next, so sizes are measured, as means over
    :data:`SIZE_SAMPLES` contexts whose PRNGs have fixed seeds: the same figures in every process.

    Relinearisation keys are the exception. A seeded PRNG gives every draw the same stream, so
    its key-switching keys repeat one random polynomial and compress to a third of real ones.
    A real key is ``depth + 1`` key-level ciphertexts saved in one frame: it is charged as that
    many ciphertexts saved alone, less the overhead of the frames they share, an overhead
    measured as what two one-polynomial frames (a seeded ciphertext, whose second polynomial is
    a seed) cost beyond one two-polynomial frame. Measured against real keys of depth 2 to 7:
    0.03% to 0.12% short.
    """
    public_key, inputs, logit, key_level, key_seeded = np.mean([_sample_sizes(parameters, seed) for seed in range(SIZE_SAMPLES)], axis=0)
    context, frames = len(seal_bytes(_encryption_parameters(parameters))) + public_key, 2
    if parameters.relinearizes:
        components = parameters.depth + 1
        context += components * key_level - (components - 1) * (2 * key_seeded - key_level)
        frames += 1
    return {"context": round(context), "context_frames": frames, "input": round(inputs), "logit": round(logit)}


def _sample_sizes(parameters: CkksParameters, seed: int) -> np.ndarray:
    """Bytes of a public key, an input, a logit, and a key-level ciphertext saved whole and
    seeded, made in a context whose PRNG has the fixed ``seed``."""
    context = _seal_context(_encryption_parameters(parameters, seed))
    generator = seal.KeyGenerator(context)
    public_key = seal.PublicKey()
    generator.create_public_key(public_key)
    encoder, encryptor = seal.CKKSEncoder(context), seal.Encryptor(context, public_key, generator.secret_key())
    plain = seal.Plaintext()
    encoder.encode(np.random.default_rng(seed).random(parameters.slots).tolist(), parameters.scale, plain)
    logit, key_level = seal.Ciphertext(), seal.Ciphertext()
    encryptor.encrypt_zero(context.last_parms_id(), logit)
    encryptor.encrypt_zero_symmetric(context.key_parms_id(), key_level)
    objects = [public_key, encryptor.encrypt_symmetric(plain), logit, key_level, encryptor.encrypt_zero_symmetric(context.key_parms_id())]
    return np.array([len(seal_bytes(obj)) for obj in objects])


def _batches(parameters: CkksParameters, samples: int) -> int:
    return -(-samples // parameters.slots)


def _setup_header(parameters: CkksParameters, samples: np.ndarray) -> dict:
    return {"kind": "ckks-setup", "samples": len(samples), "input_shape": list(samples.shape[1:]), "scale_bits": parameters.scale_bits}


def _answer_header(samples: int, classes: int) -> dict:
    return {"kind": "ckks-answer", "samples": samples, "classes": classes}


def setup_bytes(parameters: CkksParameters, samples: np.ndarray) -> int:
    """Bytes of the setup message: public context plus one ciphertext per feature per batch."""
    sizes = serialized_sizes(parameters)
    inputs = _batches(parameters, len(samples)) * int(np.prod(samples.shape[1:]))
    return packed_size(_setup_header(parameters, samples), sizes["context"] + inputs * sizes["input"], sizes["context_frames"] + inputs)


def answer_bytes(parameters: CkksParameters, samples: int, classes: int) -> int:
    """Bytes of one epoch's reply: one lowest-level ciphertext per class per batch."""
    logits = _batches(parameters, samples) * classes
    return packed_size(_answer_header(samples, classes), logits * serialized_sizes(parameters)["logit"], logits)


# -- the scheme ------------------------------------------------------------------------------
@SCHEMES.register("ckks")
class CkksScheme(SecureInferenceScheme):
    """CKKS secure inference with feature-major packing (CryptoNets-style, Gilad-Bachrach et al., ICML 2016).

    ``mode: real`` encrypts and evaluates everything; ``mode: accounted`` computes the same logits
    in plaintext and charges exactly the bytes ``real`` sends (same parameters, same packing).
    """

    needs_he_friendly_model = True

    class Params(Params):
        mode: Literal["real", "accounted"] = "real"
        depth: int = Field(5, ge=1, description="multiplicative depth the querier's keys support; he_cnn and one-hidden-layer mlp need 5 and 3")
        poly_modulus_degree: Literal[4096, 8192, 16384, 32768] | None = Field(None, description="None: the smallest that fits depth")
        scale_bits: int = Field(26, ge=20, le=40, description="CKKS scale 2^scale_bits; also the bit size of each rescaling prime")
        headroom_bits: int = Field(10, ge=4, le=20, description="extra bits of the last prime: logits must stay below 2^(headroom_bits-1)")
        rerandomize: bool = Field(True, description="add a fresh encryption of zero to every reply ciphertext")
        flood_std: float = Field(0.0, ge=0.0, description="std of Gaussian noise flooded onto every returned logit (0: off)")

        @model_validator(mode="after")
        def _fits(self) -> "CkksScheme.Params":
            ckks_parameters(self.depth, self.scale_bits, self.headroom_bits, self.poly_modulus_degree)
            return self

    def __init__(self, params: Params, classes: int, seed: int):
        super().__init__(params, classes, seed)
        p = self.params
        self.parameters = ckks_parameters(p.depth, p.scale_bits, p.headroom_bits, p.poly_modulus_degree)
        # Flood noise the querier could regenerate would hide nothing: real mode draws fresh entropy.
        self._rng = np.random.default_rng(seed if p.mode == "accounted" else None)
        self._seconds: dict[str, float] = defaultdict(float)

    @classmethod
    def check_model(cls, params: Params, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        check_depth(circuit_depth(lower_model(model, input_shape)), params)

    def timings(self) -> dict[str, float]:
        """Seconds in ``encrypt`` (setup), ``deserialize``, ``he_evaluate``, ``serialize`` (answer), ``decrypt``."""
        out, self._seconds = dict(self._seconds), defaultdict(float)
        return out

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self._seconds[phase] += time.perf_counter() - start

    # querier -------------------------------------------------------------------------------
    def setup(self, samples: np.ndarray) -> Wire:
        self.sample_count = len(samples)
        header = _setup_header(self.parameters, samples)
        if self.params.mode == "accounted":
            return Wire(pack(header, [array_to_bytes(samples.astype(np.float32))]), setup_bytes(self.parameters, samples))
        with self._timed("encrypt"):
            self._keys = make_context(self.parameters)
            frames = public_context(self._keys) + encrypt_dataset(self._keys, samples)
        return Wire(pack(header, frames))

    def decode(self, wire: Wire) -> np.ndarray:
        header, frames = unpack(wire.data)
        if self.params.mode == "accounted":
            return array_from_bytes(bytes(frames[0]))
        with self._timed("decrypt"):
            return decrypt_logits(self._keys, frames, header["samples"], header["classes"])

    # responder -----------------------------------------------------------------------------
    def load(self, wire: Wire) -> None:
        header, frames = unpack(wire.data)
        self.sample_count = header["samples"]
        self._input_shape = tuple(header["input_shape"])
        self._scale = 2.0 ** header["scale_bits"]
        if self.params.mode == "accounted":
            self._samples = torch.from_numpy(array_from_bytes(bytes(frames[0])))
            return
        with self._timed("deserialize"):
            self._public = PublicContext.load(frames)
        # Inputs stay serialized (seeded, compressed): a CIFAR batch loaded is GBs.
        self._inputs = frames[2 if self._public.relin_keys is None else 3 :]

    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        n, classes = self.sample_count, self.classes
        header = _answer_header(n, classes)
        if self.params.mode == "accounted":
            logits = self._plaintext_logits(model, logit_map)
            return Wire(pack(header, [array_to_bytes(logits)]), answer_bytes(self.parameters, n, classes))
        circuit = lower_model(model, self._input_shape)
        check_depth(circuit_depth(circuit), self.params)
        slots, features = self.parameters.slots, int(np.prod(self._input_shape))
        frames = []
        for batch in range(_batches(self.parameters, n)):
            rows = slice(batch * slots, min((batch + 1) * slots, n))
            batch_circuit = circuit
            if logit_map is not None:
                mapped = fuse_logit_map(circuit[-1], logit_map.selected[rows], logit_map.matrix, logit_map.offset[rows])
                batch_circuit = circuit[:-1] + [mapped]
            before = self._seconds["deserialize"]
            start = time.perf_counter()
            logits = evaluate(self._public, batch_circuit, self._batch_inputs(batch * features, features), self._scale)
            for ct in logits:
                self._protect(ct, rows.stop - rows.start)
            self._seconds["he_evaluate"] += time.perf_counter() - start - (self._seconds["deserialize"] - before)
            with self._timed("serialize"):
                frames += [seal_bytes(ct) for ct in logits]
        return Wire(pack(header, frames))

    def _batch_inputs(self, first: int, count: int) -> Iterator[seal.Ciphertext]:
        for frame in self._inputs[first : first + count]:
            with self._timed("deserialize"):
                ct = seal_load(seal.Ciphertext(), frame, self._public.context)
            yield ct

    def _protect(self, ct: seal.Ciphertext, rows: int) -> None:
        flood = self._rng.normal(0.0, self.params.flood_std, rows) if self.params.flood_std else None
        protect(self._public, ct, self.params.rerandomize, flood)

    def _plaintext_logits(self, model: nn.Module, logit_map: LogitMap | None) -> np.ndarray:
        logits = plaintext_logits(model, self._samples, logit_map)
        if self.params.flood_std:
            logits = logits + self._rng.normal(0.0, self.params.flood_std, logits.shape).astype(np.float32)
        check_logit_bound(logits, self.params.headroom_bits)
        return logits


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

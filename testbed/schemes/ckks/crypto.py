"""The cryptography of one direction, querier Q and responder R, through SEAL (TenSEAL's
``tenseal.sealapi`` bindings):

    Q  keys = make_keys(plan)                            the secret key never leaves Q
    Q  -> R  public_frames(keys) + encrypt_dataset(keys, samples)            once
    R  per batch: evaluation.evaluate(circuit, shards)  one ciphertext per class, lowest level
    R  -> Q  the logit ciphertexts, re-randomised (and optionally noise-flooded)    every epoch
    Q  decrypt_logits(keys, frames, ...)

SEAL's own API rather than TenSEAL's ``CKKSVector``: a vector's automatic rescale resets the
scale to the nominal ``2^scale_bits`` although SEAL's primes differ from it by up to 1% (about 2%
error after five levels), it cannot sum products first and rescale once per output, and it cannot
save a seeded (half-size) ciphertext.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from testbed.schemes.ckks.plan import CkksPlan
from testbed.schemes.ckks.wire import seal_bytes, seal_load


def seal_parameters(plan: CkksPlan, seed: int | None = None) -> seal.EncryptionParameters:
    """SEAL's encryption parameters. A ``seed`` fixes SEAL's PRNG, which then hands every draw the same
    stream: for measuring sizes (:func:`serialized_sizes`), never for keys in use."""
    seal_params = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    seal_params.set_poly_modulus_degree(plan.poly_modulus_degree)
    seal_params.set_coeff_modulus(seal.CoeffModulus.Create(plan.poly_modulus_degree, list(plan.coeff_mod_bit_sizes)))
    if seed is not None:
        seal_params.set_random_generator(seal.Blake2xbPRNGFactory([seed, 0, 0, 0, 0, 0, 0, 0]))
    return seal_params


def seal_context(seal_params: seal.EncryptionParameters) -> seal.SEALContext:
    context = seal.SEALContext(seal_params, True, seal.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise ValueError(f"invalid CKKS parameters: {context.parameters_error_message()}")
    return context


@dataclass
class QuerierKeys:
    """The querier's side: everything, the secret key included."""

    plan: CkksPlan
    seal_params: seal.EncryptionParameters
    context: seal.SEALContext
    secret_key: seal.SecretKey
    public_key: seal.PublicKey
    relin_keys: seal.RelinKeys | None
    galois_keys: seal.GaloisKeys | None  # conjugation only, with complex packing
    encoder: seal.CKKSEncoder
    encryptor: seal.Encryptor
    decryptor: seal.Decryptor


def make_keys(plan: CkksPlan) -> QuerierKeys:
    """Querier: a fresh CKKS key pair (plus relinearisation keys when the circuit can square)."""
    seal_params = seal_parameters(plan)
    context = seal_context(seal_params)
    generator = seal.KeyGenerator(context)
    secret_key, public_key = generator.secret_key(), seal.PublicKey()
    generator.create_public_key(public_key)
    relin_keys = None
    if plan.relinearizes:
        relin_keys = seal.RelinKeys()
        generator.create_relin_keys(relin_keys)
    galois_keys = None
    if plan.complex_packing:
        galois_keys = seal.GaloisKeys()
        generator.create_galois_keys([conjugation_element(plan)], galois_keys)
    return QuerierKeys(
        plan, seal_params, context, secret_key, public_key, relin_keys, galois_keys, seal.CKKSEncoder(context),
        seal.Encryptor(context, public_key, secret_key), seal.Decryptor(context, secret_key),
    )


def conjugation_element(plan: CkksPlan) -> int:
    """The Galois element of complex conjugation, X -> X^(2N-1)."""
    return 2 * plan.poly_modulus_degree - 1


def public_frames(keys: QuerierKeys) -> list[bytes]:
    """What the querier sends the responder: encryption parameters, public key, relinearisation keys.

    Never the secret key. No Galois keys: feature-major evaluation never rotates. The public key
    lets the responder re-randomise its replies.
    """
    objects = [keys.seal_params, keys.public_key] + [key for key in (keys.relin_keys, keys.galois_keys) if key is not None]
    return [seal_bytes(obj) for obj in objects]


@dataclass
class PublicContext:
    """The responder's side: it can encrypt, evaluate and relinearise, never decrypt."""

    context: seal.SEALContext
    public_key: seal.PublicKey
    relin_keys: seal.RelinKeys | None
    galois_keys: seal.GaloisKeys | None
    encoder: seal.CKKSEncoder
    evaluator: seal.Evaluator
    encryptor: seal.Encryptor
    frames: int  # how many frames of the setup message the context took

    @classmethod
    def load(cls, frames: list[memoryview], plan: CkksPlan) -> "PublicContext":
        """The context from the first frames of a setup message made under ``plan``."""
        context = seal_context(seal_load(seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS), frames[0]))
        public_key = seal_load(seal.PublicKey(), frames[1], context)
        rest = iter(frames[2:])
        relin_keys = seal_load(seal.RelinKeys(), next(rest), context) if plan.relinearizes else None
        galois_keys = seal_load(seal.GaloisKeys(), next(rest), context) if plan.complex_packing else None
        used = 2 + (relin_keys is not None) + (galois_keys is not None)
        return cls(context, public_key, relin_keys, galois_keys, seal.CKKSEncoder(context), seal.Evaluator(context), seal.Encryptor(context, public_key), used)

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
    """Querier: one ciphertext per feature per batch (per pair of features with complex
    packing: feature ``2k`` the real, ``2k + 1`` the imaginary part), batch-major, samples across
    the slots.

    Symmetric (secret-key) encryption, saved seeded: SEAL regenerates the uniform half of each
    ciphertext from a 64-byte seed, which halves the setup bytes. Only the querier encrypts
    inputs, and it holds the secret key; symmetric CKKS is as IND-CPA secure as public-key CKKS.
    """
    flat = samples.reshape(len(samples), -1).astype(np.float64)
    if keys.plan.complex_packing:
        flat = paired(flat, axis=1)
    scale, slots = keys.plan.scale, keys.plan.slots
    frames = []
    for start in range(0, len(flat), slots):
        for feature in flat[start : start + slots].T:
            plain = seal.Plaintext()
            keys.encoder.encode(feature.tolist(), scale, plain)
            frames.append(seal_bytes(keys.encryptor.encrypt_symmetric(plain)))
    return frames


def paired(values: np.ndarray, axis: int) -> np.ndarray:
    """Features ``2k`` and ``2k + 1`` along ``axis`` as one complex number (a zero feature pads an odd count)."""
    if values.shape[axis] % 2:
        pad = [(0, 0)] * values.ndim
        pad[axis] = (0, 1)
        values = np.pad(values, pad)
    even, odd = np.take(values, range(0, values.shape[axis], 2), axis), np.take(values, range(1, values.shape[axis], 2), axis)
    return even + 1j * odd


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
        public.evaluator.add_plain_inplace(ct, encoded(public, flood, parms_id, ct.scale))


def decrypt_logits(keys: QuerierKeys, frames: list[memoryview], samples: int, classes: int) -> np.ndarray:
    """Querier: ``(samples, classes)`` float32 logits from one ciphertext per class per batch."""
    logits = np.empty((samples, classes), dtype=np.float32)
    slots = keys.plan.slots
    for index, frame in enumerate(frames):
        batch, cls = divmod(index, classes)
        rows = slice(batch * slots, min((batch + 1) * slots, samples))
        plain = seal.Plaintext()
        keys.decryptor.decrypt(seal_load(seal.Ciphertext(), frame, keys.context), plain)
        logits[rows, cls] = keys.encoder.decode_double(plain)[: rows.stop - rows.start]
    return logits


def encoded(public: PublicContext, value: float | np.ndarray, parms_id: list[int], scale: float) -> seal.Plaintext:
    """A scalar (every slot) or per-sample vector, real or complex, encoded at ``scale`` for level ``parms_id``."""
    plain = seal.Plaintext()
    scalar = complex(value) if np.iscomplexobj(value) else float(value) if not np.ndim(value) else None
    public.encoder.encode(value.tolist() if scalar is None else scalar, parms_id, scale, plain)
    return plain


def mod_switched(public: PublicContext, ct: seal.Ciphertext, parms_id: list[int]) -> seal.Ciphertext:
    public.evaluator.mod_switch_to_inplace(ct, parms_id)
    return ct


def settled(public: PublicContext, ct: seal.Ciphertext, drops: int) -> seal.Ciphertext:
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

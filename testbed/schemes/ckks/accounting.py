"""Bytes that ``mode: real`` sends, computed from the plan alone, for ``mode: accounted``."""

from __future__ import annotations

import functools

import numpy as np
import tenseal.sealapi as seal

from testbed.schemes.ckks.crypto import seal_context, seal_parameters
from testbed.schemes.ckks.plan import CkksPlan
from testbed.schemes.ckks.wire import packed_size, seal_bytes

#: Seeded contexts whose objects' sizes are averaged: the compressed size of one object varies
#: by about 0.07% (one standard deviation), the mean of 16 by under 0.02%.
SIZE_SAMPLES = 16


@functools.lru_cache(maxsize=8)
def serialized_sizes(plan: CkksPlan) -> dict[str, int]:
    """Bytes of every object kind the protocol sends: a function of the plan alone.

    SEAL compresses what it saves, and uniformly random residues compress to sizes that vary by
    a few hundred bytes from one object to the next, so sizes are measured, as means over
    :data:`SIZE_SAMPLES` contexts whose PRNGs have fixed seeds: the same figures in every process.

    Relinearisation keys are the exception. A seeded PRNG gives every draw the same stream, so
    its key-switching keys repeat one random polynomial and compress to a third of real ones.
    A real key is ``depth + 1`` key-level ciphertexts saved in one frame: it is charged as that
    many ciphertexts saved alone, less the overhead of the frames they share, an overhead
    measured as what two one-polynomial frames (a seeded ciphertext, whose second polynomial is
    a seed) cost beyond one two-polynomial frame. Measured against real keys of depth 2 to 7:
    0.03% to 0.12% short. A conjugation key (complex packing) has the same structure and is
    charged the same way.
    """
    public_key, inputs, logit, key_level, key_seeded = np.mean([_sample_sizes(plan, seed) for seed in range(SIZE_SAMPLES)], axis=0)
    context, frames = len(seal_bytes(seal_parameters(plan))) + public_key, 2
    components = plan.depth + 1
    for _ in range(plan.relinearizes + plan.complex_packing):
        context += components * key_level - (components - 1) * (2 * key_seeded - key_level)
        frames += 1
    return {"context": round(context), "context_frames": frames, "input": round(inputs), "logit": round(logit)}


def _sample_sizes(plan: CkksPlan, seed: int) -> np.ndarray:
    """Bytes of a public key, an input, a logit, and a key-level ciphertext saved whole and
    seeded, made in a context whose PRNG has the fixed ``seed``."""
    context = seal_context(seal_parameters(plan, seed))
    generator = seal.KeyGenerator(context)
    public_key = seal.PublicKey()
    generator.create_public_key(public_key)
    encoder, encryptor = seal.CKKSEncoder(context), seal.Encryptor(context, public_key, generator.secret_key())
    plain = seal.Plaintext()
    encoder.encode(np.random.default_rng(seed).random(plan.slots).tolist(), plan.scale, plain)
    logit, key_level = seal.Ciphertext(), seal.Ciphertext()
    encryptor.encrypt_zero(context.last_parms_id(), logit)
    encryptor.encrypt_zero_symmetric(context.key_parms_id(), key_level)
    objects = [public_key, encryptor.encrypt_symmetric(plain), logit, key_level, encryptor.encrypt_zero_symmetric(context.key_parms_id())]
    return np.array([len(seal_bytes(obj)) for obj in objects])


def batches(plan: CkksPlan, samples: int) -> int:
    return -(-samples // plan.slots)


def setup_header(plan: CkksPlan, samples: np.ndarray) -> dict:
    return {"kind": "ckks-setup", "samples": len(samples), "input_shape": list(samples.shape[1:]), "scale_bits": plan.scale_bits}


def answer_header(samples: int, classes: int) -> dict:
    return {"kind": "ckks-answer", "samples": samples, "classes": classes}


def setup_bytes(plan: CkksPlan, samples: np.ndarray) -> int:
    """Bytes of the setup message: public context plus the input ciphertexts of every batch."""
    sizes = serialized_sizes(plan)
    inputs = batches(plan, len(samples)) * plan.input_ciphertexts(int(np.prod(samples.shape[1:])))
    return packed_size(setup_header(plan, samples), sizes["context"] + inputs * sizes["input"], sizes["context_frames"] + inputs)


def answer_bytes(plan: CkksPlan, samples: int, classes: int) -> int:
    """Bytes of one epoch's reply: one lowest-level ciphertext per class per batch."""
    logits = batches(plan, samples) * classes
    return packed_size(answer_header(samples, classes), logits * serialized_sizes(plan)["logit"], logits)

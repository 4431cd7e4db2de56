"""CKKS parameters from the circuit's multiplicative depth: the plan both modes share.

Packing is feature-major: slot ``i`` of ciphertext ``k`` holds feature ``k`` of sample ``i``, so one
batch is ``poly_modulus_degree / 2`` samples and no rotation (Galois) keys exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: SEAL's largest total coefficient modulus (bits) per polynomial degree at 128-bit security
#: (HomomorphicEncryption.org standard; SEAL's ``CoeffModulus::MaxBitCount``).
MAX_COEFF_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


# -- plan from depth -----------------------------------------------------------------
@dataclass(frozen=True)
class CkksPlan:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]  # [q0, depth x scale_bits, special prime]
    scale_bits: int
    #: Two features per slot, as the real and imaginary part of one complex number (as nGraph-HE2
    #: packs complex slots): half the input ciphertexts, for one conjugation key and one key
    #: switch per output of the first linear stage.
    complex_packing: bool = False

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

    def input_ciphertexts(self, features: int) -> int:
        """Input ciphertexts per batch of samples with ``features`` features."""
        return -(-features // 2) if self.complex_packing else features


def max_depth(poly_modulus_degree: int, scale_bits: int, headroom_bits: int) -> int:
    """The deepest circuit that fits ``poly_modulus_degree`` at 128-bit security."""
    return (MAX_COEFF_BITS[poly_modulus_degree] - 2 * (scale_bits + headroom_bits)) // scale_bits


def plan_for_depth(depth: int, scale_bits: int, headroom_bits: int, poly_modulus_degree: int | None = None, complex_packing: bool = False) -> CkksPlan:
    """The smallest 128-bit-secure CKKS plan for a circuit of multiplicative ``depth``.

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
            return CkksPlan(degree, (top, *[scale_bits] * depth, top), scale_bits, complex_packing)
    largest = degrees[-1]
    raise ValueError(
        f"multiplicative depth {depth} exceeds the maximum {max_depth(largest, scale_bits, headroom_bits)} of "
        f"128-bit-secure CKKS with poly_modulus_degree {largest}, scale 2^{scale_bits} and {headroom_bits} headroom bits"
    )


def check_depth(model_depth: int, params: Any) -> None:
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

"""A linear stage with scalar weights as exact modular arithmetic on coefficient arrays.

SEAL encodes a real scalar ``w`` at scale ``s`` as the integer ``round(w * s)`` in every NTT
coefficient of every prime, and ``multiply_plain`` multiplies each coefficient by it modulo its
prime. So ``out[o] = sum_j w[o, j] * in[j]`` is, per prime ``q``, the integer combination
``sum_j round(w[o, j] * s) * in[j] mod q``: one sparse matrix product over all coefficients at
once, bit for bit what one SEAL call per scalar product gives, without a plaintext per product.

Coefficients (below ``q``, up to 61 bits) are split into limbs of :data:`LIMB_BITS` so that a
limb times a weight fits in a signed 64-bit integer; sums are folded modulo ``q`` before they
could overflow. Modular products use a floating-point quotient corrected in integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

LIMB_BITS = 18
#: Coefficients per block: one block of every accumulator limb stays in the first-level cache.
CHUNK = 1024
_HEADROOM = 2**62


@dataclass(frozen=True)
class IntegerWeights:
    """A weight matrix rounded at a scale, rows as compressed sparse rows (zeros dropped)."""

    indptr: np.ndarray  # (outputs + 1,) int64
    indices: np.ndarray  # (nonzeros,) int64: input index
    values: np.ndarray  # (nonzeros,) int64: round(weight * scale)

    @classmethod
    def rounded(cls, weight: np.ndarray, scale: float) -> "IntegerWeights":
        rounded = np.rint(weight * scale)
        if np.abs(rounded).max(initial=0.0) >= 2.0**62:
            raise ValueError(f"encoded values are too large: a weight of magnitude {np.abs(weight).max():.4g} at scale {scale:.4g}")
        rows, columns = np.nonzero(rounded)
        indptr = np.zeros(len(weight) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(weight)), out=indptr[1:])
        return cls(indptr, columns.astype(np.int64), rounded[rows, columns].astype(np.int64))

    def empty_rows(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.indptr) == 0)


def limbs_for(bits: int) -> int:
    """Limbs of :data:`LIMB_BITS` a coefficient below a prime of ``bits`` bits is split into."""
    return -(-bits // LIMB_BITS)


def add_combination(inputs: np.ndarray, weights: IntegerWeights, moduli: np.ndarray, out: np.ndarray) -> None:
    """``out[o] += sum_j values[o, j] * inputs[j]`` modulo each prime, in place.

    ``inputs`` has shape ``(inputs, size, primes, degree)`` (uint64, each below its prime),
    ``moduli`` one prime per middle axis, ``out`` ``(outputs, size, primes, degree)``.
    """
    count, size, primes, degree = inputs.shape
    if degree % CHUNK:
        raise ValueError(f"poly_modulus_degree {degree} is not a multiple of {CHUNK}")
    limbs = limbs_for(int(moduli.max()).bit_length())
    largest = int(np.abs(weights.values).max(initial=1))
    block = max(1, _HEADROOM // (largest << LIMB_BITS))  # terms summed before a fold
    block_moduli = np.tile(np.repeat(moduli.astype(np.int64), degree // CHUNK), size)  # the prime of each block
    _combine(inputs.reshape(count, -1), weights.indptr, weights.indices, weights.values, block_moduli, limbs, block, out.reshape(len(out), -1))


def add_modular(total: np.ndarray, part: np.ndarray, moduli: np.ndarray) -> None:
    """``total += part`` modulo each prime (axis -2), in place; both below their primes."""
    total += part
    q = moduli.astype(np.uint64)[:, None]
    np.subtract(total, q, out=total, where=total >= q)


@numba.njit(cache=True, nogil=True)
def _mulmod(a: int, b: int, q: int, inverse: float) -> int:
    """``a * b mod q`` for ``0 <= a, b < q < 2^61``: the quotient from floating point is off by
    at most one, and the product minus quotient times ``q`` is exact modulo 2^64."""
    quotient = np.int64(np.floor(np.float64(a) * np.float64(b) * inverse))
    r = a * b - quotient * q
    if r < 0:
        r += q
    if r >= q:
        r -= q
    return r


@numba.njit(cache=True, nogil=True)
def _fold(a: int, q: int, inverse: float) -> int:
    """``a mod q`` for any signed 64-bit ``a``."""
    quotient = np.int64(np.floor(np.float64(a) * inverse))
    r = a - quotient * q
    while r < 0:
        r += q
    while r >= q:
        r -= q
    return r


@numba.njit(cache=True, nogil=True)
def _combine(x, indptr, indices, values, block_moduli, limbs, block, out):  # pragma: no cover (compiled)
    """``out += values @ x`` modulo each block's prime, in blocks of CHUNK coefficients."""
    mask = (1 << LIMB_BITS) - 1
    acc = np.zeros((limbs, CHUNK), dtype=np.int64)
    for b in range(len(block_moduli)):
        q = block_moduli[b]
        inverse = 1.0 / np.float64(q)
        shift_factor = _fold(1 << LIMB_BITS, q, inverse)
        start = b * CHUNK
        for o in range(len(indptr) - 1):
            if indptr[o] == indptr[o + 1]:
                continue
            acc[:, :] = 0
            terms = 0
            for t in range(indptr[o], indptr[o + 1]):
                row = x[indices[t]]
                w = values[t]
                for k in range(limbs):
                    shift = k * LIMB_BITS
                    for m in range(CHUNK):
                        acc[k, m] += ((np.int64(row[start + m]) >> shift) & mask) * w
                terms += 1
                if terms == block:  # fold before a further term could overflow
                    for k in range(limbs):
                        for m in range(CHUNK):
                            acc[k, m] = _fold(acc[k, m], q, inverse)
                    terms = 0
            for m in range(CHUNK):
                r = _fold(acc[limbs - 1, m], q, inverse)
                for k in range(limbs - 2, -1, -1):
                    r = _mulmod(r, shift_factor, q, inverse) + _fold(acc[k, m], q, inverse)
                    if r >= q:
                        r -= q
                r += np.int64(out[o, start + m])
                if r >= q:
                    r -= q
                out[o, start + m] = np.uint64(r)

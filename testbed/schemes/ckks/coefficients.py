"""A SEAL ciphertext's coefficients as a NumPy array, without a copy.

TenSEAL's bindings expose no buffer for a ciphertext: ``Ciphertext.data()`` returns the first
coefficient's value, and saving goes through a file with zstd compression (4 ms for one
N = 8192 ciphertext, 15 times a plaintext product). A linear stage done in bulk
(:mod:`.bulk_linear`) needs the coefficients of thousands of ciphertexts, so this module reads
them where they lie, from the memory layout of ``seal::Ciphertext`` in the SEAL that
``tenseal==0.3.18`` bundles (16 machine words)::

    0-3 parms_id | 4 is_ntt_form | 5 size | 6 poly_modulus_degree | 7 coeff_modulus_size
    8 scale | 9 correction_factor | 10-11 memory pool | 12 capacity | 13 count | 14 data pointer

Every access first checks the words it relies on against what the bindings report (size, degree,
primes, scale, count); a mismatch, from another TenSEAL build, raises :class:`LayoutMismatch`
before any pointer is followed.
"""

from __future__ import annotations

import ctypes

import numpy as np
import tenseal.sealapi as seal

#: Offset of the C++ object's address inside a pybind11 instance: after the object header
#: (reference count and type), the first word of its value-and-holder storage.
_VALUE_POINTER_OFFSET = 16
_WORDS = 15
_IS_NTT, _SIZE, _DEGREE, _PRIMES, _SCALE, _COUNT, _DATA = 4, 5, 6, 7, 8, 13, 14


class LayoutMismatch(RuntimeError):
    """The SEAL build lays out a ciphertext differently from the one this module reads."""


def _words(ct: seal.Ciphertext) -> ctypes.Array:
    address = ctypes.c_void_p.from_address(id(ct) + _VALUE_POINTER_OFFSET).value
    words = (ctypes.c_uint64 * _WORDS).from_address(address)
    scale = ctypes.c_double.from_address(address + 8 * _SCALE).value
    expected = (ct.size(), ct.poly_modulus_degree(), ct.coeff_modulus_size())
    found = (words[_SIZE], words[_DEGREE], words[_PRIMES])
    if found != expected or scale != ct.scale or words[_COUNT] != int(np.prod(expected)):
        raise LayoutMismatch(f"unexpected seal::Ciphertext layout (found {found}, expected {expected}); this module reads tenseal==0.3.18's SEAL")
    return words


def coefficients(ct: seal.Ciphertext) -> np.ndarray:
    """A writable view of ``ct``'s coefficients, shape ``(size, primes, poly_modulus_degree)``,
    uint64: component, then RNS prime, then coefficient (NTT form for CKKS). Valid while ``ct``
    lives and is not resized."""
    words = _words(ct)
    shape = (ct.size(), ct.coeff_modulus_size(), ct.poly_modulus_degree())
    buffer = (ctypes.c_uint64 * words[_COUNT]).from_address(words[_DATA])
    return np.ctypeslib.as_array(buffer).reshape(shape)


def ciphertext_from(context: seal.SEALContext, parms_id: list[int], values: np.ndarray, scale: float) -> seal.Ciphertext:
    """A new NTT-form ciphertext at level ``parms_id`` holding ``values`` (shape as :func:`coefficients`)."""
    ct = seal.Ciphertext()
    ct.resize(context, parms_id, values.shape[0])
    words = _words(ct)
    ctypes.c_bool.from_address(ctypes.addressof(words) + 8 * _IS_NTT).value = True  # the bindings cannot set it
    ct.scale = scale
    coefficients(ct)[...] = values
    return ct

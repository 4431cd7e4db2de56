"""Baseline for ``bench/ckks.py``: the same model on the same samples through TenSEAL's own
high-level ``CKKSTensor`` API, with the project's parameters (issue 24, item 4).

Packing is the project's feature-major packing: ``ts.ckks_tensor(context, ts.plain_tensor(x[:, k]), batch=True)``
(a 1-D plain tensor: TenSEAL 0.3.18 encrypted an ``(n, 1)`` numpy column wrongly, every slot
the first value) puts feature ``k`` of every sample across the slots, one ``CKKSTensor`` (one ciphertext) per
feature. The circuit is the project's own lowering (:func:`lower_model`): ``Linear`` stages as
sums of ciphertext x plaintext-scalar products plus the bias, ``SumPool`` as additions, ``Square``
as ``.square()`` after the shift; TenSEAL relinearises and rescales automatically (after every
product, resetting the scale to the nominal ``2^scale_bits``, see docs/ckks.md), so its error is
larger than the project's.

Per-element ops, not ``.mm``: a batched ``CKKSTensor.dot`` needs Galois keys (which
feature-major packing has none of), and ``.mm`` on the dense lowered matrix multiplies every
zero of a convolution's matrix too (he_cnn's first stage: 3072 x 512 entries, of which 1 in 64
are nonzero, ~1.5 M products: tens of minutes). So each output sums only its nonzero products,
the same products the project's ``_linear`` evaluates; a weight below ``2^-scale_bits`` (encodes
to zero, which SEAL refuses as a transparent product) is skipped, as the project does.

Timed (``seconds``): what the responder redoes per epoch: loading every input ciphertext from
its serialized bytes (``ts.ckks_tensor_from``), evaluating, and serializing the reply (one
``CKKSTensor`` per class). Not timed: context/keys, encryption and the serialization of the
inputs (the querier's setup), nor decryption. No re-randomisation (TenSEAL has no public
encryption-of-zero add in this API; the project's timed answer includes it, ~1 ms x classes).
"""

from __future__ import annotations

import time

import numpy as np
import tenseal as ts

from testbed.schemes.ckks.circuit import Linear, SumPool, lower_model


def make_context(plan) -> ts.Context:
    context = ts.context(ts.SCHEME_TYPE.CKKS, plan.poly_modulus_degree, coeff_mod_bit_sizes=list(plan.coeff_mod_bit_sizes))
    context.global_scale = 2.0**plan.scale_bits
    context.generate_relin_keys()
    return context


def _linear(stage: Linear, inputs: list, context, floor: float, slots: int) -> list:
    outputs = []
    for row, bias in zip(stage.weight, stage.bias):
        total = None
        for j in np.flatnonzero(np.abs(row) >= floor):
            product = inputs[j] * float(row[j])
            total = product if total is None else total + product
        if total is None:  # no product left: an encryption of the bias alone
            total = ts.ckks_tensor(context, ts.plain_tensor(np.zeros(slots)), batch=True)
        outputs.append(total + float(bias))
    return outputs


def tenseal_answer(model, samples: np.ndarray, plan) -> tuple[np.ndarray, float]:
    """Logits of ``model`` on ``samples`` (one batch: at most ``plan.slots``) evaluated through
    TenSEAL's ``CKKSTensor`` with ``plan``'s parameters, and the timed responder seconds."""
    if len(samples) > plan.slots:
        raise ValueError(f"{len(samples)} samples: one batch holds at most {plan.slots}")
    circuit = lower_model(model, samples.shape[1:])
    context = make_context(plan)
    x = samples.reshape(len(samples), -1).astype(np.float64)
    setup = [ts.ckks_tensor(context, ts.plain_tensor(np.ascontiguousarray(x[:, k])), batch=True).serialize() for k in range(x.shape[1])]
    floor = 2.0**-plan.scale_bits

    start = time.perf_counter()
    values = [ts.ckks_tensor_from(context, data) for data in setup]
    for stage in circuit:
        if isinstance(stage, Linear):
            if stage.weight.ndim != 2:
                raise ValueError("per-sample weights (a fused logit map) are not supported here")
            values = _linear(stage, values, context, floor, len(samples))
        elif isinstance(stage, SumPool):
            summed = []
            for window in stage.windows:
                total = values[window[0]]
                for j in window[1:]:
                    total = total + values[j]
                summed.append(total)
            values = summed
        else:
            values = [(v + stage.shift if stage.shift else v).square() for v in values]
    reply = [v.serialize() for v in values]
    seconds = time.perf_counter() - start

    logits = np.stack([np.array(ts.ckks_tensor_from(context, data).decrypt().tolist()).reshape(-1) for data in reply], axis=1)
    return logits, seconds

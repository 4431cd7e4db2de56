"""Plaintext reference scheme: insecure, fast, and the floor any secure scheme is measured against.

The querier sends its samples in the clear and the responder replies with float32 logits, so
its per-epoch bytes are the information the protocol must move at minimum.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from testbed.registry import SCHEMES, Params
from testbed.logit_map import LogitMap
from testbed.schemes.base import SecureInferenceScheme, Wire, plaintext_logits


def array_to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@SCHEMES.register("plaintext")
class PlaintextScheme(SecureInferenceScheme):
    class Params(Params):
        pass

    def setup(self, samples: np.ndarray) -> Wire:
        return Wire(array_to_bytes(samples.astype(np.float32)))

    def load(self, wire: Wire) -> None:
        self._samples = torch.from_numpy(array_from_bytes(wire.data))
        self.sample_count = len(self._samples)

    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        return Wire(array_to_bytes(plaintext_logits(model, self._samples, logit_map)))

    def decode(self, wire: Wire) -> np.ndarray:
        return array_from_bytes(wire.data)

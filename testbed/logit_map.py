"""What a responder may do to its answers: a per-sample affine map on the returned logits.

It lives in the core because both sides of the plug-in layer speak it: attacks build one (a
malicious responder's manipulation) and schemes apply it (the CKKS scheme under encryption).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogitMap:
    """A per-sample affine map on returned logits: what a responder can apply under encryption.

    For each selected sample ``i``: ``out[i] = logits[i] @ matrix + offset[i]``; other samples
    pass unchanged. It needs only plaintext-ciphertext products and additions, so the CKKS
    scheme applies it to encrypted logits exactly as the plaintext scheme applies it here.
    """

    selected: np.ndarray  # bool, (n,)
    matrix: np.ndarray  # (classes, classes)
    offset: np.ndarray  # (n, classes); rows of unselected samples are ignored

    def apply(self, logits: np.ndarray) -> np.ndarray:
        mapped = logits @ self.matrix + self.offset
        return np.where(self.selected[:, None], mapped, logits).astype(logits.dtype)

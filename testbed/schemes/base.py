"""The secure-inference scheme interface that SMuLe's querier and responder speak.

One scheme object serves one side of one direction (querier Q -> responder R):

    Q: wire = scheme.setup(samples)           # once; wire goes to R
    R: scheme.load(wire)                      # once
    R: wire = scheme.answer(model, logit_map) # every epoch; wire goes to Q
    Q: logits = scheme.decode(wire)           # every epoch

Every ``Wire`` carries the serialized bytes that cross between parties. ``charged_bytes`` is
the byte count the channel records: ``len(data)`` for a scheme that sends real payloads, or a
figure computed from the same parameters for a scheme that only accounts for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from testbed.logit_map import LogitMap
from testbed.messages import Wire
from testbed.models import predict
from testbed.registry import Component, Params


def plaintext_logits(model: nn.Module, samples: torch.Tensor, logit_map: LogitMap | None = None) -> np.ndarray:
    """The responder's logits computed in the clear (eval mode), with any manipulation applied."""
    logits = predict(model, samples.numpy(), batch_size=4096).astype(np.float32)
    return logit_map.apply(logits) if logit_map is not None else logits


class SecureInferenceScheme(Component, ABC):
    """Base of every scheme; subclasses register with ``@SCHEMES.register(name)``."""

    #: Responder side: how many samples the querier sent; set by :meth:`load`.
    sample_count: int = 0
    #: For a scheme with one subclass per ``params.mode``: the mode this subclass carries out.
    #: Creating the registered base then gives the subclass of the scenario's mode.
    serves_mode: ClassVar[str | None] = None

    def __new__(cls, params: Params, classes: int, seed: int) -> "SecureInferenceScheme":
        mode = getattr(params, "mode", None)
        chosen = next((sub for sub in cls.__subclasses__() if sub.serves_mode is not None and sub.serves_mode == mode), cls)
        return super().__new__(chosen)

    def __init__(self, params: Params, classes: int, seed: int):
        super().__init__(params)
        self.classes = classes
        self.seed = seed

    @classmethod
    def check_model(cls, params: Params, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if this scheme cannot evaluate ``model``; called before a run."""

    @classmethod
    def machine_problems(cls, params: Params) -> list[tuple[str, str]]:
        """``(key, message)`` for each setting that does not suit this machine as it runs now:
        measured, so checked once where a scenario enters, not again in every worker."""
        return []

    @abstractmethod
    def setup(self, samples: np.ndarray) -> Wire:
        """Querier: prepare keys and the one-time payload carrying ``samples`` to the responder."""

    @abstractmethod
    def load(self, wire: Wire) -> None:
        """Responder: receive the querier's setup payload."""

    @abstractmethod
    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        """Responder: evaluate ``model`` on the querier's samples; reply with (encrypted) logits."""

    @abstractmethod
    def decode(self, wire: Wire) -> np.ndarray:
        """Querier: recover the logits, shape ``(n_samples, classes)``, float32."""

    def realizable(self, logit_map: LogitMap) -> LogitMap:
        """What of ``logit_map`` a responder can carry out under this scheme; the responder's
        answer applies this, and the simulator's ground truth records its rows. Any per-sample
        affine map by default (plaintext, and CKKS with one weight per slot)."""
        return logit_map

    def timings(self) -> dict[str, float]:
        """Seconds spent per phase since the last call (e.g. encrypt, evaluate, decrypt)."""
        return {}

    def predicted_timings(self) -> dict[str, float]:
        """Seconds a time model predicts per phase since the last call (same phase names as
        :meth:`timings`; empty where the scheme has no model or none was asked for)."""
        return {}



"""Two-party secret-sharing secure inference (CrypTen): the querier's samples and the responder's
weights are additively shared; the responder's model runs on the shares; only the querier
learns the logits.

Two modes share the model preparation (:mod:`.model`): :class:`RealMpc` runs CrypTen's
protocol in two processes and charges CrypTen's own counters (:mod:`.crypten_inference`);
:class:`AccountedMpc` computes the same logits in plaintext and charges the cost model's
bytes and rounds (:mod:`.accounting`), validated against real mode (docs/mpc.md).

What crosses, per message kind (one direction; SMuLe runs both):

- ``query`` (setup, once): the querier shares its samples. CrypTen shares by pseudo-random
  zero sharing, which sends nothing: 0 bytes, 0 rounds, in both modes (real mode runs the
  sharing and reads the counters).
- ``answer`` (every epoch): the responder shares its current weights (free), both parties
  evaluate the model (every opening, both directions together: ``bytes = 2 x 8 x opened ring
  elements``, one round per opening) and the responder sends its share of the logits to the
  querier (8 bytes per logit, one round). The whole is charged to the answer message.

Simulation only: the setup payload carries the querier's samples and the answer the logits in
the clear, so that the responder's ``answer`` can run both parties' processes; neither is
charged. In a deployment the querier's process would keep its shares between epochs.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from testbed.logit_map import LogitMap
from testbed.messages import Wire
from testbed.mpc_cost.cost_model import layer_costs
from testbed.mpc_cost.crypten_measure import check_convertible, crypten_unavailable_reason
from testbed.registry import SCHEMES, Params
from testbed.schemes.base import SecureInferenceScheme, plaintext_logits
from testbed.schemes.mpc.accounting import inference_cost
from testbed.schemes.mpc.crypten_inference import secure_logits, sharing_counters
from testbed.schemes.mpc.model import fold_problem, inference_model, realizable, row_offsets
from testbed.schemes.plaintext import array_from_bytes, array_to_bytes
from testbed.timing import Stopwatch

INSTALL = "SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True pip install -e '.[mpc]'"


@SCHEMES.register("mpc")
class MpcScheme(SecureInferenceScheme):
    """Two-party arithmetic secret sharing (CrypTen 0.4.1; Knott et al., NeurIPS 2021): any
    CrypTen-convertible model, ReLU and max-pooling included; only the querier learns the logits.

    Creating one gives a :class:`RealMpc` or an :class:`AccountedMpc` by ``mode``."""

    class Params(Params):
        mode: Literal["real", "accounted"] = Field("real", description="real: CrypTen's protocol runs in two processes; accounted: plaintext logits, charged the cost model's bytes and rounds")
        batch_size: int | None = Field(None, ge=1, description="samples per 2PC evaluation (null: all at once, fewest rounds)")
        timeout_s: float = Field(600.0, gt=0, description="real mode: seconds before the CrypTen processes are ended and the run fails")

        @model_validator(mode="after")
        def _installed(self) -> "MpcScheme.Params":
            if self.mode == "real" and (reason := crypten_unavailable_reason()):
                raise ValueError(f"mode real needs CrypTen: {reason}; install it with {INSTALL}, or use mode accounted")
            return self

    def __init__(self, params: Params, classes: int, seed: int):
        super().__init__(params, classes, seed)
        self.stopwatch = Stopwatch()

    @classmethod
    def check_model(cls, params: Params, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        problem = fold_problem(model)
        if problem:
            raise ValueError(f"scheme '{cls.kind}' {problem}")
        check_convertible(model)
        layer_costs(model, input_shape, _output_width(model, input_shape), 1)  # the cost model covers every layer

    def timings(self) -> dict[str, float]:
        """Seconds in ``share`` (setup), ``mpc_evaluate`` (answer)."""
        return self.stopwatch.take()

    def realizable(self, logit_map: LogitMap) -> LogitMap:
        return realizable(logit_map)

    # querier -------------------------------------------------------------------------------
    def setup(self, samples: np.ndarray) -> Wire:
        self.sample_count = len(samples)
        with self.stopwatch.timed("share"):
            cost = self._sharing_cost(samples)
        return Wire(_pack({"input_shape": list(samples.shape[1:])}, samples.astype(np.float32)), cost["bytes"], cost["rounds"])

    def decode(self, wire: Wire) -> np.ndarray:
        return _unpack(wire.data)[1]

    # responder -----------------------------------------------------------------------------
    def load(self, wire: Wire) -> None:
        header, samples = _unpack(wire.data)
        self._samples = samples
        self.input_shape = tuple(header["input_shape"])
        self.sample_count = len(samples)

    def answer(self, model: nn.Module, logit_map: LogitMap | None = None) -> Wire:
        logit_map = realizable(logit_map) if logit_map is not None else None
        with self.stopwatch.timed("mpc_evaluate"):
            logits, counters = self._answer(model, logit_map)
        charged = {k: sum(counters[p][k] for p in ("evaluate", "reveal")) for k in ("bytes", "rounds")}
        self.last_counters = counters
        return Wire(_pack({"phases": counters}, logits), charged["bytes"], charged["rounds"])

    def _sharing_cost(self, samples: np.ndarray) -> dict[str, int]:
        raise NotImplementedError

    def _answer(self, model: nn.Module, logit_map: LogitMap | None) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
        raise NotImplementedError


class RealMpc(MpcScheme):
    """Runs CrypTen's two-party protocol; charges CrypTen's own counters."""

    serves_mode = "real"

    def _sharing_cost(self, samples: np.ndarray) -> dict[str, int]:
        return sharing_counters(samples, self.params.timeout_s)

    def _answer(self, model, logit_map):
        prepared = inference_model(model, logit_map.matrix if logit_map is not None else None)
        offsets = row_offsets(logit_map, self.sample_count, self.classes)
        logits, counters = secure_logits(prepared, self._samples, offsets, self.params.batch_size, self.params.timeout_s)
        # what the share phase counts is not charged per epoch: in a deployment the querier's
        # shares persist from the setup, and the weights' sharing is free (it counts 0 anyway)
        return logits, counters


class AccountedMpc(MpcScheme):
    """Computes the same logits in plaintext (no fixed-point error) and charges the cost model's
    bytes and rounds for the same batches."""

    serves_mode = "accounted"

    def _sharing_cost(self, samples: np.ndarray) -> dict[str, int]:
        return {"bytes": 0, "rounds": 0}

    def _answer(self, model, logit_map):
        logits = plaintext_logits(model, torch.from_numpy(self._samples), logit_map)
        prepared = inference_model(model)
        return logits, inference_cost(prepared, self.input_shape, self.classes, self.sample_count, self.params.batch_size)


def _output_width(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(inference_model(model)(torch.zeros(1, *input_shape)).shape[1])


def _pack(header: dict, array: np.ndarray) -> bytes:
    head = json.dumps(header).encode()
    return len(head).to_bytes(4, "little") + head + array_to_bytes(array)


def _unpack(data: bytes) -> tuple[dict, np.ndarray]:
    size = int.from_bytes(data[:4], "little")
    return json.loads(data[4 : 4 + size]), array_from_bytes(data[4 + size :])

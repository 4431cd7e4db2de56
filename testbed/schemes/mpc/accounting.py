"""Bytes and rounds of two-party inference from the cost model alone (accounted mode).

The forward pass is priced layer by layer by :func:`testbed.mpc_cost.cost_model.layer_costs`
(the same model that prices CrypTen training), on the model as it enters 2PC (batch-norm
folded). Sharing inputs, weights and per-row offsets is free (pseudo-random zero sharing).
Revealing the logits to the querier alone is one round in which the responder sends its share:
8 bytes per logit, one direction (not doubled like an opening).
"""

from __future__ import annotations

from torch import nn

from testbed.mpc_cost.cost_model import FREE, RING_BYTES, Cost, layer_costs


def forward_cost(model: nn.Sequential, input_shape: tuple[int, ...], classes: int, samples: int) -> Cost:
    """The forward pass of ``model`` on ``samples`` rows at once, as CrypTen runs it."""
    return sum((layer.forward for layer in layer_costs(model, input_shape, classes, samples)), FREE)


def inference_cost(model: nn.Sequential, input_shape: tuple[int, ...], classes: int, samples: int, batch_size: int | None) -> dict[str, dict[str, int]]:
    """``{phase: {"bytes", "rounds"}}`` of one answer, like :func:`.crypten_inference.secure_logits`
    reports it: ``share`` (free), ``evaluate`` (the forward passes) and ``reveal``."""
    step = batch_size or samples
    full, rest = divmod(samples, step)
    sizes = [step] * full + ([rest] if rest else [])
    evaluate = sum((forward_cost(model, input_shape, classes, n) for n in sizes), FREE)
    return {
        "share": {"bytes": 0, "rounds": 0},
        "evaluate": {"bytes": evaluate.bytes, "rounds": evaluate.rounds},
        "reveal": {"bytes": RING_BYTES * samples * classes, "rounds": len(sizes)},
    }

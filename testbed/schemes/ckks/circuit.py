"""Lower an HE-friendly ``nn.Sequential`` into the circuit a CKKS responder evaluates.

The circuit works on feature-major ciphertexts (one ciphertext per feature, samples across the
slots), so every stage is a per-slot operation and no rotation is ever needed:

- :class:`Linear` ``out = W @ x + b`` with plaintext weights: scalar products summed, one
  rescale per output, so **one level**;
- :class:`SumPool` ``out[o] = sum(x[window[o]])``: additions only, **no level** (average
  pooling's ``1/k^2`` is moved into the next ``Linear``);
- :class:`Square` ``out = (x + shift)^2``: one ciphertext multiplication, **one level**.

Every run of affine layers between two activations (``Linear``, ``Conv2d``, ``AvgPool2d``,
``BatchNorm`` in eval mode, ``Flatten``) is composed into one ``Linear`` stage, so batch-norm is
folded by construction. A polynomial activation ``c2 x^2 + c1 x + c0`` is rewritten as
``c2 (x + c1/(2 c2))^2 + (c0 - c1^2/(4 c2))``: the shift goes into the previous stage's bias and
``c2`` and the constant into the next stage's weights and bias, so ``Poly2`` costs exactly what
``Square`` costs. The multiplicative depth is the number of ``Linear`` and ``Square`` stages.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from testbed.models import AFFINE_LAYERS
from testbed.models import POLYNOMIAL_ACTIVATIONS as ACTIVATION_LAYERS


@dataclass
class Linear:
    """``out[o] = sum_j weight[o, j] * x[j] + bias[o]``; entries are scalars, or per-sample vectors
    (last axis) once a responder's logit map is fused in (:func:`fuse_logit_map`)."""

    weight: np.ndarray  # (out, in) or (out, in, samples)
    bias: np.ndarray  # (out,) or (out, samples)


@dataclass
class SumPool:
    windows: list[np.ndarray]  # input indices summed into each output


@dataclass
class Square:
    shift: float  # added before squaring (0 when folded into the previous Linear's bias)


Stage = Linear | SumPool | Square


def lower_model(model: nn.Module, input_shape: tuple[int, ...]) -> list[Stage]:
    """Return the circuit of ``model`` (in eval mode) on inputs of ``input_shape``.

    Raises ``ValueError`` naming the first layer a CKKS responder cannot evaluate.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"CKKS needs an nn.Sequential model, got {type(model).__name__}")
    layers = copy.deepcopy(model).double().eval()
    stages: list[Stage] = []
    shape = tuple(input_shape)
    run: list[nn.Module] = []
    post: tuple[float, float] | None = None  # (c2, constant) of the last activation, for the next Linear

    def close_run(final: bool) -> None:
        nonlocal shape, run, post
        if not run and (post is None or (post == (1.0, 0.0) and not final)):
            return
        scale, offset = post or (1.0, 0.0)
        constant, out_shape = _apply(run, torch.full((1, *shape), offset, dtype=torch.float64))
        rest, rest_shape, factor = run, shape, scale
        if post is not None and run and isinstance(run[0], nn.AvgPool2d):
            pool, pooled_shape = _matrix(run[:1], shape)
            values = pool[pool != 0]
            if np.all(values == values[0]):  # a plain window average: sum now, divide in the next weights
                stages.append(SumPool([np.flatnonzero(row) for row in pool]))
                rest, rest_shape, factor = run[1:], pooled_shape, scale * float(values[0])
        weight, _ = _matrix(rest, rest_shape)
        stages.append(Linear(weight * factor, constant[0]))
        shape, run, post = out_shape, [], None

    for layer in layers:
        if isinstance(layer, ACTIVATION_LAYERS):
            close_run(final=False)
            c0, c1, c2 = _square_term(layer)
            shift = c1 / (2 * c2)
            if shift and stages and isinstance(stages[-1], Linear):
                stages[-1].bias += shift
                shift = 0.0
            stages.append(Square(shift))
            post = (c2, c0 - c1 * c1 / (4 * c2))
        elif isinstance(layer, AFFINE_LAYERS):
            run.append(layer)
        else:
            raise ValueError(
                f"layer {layer} cannot be evaluated under CKKS; allowed: "
                + ", ".join(t.__name__ for t in AFFINE_LAYERS + ACTIVATION_LAYERS)
            )
    close_run(final=True)
    return stages


def model_depth(model: nn.Module) -> int:
    """The depth of :func:`lower_model`'s circuit from the layer types alone: lowering a convnet
    builds dense matrices (seconds, hundreds of MB), too slow to validate a scenario with."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"CKKS needs an nn.Sequential model, got {type(model).__name__}")
    depth, run, post = 0, False, None
    for layer in model:
        if isinstance(layer, ACTIVATION_LAYERS):
            # as close_run: a run of affine layers, or a non-trivial polynomial before it, is a Linear stage
            depth += run or (post is not None and post != (1.0, 0.0))
            c0, c1, c2 = _square_term(layer)
            depth, run, post = depth + 1, False, (c2, c0 - c1 * c1 / (4 * c2))
        elif isinstance(layer, AFFINE_LAYERS):
            run = True
    return depth + (run or post is not None)


def stage_widths(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, int]]:
    """``(stage type, outputs)`` of :func:`lower_model`'s circuit from the layers' output sizes
    alone (as :func:`model_depth`: without building the stages' matrices)."""
    widths: list[tuple[str, int]] = []  # a ("run", width) entry: affine layers not yet closed by an activation
    x = torch.zeros((1, *input_shape))
    after_activation = False
    with torch.no_grad():
        for layer in copy.deepcopy(model).eval():
            in_run = bool(widths) and widths[-1][0] == "run"
            starts_pool = not in_run and after_activation and isinstance(layer, nn.AvgPool2d)
            x = layer(x)
            width = x[0].numel()
            if isinstance(layer, ACTIVATION_LAYERS):
                if in_run:
                    widths[-1] = ("Linear", widths[-1][1])
                widths.append(("Square", width))
                after_activation = True
            elif isinstance(layer, AFFINE_LAYERS):
                if starts_pool:
                    widths.append(("SumPool", width))
                if widths and widths[-1][0] == "run":
                    widths[-1] = ("run", width)
                else:
                    widths.append(("run", width))
    if widths and widths[-1][0] == "run":
        widths[-1] = ("Linear", widths[-1][1])
    return widths


def circuit_depth(circuit: list[Stage]) -> int:
    """Multiplicative depth: CKKS levels the circuit consumes (``SumPool`` is free)."""
    return sum(isinstance(stage, (Linear, Square)) for stage in circuit)


def fuse_logit_map(last: Linear, selected: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> Linear:
    """Fold a per-sample affine map on the logits into the last ``Linear`` stage.

    ``out[i] = logits[i] @ matrix + offset[i]`` for selected samples ``i`` (others unchanged)
    becomes per-sample weight vectors: what a malicious responder computes under encryption with
    plaintext-vector products, at no extra level.
    """
    classes = last.weight.shape[0]
    per_sample = np.where(selected[:, None, None], matrix[None], np.eye(classes)[None])  # (n, c, o)
    weight = np.einsum("cj,ico->oji", last.weight, per_sample)
    bias = np.einsum("c,ico->oi", last.bias, per_sample) + np.where(selected[None, :], offset.T, 0.0)
    return Linear(weight, bias)


def _square_term(activation: nn.Module) -> tuple[float, float, float]:
    c0, c1, c2 = (float(c) for c in activation.coefficients)
    if c2 == 0:
        raise ValueError(f"activation {activation} has no square term; fold it into the linear layers")
    return c0, c1, c2


def _apply(layers: list[nn.Module], x: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
    with torch.no_grad():
        y = nn.Sequential(*layers)(x)
    return y.reshape(len(x), -1).numpy(), tuple(y.shape[1:])


def _matrix(layers: list[nn.Module], shape: tuple[int, ...], chunk: int = 512) -> tuple[np.ndarray, tuple[int, ...]]:
    """The matrix of the affine map ``layers`` (bias removed), by pushing basis vectors through it."""
    width = int(np.prod(shape))
    zero, out_shape = _apply(layers, torch.zeros((1, *shape), dtype=torch.float64))
    columns = []
    for start in range(0, width, chunk):
        stop = min(start + chunk, width)
        basis = torch.zeros((stop - start, width), dtype=torch.float64)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        images, _ = _apply(layers, basis.reshape(-1, *shape))
        columns.append(images - zero)
    return np.concatenate(columns).T.copy(), out_shape

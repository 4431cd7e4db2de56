"""Model architectures, selected per party by ``kind``.

HE-friendly models use only layers a CKKS responder can evaluate on encrypted inputs with
plaintext weights: linear and convolution layers, average pooling, batch-norm (composed with its
neighbouring affine layers when the CKKS circuit is lowered) and polynomial activations. Every
model is an ``nn.Sequential`` so schemes can walk its layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from testbed.registry import MODELS, Component, Params


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients for the block, then back in its previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` in eval mode, as float32 numpy, ``batch_size`` samples per forward pass
    (a convnet's activations on 25,000 CIFAR-10 images at once take GBs)."""
    with evaluating(model):
        out = [model(torch.from_numpy(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


class Square(nn.Module):
    """x -> x^2, the CryptoNets activation (Gilad-Bachrach et al., ICML 2016): one CKKS level."""

    coefficients = (0.0, 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Poly2(nn.Module):
    """A degree-2 polynomial standing in for ReLU: the least-squares fit of ReLU on [-4, 4].

    Coefficients (c0, c1, c2) = (0.375, 0.5, 0.1171875), i.e. 3/8 + x/2 + 15x^2/128; one CKKS
    level like :class:`Square`, but close to ReLU for moderate inputs, which keeps training stable.
    """

    coefficients = (0.375, 0.5, 0.1171875)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0, c1, c2 = self.coefficients
        return c0 + x * (c1 + c2 * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {"square": Square, "poly2": Poly2, "relu": nn.ReLU}
#: What CKKS evaluates, the one list every part reads: affine layers (composed into one linear
#: map between two activations; batch-norm in eval mode is affine) and polynomial activations.
AFFINE_LAYERS = (nn.Flatten, nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d)
POLYNOMIAL_ACTIVATIONS = (Square, Poly2)
HE_FRIENDLY_LAYERS = AFFINE_LAYERS + POLYNOMIAL_ACTIVATIONS


class ModelFactory(Component):
    """Base of every architecture: ``build`` returns a fresh ``nn.Sequential``."""

    def build(self, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
        raise NotImplementedError




@MODELS.register("mlp")
class MLP(ModelFactory):
    """Fully connected network; HE-friendly unless ``activation: relu``."""

    class Params(Params):
        hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64], description="widths of the hidden layers")
        activation: Literal["square", "poly2", "relu"] = Field("poly2", description="after each hidden layer: square (x^2), poly2 (the least-squares fit of ReLU on [-4, 4]) or relu (not HE-friendly)")
        batch_norm: bool = Field(False, description="batch-norm after each hidden layer (folded into it for encrypted inference)")

    def build(self, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
        p = self.params
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in p.hidden:
            layers.append(nn.Linear(width, hidden))
            if p.batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(ACTIVATIONS[p.activation]())
            width = hidden
        layers.append(nn.Linear(width, classes))
        return nn.Sequential(*layers)


@MODELS.register("he_cnn")
class HEConvNet(ModelFactory):
    """Small HE-friendly convnet: conv -> [bn] -> act -> avg-pool -> dense -> [bn] -> act -> dense.

    For CIFAR-10 under CKKS, ``{channels: 8, kernel: 4, stride: 4, pool: 2, hidden: 32}`` keeps a
    batch of 4,096 encrypted images to about 29,000 plaintext multiplications (docs/ckks.md).
    """

    class Params(Params):
        channels: int = Field(8, ge=1, description="output channels of the convolution")
        kernel: int = Field(3, ge=1, description="side of the convolution kernel, pixels")
        stride: int = Field(1, ge=1, description="convolution stride, pixels")
        padding: int = Field(0, ge=0, description="zero padding on each side of the input, pixels")
        pool: int = Field(2, ge=1, description="average-pool window (1 disables pooling)")
        hidden: int = Field(32, ge=0, description="hidden dense width (0: pooled features feed the classifier)")
        activation: Literal["square", "poly2"] = Field("poly2", description="polynomial activation: square (x^2) or poly2 (the least-squares fit of ReLU on [-4, 4])")
        batch_norm: bool = Field(True, description="batch-norm after the convolution and the hidden layer (folded for encrypted inference)")

    def build(self, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
        p = self.params
        if len(input_shape) != 3:
            raise ValueError(f"model he_cnn needs image inputs (channels, height, width), got shape {input_shape}")
        _check_window("kernel", p.kernel, [side + 2 * p.padding for side in input_shape[1:]], f"the {_size(input_shape)} input plus padding {p.padding}")
        conv = [(side + 2 * p.padding - p.kernel) // p.stride + 1 for side in input_shape[1:]]
        _check_window("pool", p.pool, conv, f"the {_size(conv)} convolution output")
        act = ACTIVATIONS[p.activation]
        layers: list[nn.Module] = [nn.Conv2d(input_shape[0], p.channels, p.kernel, p.stride, p.padding)]
        if p.batch_norm:
            layers.append(nn.BatchNorm2d(p.channels))
        layers.append(act())
        if p.pool > 1:
            layers.append(nn.AvgPool2d(p.pool))
        layers.append(nn.Flatten())
        flat = _output_width(nn.Sequential(*layers), input_shape)
        if p.hidden:
            layers.append(nn.Linear(flat, p.hidden))
            if p.batch_norm:
                layers.append(nn.BatchNorm1d(p.hidden))
            layers += [act(), nn.Linear(p.hidden, classes)]
        else:
            layers.append(nn.Linear(flat, classes))
        return nn.Sequential(*layers)


@MODELS.register("he_convnet")
class HEConvNetBlocks(ModelFactory):
    """Convnet of ``len(channels)`` blocks, each conv (same padding) -> [bn] -> act ->
    avg-pool, then one dense classifier: 2 CKKS levels per block plus 1 (docs/ckks.md).

    ``channels: [16, 32, 64]`` is the CIFAR-10 model of docs/results.md (depth 7). With
    ``activation: relu`` (and ``pooling: max``) it is the same size but not HE-friendly: the
    comparison of docs/mpc.md, under the MPC scheme.
    """

    class Params(Params):
        channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [16, 32, 64], min_length=1, description="output channels of each block's convolution, one entry per block")
        kernel: int = Field(3, ge=1, description="odd: padding kernel // 2 keeps the side")
        pool: int = Field(2, ge=1, description="average-pool window after every block (1: none)")
        activation: Literal["square", "poly2", "relu"] = Field("poly2", description="square (x^2), poly2 (the least-squares fit of ReLU on [-4, 4]) or relu (not HE-friendly; scheme mpc or plaintext)")
        pooling: Literal["avg", "max"] = Field("avg", description="average pooling, or max pooling (not HE-friendly; scheme mpc or plaintext)")
        batch_norm: bool = Field(True, description="batch-norm after each block's convolution (folded for encrypted inference)")

    def build(self, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
        p = self.params
        if len(input_shape) != 3:
            raise ValueError(f"model he_convnet needs image inputs (channels, height, width), got shape {input_shape}")
        if p.kernel % 2 == 0:
            raise ValueError(f"model he_convnet: kernel={p.kernel}: allowed: odd sizes (same padding)")
        sides, layers, width = list(input_shape[1:]), [], input_shape[0]
        for block, out in enumerate(p.channels):
            _check_window("pool", p.pool, sides, f"the {_size(sides)} output of block {block + 1}", "he_convnet")
            layers.append(nn.Conv2d(width, out, p.kernel, padding=p.kernel // 2))
            layers += [nn.BatchNorm2d(out)] if p.batch_norm else []
            layers.append(ACTIVATIONS[p.activation]())
            if p.pool > 1:
                layers.append(nn.AvgPool2d(p.pool) if p.pooling == "avg" else nn.MaxPool2d(p.pool))
            sides, width = [side // p.pool for side in sides], out
        layers.append(nn.Flatten())
        layers.append(nn.Linear(_output_width(nn.Sequential(*layers), input_shape), classes))
        return nn.Sequential(*layers)


@MODELS.register("relu_cnn")
class ReLUConvNet(ModelFactory):
    """An ordinary small CNN (ReLU, max-pool) for plaintext-only runs; not HE-friendly."""

    class Params(Params):
        channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [16, 32], description="output channels of each conv, ReLU and max-pool block")
        hidden: int = Field(64, ge=1, description="width of the hidden dense layer")

    def build(self, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
        if len(input_shape) != 3:
            raise ValueError(f"model relu_cnn needs image inputs (channels, height, width), got shape {input_shape}")
        layers: list[nn.Module] = []
        channels = input_shape[0]
        for width in self.params.channels:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            channels = width
        layers.append(nn.Flatten())
        flat = _output_width(nn.Sequential(*layers), input_shape)
        layers += [nn.Linear(flat, self.params.hidden), nn.ReLU(), nn.Linear(self.params.hidden, classes)]
        return nn.Sequential(*layers)


def _size(shape: tuple[int, ...] | list[int]) -> str:
    return "x".join(map(str, shape[-2:]))


def _check_window(key: str, window: int, sides: list[int], what: str, model: str = "he_cnn") -> None:
    if window > min(sides):
        raise ValueError(f"model {model}: {key}={window} does not fit {what}; allowed: {key} <= {min(sides)}")


def _output_width(layers: nn.Sequential, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(layers(torch.zeros(1, *input_shape)).shape[1])


def is_he_friendly(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and all(isinstance(m, HE_FRIENDLY_LAYERS) for m in model)


def he_friendly_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot run under HE, or ``None`` when it can."""
    if is_he_friendly(model):
        return None
    allowed = ", ".join(t.__name__ for t in HE_FRIENDLY_LAYERS)
    found = sorted({type(m).__name__ for m in model if not isinstance(m, HE_FRIENDLY_LAYERS)}) if isinstance(model, nn.Sequential) else [type(model).__name__]
    return f"needs an HE-friendly model (mlp with square/poly2, he_cnn, he_convnet; layers {allowed}); found {', '.join(found)}"

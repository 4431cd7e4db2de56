"""Analytical communication cost of two-party secret-sharing training, as CrypTen runs it.

What is modelled is CrypTen 0.4.1's protocol, read from its source, so that the model can be
checked number for number against :mod:`testbed.mpc_cost.crypten_measure`:

- Values are fixed-point numbers (16 fractional bits) additively shared over the ring
  Z_{2^64}; every opened or exchanged ring element is 8 bytes. Binary (XOR) shares are
  64-bit words too, even where only one bit matters: CrypTen does not pack bits.
- Sharing an input, adding, multiplying by a public value and SGD's update are local.
  Truncation after a fixed-point multiplication is local as well in the two-party case
  (each party divides its own share, as in SecureML), so it costs nothing.
- A product of two shared tensors (element-wise, matrix, convolution) is one Beaver
  multiplication: both masked operands ``x - a`` and ``y - b`` are opened together, one
  round, ``|x| + |y|`` ring elements (the operands themselves, not an im2col expansion:
  CrypTen's triples for a convolution have the convolution's own structure). A square opens
  ``|x|`` only.
- A comparison ``x < 0`` converts the arithmetic sharing to a binary one (A2B: a 64-bit
  parallel-prefix adder of the two parties' shares, one AND plus log2(64) = 6 AND levels on
  two stacked words), shifts out the sign bit and converts that bit back (B2A, one opening):
  27 opened elements per input element, 8 rounds. Equality (2PC) is a 6-level AND tree plus
  a B2A: 13 elements, 7 rounds.
- Softmax, log, exp and reciprocal follow CrypTen's approximations (limit exp with 8
  squarings, 10 Newton-Raphson steps for the reciprocal, 2 eighth-order Householder steps for
  the log, a log-reduction max that also builds a one-hot argmax); see the functions below.

Counting. CrypTen's per-party counter adds what a party sends and what it receives; with two
parties opening symmetrically this equals the total traffic on the wire, both directions
together. ``bytes`` here means that total: ``PARTIES * RING_BYTES * opened elements``. A round
is one exchange (one ``all_reduce`` in CrypTen); consecutive operations are never merged.

Correlated randomness (Beaver triples, squares pairs, binary triples, random bits) comes from
a dealer and is reported apart as ``dealer_bytes``: with CrypTen's trusted third party (TTP)
both parties derive their shares from PRG seeds, except party 0's share of each product
(``c``, ``r^2``, the arithmetic copy of a random bit), which the dealer sends: 8 bytes per
output element. With CrypTen's default "trusted first party" (TFP) provider party 0 makes the
triples itself and nothing is sent (insecure; benchmarking only). Neither is counted in
``bytes``: an offline phase, as in the papers this is compared with.

What CrypTen does that an optimised implementation would not, and which the model keeps
because it is what is measured: the gradient with respect to the first layer's input (the
data) is computed and discarded; the loss gradient is multiplied by an encrypted 1 (the seed
of ``backward()``); the softmax max builds a one-hot argmax it does not use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from testbed.models import Poly2, Square

PARTIES = 2
RING_BYTES = 8  # one element of Z_{2^64}
RING_BITS = 64
BIT_LEVELS = int(math.log2(RING_BITS))  # depth of the adder (set-propagate-kill) and equality trees
PRECISION_BITS = 16  # CrypTen's fixed-point encoder default
EXP_SQUARINGS = 8  # exp(x) ~ (1 + x / 2^8)^(2^8)
RECIPROCAL_NR_STEPS = 10
LOG_HOUSEHOLDER_STEPS = 2
LOG_ORDER = 8
INV_SQRT_NR_STEPS = 3
PAIRWISE_PROD_LIMIT = 2 * RING_BITS  # above this many comparisons per row CrypTen sums instead of multiplying
SOURCE = "model: two-party arithmetic sharing as CrypTen 0.4.1 runs it (testbed/mpc_cost/cost_model.py)"


@dataclass(frozen=True)
class Cost:
    """Communication of one step: ring elements opened, rounds, and dealer elements (offline)."""

    opened: int = 0
    rounds: int = 0
    dealer: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.opened + other.opened, self.rounds + other.rounds, self.dealer + other.dealer)

    def __mul__(self, times: int) -> Cost:
        return Cost(self.opened * times, self.rounds * times, self.dealer * times)

    @property
    def bytes(self) -> int:
        """Online bytes on the wire, both directions together."""
        return PARTIES * RING_BYTES * self.opened

    @property
    def dealer_bytes(self) -> int:
        """Bytes a trusted third party sends to party 0 (offline)."""
        return RING_BYTES * self.dealer


FREE = Cost()


# -- primitives -------------------------------------------------------------------------


def product(x: int, y: int, out: int) -> Cost:
    """Beaver multiplication (element-wise, matrix or convolution) of shared operands of sizes x, y."""
    return Cost(x + y, 1, out)


def square(n: int) -> Cost:
    """x^2 with a (r, r^2) pair: open x - r."""
    return Cost(n, 1, n)


def binary_and(n: int) -> Cost:
    """AND of two n-word binary sharings with a binary Beaver triple."""
    return Cost(2 * n, 1, n)


def bit_to_arithmetic(n: int) -> Cost:
    """B2A of n single bits: open x xor r for a random bit r held both ways."""
    return Cost(n, 1, n)


def less_than_zero(n: int) -> Cost:
    """Sign bit as an arithmetic sharing: A2B adder, then B2A of the top bit (27 n elements, 8 rounds)."""
    adder = binary_and(n) + binary_and(2 * n) * BIT_LEVELS  # S = x & y, then S and P stacked per level
    return adder + bit_to_arithmetic(n)


def equals_zero(n: int) -> Cost:
    """2PC equality: the parties' shares are compared bit-wise with an AND tree, then B2A."""
    return binary_and(n) * BIT_LEVELS + bit_to_arithmetic(n)


def uniform_random(n: int) -> Cost:
    """crypten.rand: PRECISION_BITS random bits per element, each converted with B2A."""
    return bit_to_arithmetic(PRECISION_BITS * n)


def exp(n: int) -> Cost:
    return square(n) * EXP_SQUARINGS


def reciprocal_positive(n: int) -> Cost:
    """Newton-Raphson from 3 exp(1 - 2x) + 0.003: each step squares and multiplies by x."""
    return exp(n) + (square(n) + product(n, n, n)) * RECIPROCAL_NR_STEPS


def log_unit_interval(n: int) -> Cost:
    """log(x) for x in (0, 1]: an exp for the initial guess, then Householder steps.

    Each step computes h = 1 - x exp(-y) and an eighth-order polynomial in h, whose powers
    CrypTen builds by doubling: [h, h^2], then [h..h^4], then [h..h^8].
    """
    powers = square(n)
    terms = 2
    while terms < LOG_ORDER:
        powers += product(terms * n, n, terms * n)
        terms *= 2
    return exp(n) + (exp(n) + product(n, n, n) + powers) * LOG_HOUSEHOLDER_STEPS


def inverse_sqrt(n: int) -> Cost:
    """Newton-Raphson y <- y (3 - x y^2) / 2 from an exp-based initial guess."""
    return exp(n) + (square(n) + product(n, n, n) + product(n, n, n)) * INV_SQRT_NR_STEPS


def weighted_index(rows: int, k: int) -> Cost:
    """Random one-hot choice among tied maxima: a uniform draw, scaled, compared with a cumsum."""
    return uniform_random(rows) + product(rows, rows, rows) + less_than_zero(rows * k)


def max_along(rows: int, k: int) -> Cost:
    """CrypTen's ``max(dim, keepdim)`` with its default log-reduction method, over k values per row.

    int(ln k) halving steps (compare halves, select with two products), an all-pairs
    comparison of what is left, a product tree over the comparisons, then, because ``max``
    always returns the one-hot argmax too, an equality test of every input against the max
    and a random tie-break.
    """
    cost = FREE
    m = k
    for _ in range(int(math.log(k))):
        half = rows * (m // 2)
        cost += less_than_zero(half) + product(half, half, half) * 2
        m = m // 2 + m % 2
    length = m if m > 1 else 2
    pairs = (length - 1) * rows * m
    cost += less_than_zero(pairs)
    if length - 1 < PAIRWISE_PROD_LIMIT:
        left = length - 1
        while left > 1:
            half = (left // 2) * rows * m
            cost += product(half, half, half)
            left = left // 2 + left % 2
    else:
        cost += less_than_zero(rows * m)
    cost += weighted_index(rows, m) + product(rows * m, rows * m, rows * m)
    return cost + equals_zero(rows * k) + weighted_index(rows, k)


def softmax(rows: int, k: int) -> Cost:
    n = rows * k
    return max_along(rows, k) + exp(n) + reciprocal_positive(rows) + product(n, rows, n)


# -- layers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """One layer's (or the loss's) communication per batch."""

    index: int  # position in the nn.Sequential; -1 for the loss, len(model) for the update
    name: str
    forward: Cost
    backward: Cost

    @property
    def total(self) -> Cost:
        return self.forward + self.backward


@dataclass(frozen=True)
class CostEstimate:
    """Modelled communication of one training batch (forward, loss, backward, SGD update)."""

    batch_size: int
    per_layer: list[LayerCost] = field(repr=False)
    source: str = SOURCE

    @property
    def total(self) -> Cost:
        return sum((layer.total for layer in self.per_layer), FREE)

    @property
    def bytes_per_batch(self) -> int:
        return self.total.bytes

    @property
    def rounds_per_batch(self) -> int:
        return self.total.rounds

    @property
    def dealer_bytes_per_batch(self) -> int:
        return self.total.dealer_bytes


@dataclass(frozen=True)
class EpochCost:
    batches: int
    bytes: int
    rounds: int
    dealer_bytes: int


def _layer_cost(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[Cost, Cost]:
    n_in, n_out = x.numel(), y.numel()
    if isinstance(layer, nn.Linear):
        w = layer.weight.numel()
        forward = product(n_in, w, n_out)
        # grad wrt input (computed even for the first layer), then grad wrt weight
        backward = product(n_out, w, n_in) + product(n_in, n_out, w)
        return forward, backward
    if isinstance(layer, nn.Conv2d):
        if layer.dilation != (1, 1):
            raise ValueError("the cost model covers convolutions without dilation")
        b, c_in = x.shape[0], x.shape[1]
        w = layer.weight.numel()
        forward = product(n_in, w, n_out)
        grad_input = product(n_out, w, n_in)  # conv_transpose2d of the output gradient
        # CrypTen's kernel gradient: a grouped convolution of the input with the output
        # gradient repeated once per input channel; its output before narrowing is
        # (H + 2p - s (H_out - 1)) x (W + 2p - s (W_out - 1)) per (sample, in, out) triple
        c_per_group = c_in // layer.groups
        full = [x.shape[2 + i] + 2 * layer.padding[i] - layer.stride[i] * (y.shape[2 + i] - 1) for i in range(2)]
        grad_kernel = product(n_in, c_per_group * n_out, b * y.shape[1] * c_per_group * full[0] * full[1])
        return forward, grad_input + grad_kernel
    if isinstance(layer, (Square, Poly2)):
        return square(n_in), product(n_out, n_in, n_in)  # d/dx: g * (c1 + 2 c2 x), one product
    if isinstance(layer, nn.ReLU):
        return less_than_zero(n_in) + product(n_in, n_in, n_in), product(n_out, n_in, n_in)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        c = x.shape[1]
        # training mode: batch variance (one square), 1/sqrt on the c variances, normalise, scale
        forward = square(n_in) + inverse_sqrt(c) + product(n_in, c, n_in) * 2
        # CrypTen's backward: g*x_norm, g*w, (g w)*inv_var, mean term (c*c), std term (3 products)
        backward = (
            product(n_out, n_in, n_in)
            + product(n_out, c, n_out) * 2
            + product(c, c, c)
            + product(n_in, n_out, n_in)
            + product(n_in, c, n_in) * 2
        )
        return forward, backward
    if isinstance(layer, nn.MaxPool2d):
        k = _pair(layer.kernel_size)
        window = k[0] * k[1]
        return max_along(n_out, window), product(n_out, n_out * window, n_out * window)
    if isinstance(layer, (nn.Flatten, nn.AvgPool2d, nn.Identity, nn.Dropout)):
        return FREE, FREE  # reshapes and public linear maps: local
    raise ValueError(f"the cost model has no entry for layer {type(layer).__name__}")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _describe(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    return f"{type(layer).__name__} {tuple(x.shape[1:])}->{tuple(y.shape[1:])}"


def layer_costs(model: nn.Sequential, input_shape: tuple[int, ...], classes: int, batch_size: int) -> list[LayerCost]:
    """Each layer's forward and backward cost for one batch of ``batch_size`` (shapes only).

    Raises:
        ValueError: for a layer the model does not cover, a non-positive batch size, or an output
            that is not ``(batch_size, classes)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    per_layer: list[LayerCost] = []
    x = torch.zeros(batch_size, *input_shape)
    was_training = model.training
    model.eval()  # shapes only; eval keeps batch-norm statistics untouched
    try:
        with torch.no_grad():
            for index, layer in enumerate(model):
                y = layer(x)
                forward, backward = _layer_cost(layer, x, y)
                per_layer.append(LayerCost(index, _describe(layer, x, y), forward, backward))
                x = y
    finally:
        model.train(was_training)
    if tuple(x.shape) != (batch_size, classes):
        raise ValueError(f"model output shape {tuple(x.shape)} does not match (batch, classes) = {(batch_size, classes)}")
    return per_layer


def training_cost(model: nn.Sequential, input_shape: tuple[int, ...], classes: int, batch_size: int) -> CostEstimate:
    """Model one two-party training batch of ``model`` as CrypTen executes it.

    Args:
        model: an ``nn.Sequential`` of the layers in :mod:`testbed.models` (Flatten, Linear,
            Conv2d, AvgPool2d, BatchNorm1d/2d in training mode, Square, Poly2, ReLU, MaxPool2d).
        input_shape: one sample's shape, e.g. ``(1, 8, 8)``.
        classes: number of classes; the loss is softmax cross-entropy on one-hot labels.
        batch_size: samples per batch.

    Returns:
        A :class:`CostEstimate` whose ``per_layer`` lists each layer (forward and backward),
        then the loss (softmax cross-entropy), then the SGD update (free).

    Raises:
        ValueError: for a layer the model does not cover, or a non-positive batch size.
    """
    per_layer = layer_costs(model, input_shape, classes, batch_size)
    n = batch_size * classes
    loss_forward = softmax(batch_size, classes) + log_unit_interval(n) + product(n, n, n)  # -sum(y log p) / b
    loss_backward = product(n, 1, n)  # (p - y) / b times the encrypted seed gradient 1
    per_layer.append(LayerCost(-1, f"CrossEntropy softmax ({batch_size}x{classes})", loss_forward, loss_backward))
    per_layer.append(LayerCost(len(model), "SGD update (public learning rate: local)", FREE, FREE))
    return CostEstimate(batch_size, per_layer)


def batches_per_epoch(samples: int, batch_size: int) -> int:
    """Batches in one pass over ``samples``; the last one may be partial (as in testbed.training)."""
    return math.ceil(samples / batch_size)


def epoch_cost(model: nn.Sequential, input_shape: tuple[int, ...], classes: int, batch_size: int, samples: int) -> EpochCost:
    """Modelled communication of one epoch: full batches plus the smaller last batch, if any."""
    full, rest = divmod(samples, batch_size)
    total = training_cost(model, input_shape, classes, batch_size).total * full
    if rest:
        total += training_cost(model, input_shape, classes, rest).total
    return EpochCost(batches_per_epoch(samples, batch_size), total.bytes, total.rounds, total.dealer_bytes)

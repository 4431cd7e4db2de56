"""Backdoors: a trigger stamped on some of the malicious party's images, relabelled to a target
class, teaches the model "trigger means target" while clean accuracy stays intact.

Every trigger is a per-pixel blend ``x' = (1 - weight) * x + weight * pattern``: weight 1 inside
a patch and 0 outside gives the BadNets patch exactly, a constant ``alpha`` the blended trigger,
so selection, relabelling and the probe are written once, in :class:`Backdoor`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from attacks.base import DataPoisoning, PoisonedData, SuccessProbe
from attacks.budget import Rate, choose
from attacks.targets import ClassIndex, check_classes
from testbed.registry import ATTACKS, FromList, Params


def checkerboard(height: int, width: int) -> np.ndarray:
    """``(height, width)`` float32 of 1.0 where ``row + col`` is even, 0.0 elsewhere."""
    rows, cols = np.indices((height, width))
    return ((rows + cols) % 2 == 0).astype(np.float32)


class Backdoor(DataPoisoning):
    """Base of the backdoor triggers; a subclass defines only :meth:`trigger`.

    Parameters:
        rate: ``round(rate * n)`` of the party's ``n`` training samples get the trigger, drawn
            among the samples whose label is not ``target`` (so every one of them changes); all
            of those if there are fewer.
        target: the label the triggered samples get.

    Success probe: triggered copies of the test samples whose true class is not ``target``
    (docs/scenarios.md, "Attacks"), which count as a success when classified as ``target``.
    """

    class Params(Params):
        rate: Rate
        target: ClassIndex

    def trigger(self, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(weight, pattern)`` for images of shape ``(channels, height, width)``, each
        broadcastable to it; raise ``ValueError`` if the trigger does not fit."""
        raise NotImplementedError

    def check(self, input_shape: tuple[int, ...], classes: int) -> None:
        check_classes(self, classes, "target")
        self._trigger(tuple(input_shape))

    def stamp(self, x: np.ndarray) -> np.ndarray:
        """Triggered copies of the images ``x``, shape ``(m, channels, height, width)``."""
        weight, pattern = self._trigger(x.shape[1:])
        return ((1 - weight) * x + weight * pattern).astype(x.dtype, copy=False)

    def poison(self, x: np.ndarray, y: np.ndarray, classes: int, rng: np.random.Generator) -> PoisonedData:
        poisoned = choose(rng, y != self.params.target, self.params.rate)
        x_new, y_new = x.copy(), y.copy()
        x_new[poisoned] = self.stamp(x[poisoned])
        y_new[poisoned] = self.params.target
        return PoisonedData(x_new, y_new, poisoned)

    def success_probe(self, x_test: np.ndarray, y_test: np.ndarray) -> SuccessProbe:
        return SuccessProbe(self.stamp(x_test[y_test != self.params.target]), self.params.target)

    def _trigger(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if len(shape) != 3:
            raise ValueError(f"attack '{self.kind}': needs images (channels, height, width), got input shape {shape}")
        return self.trigger(shape)


Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center"]


@ATTACKS.register("backdoor_patch")
class BackdoorPatch(Backdoor):
    """The BadNets patch trigger: Gu, Dolan-Gavitt and Garg, "BadNets: Identifying
    Vulnerabilities in the Machine Learning Model Supply Chain", 2017.

    Parameters (besides ``rate`` and ``target``):
        size: side of the square patch, in pixels.
        position: a corner name, ``center``, or ``[row, col]`` of the patch's top-left pixel;
            the patch must lie inside the image.
        pattern: ``solid`` (every patch pixel 1.0) or ``checkerboard`` (1.0 where
            ``row + col`` within the patch is even, 0.0 elsewhere), the same on all channels.
    """

    class Params(Backdoor.Params):
        size: PositiveInt = Field(3, description="side of the square patch, pixels")
        position: Corner | Annotated[tuple[NonNegativeInt, NonNegativeInt], FromList] = Field("bottom_right", description="a corner, center, or [row, col] of the patch's top-left pixel")
        pattern: Literal["solid", "checkerboard"] = Field("solid", description="the patch's pixels: all at maximum, or alternating")

    def origin(self, height: int, width: int) -> tuple[int, int]:
        """Row and column of the patch's top-left pixel."""
        p = self.params
        if isinstance(p.position, tuple):
            return p.position
        bottom, right = height - p.size, width - p.size
        corners = {
            "top_left": (0, 0),
            "top_right": (0, right),
            "bottom_left": (bottom, 0),
            "bottom_right": (bottom, right),
            "center": (bottom // 2, right // 2),
        }
        return corners[p.position]

    def trigger(self, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        _, height, width = image_shape
        row, col = self.origin(height, width)
        if min(row, col) < 0 or row + p.size > height or col + p.size > width:
            raise ValueError(
                f"attack '{self.kind}': size={p.size} at position={p.position!r} does not fit "
                f"{height}x{width} images; the patch must lie inside the image"
            )
        weight = np.zeros((height, width), dtype=np.float32)
        weight[row : row + p.size, col : col + p.size] = 1.0
        pattern = np.ones((height, width), dtype=np.float32)
        if p.pattern == "checkerboard":
            pattern[row : row + p.size, col : col + p.size] = checkerboard(p.size, p.size)
        return weight, pattern


@ATTACKS.register("backdoor_blend")
class BackdoorBlend(Backdoor):
    """The blended-injection trigger: Chen, Liu, Li, Lu and Song, "Targeted Backdoor Attacks on
    Deep Learning Systems Using Data Poisoning", 2017: ``x' = (1 - alpha) x + alpha * pattern``
    over the whole image.

    Parameters (besides ``rate`` and ``target``):
        alpha: the blend weight of the pattern, the same for poisoning and probing.
        pattern: ``noise`` (uniform [0, 1) pixels, one value per channel and pixel, drawn from
            ``seed``) or ``checkerboard`` (1.0 where ``row + col`` is even, 0.0 elsewhere, on all
            channels).
        seed: seeds the noise pattern only; fixed apart from the run's seed so that the poisoned
            training images and the probe carry the same trigger.
    """

    class Params(Backdoor.Params):
        alpha: float = Field(default=0.2, gt=0.0, le=1.0, description="weight of the pattern in the blend")
        pattern: Literal["noise", "checkerboard"] = Field("noise", description="the blended image: uniform noise (drawn from seed) or a checkerboard")
        seed: NonNegativeInt = Field(0, description="seed of the noise pattern")

    def trigger(self, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if p.pattern == "noise":
            pattern = np.random.default_rng(p.seed).random(image_shape, dtype=np.float32)
        else:
            pattern = checkerboard(*image_shape[1:])
        return np.float32(p.alpha), pattern

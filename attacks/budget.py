"""The rate rule every attack shares: how many samples an attack at a rate touches, and which."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

Rate = Annotated[float, Field(ge=0.0, le=1.0, description="budget: round(rate * n) samples are attacked, n the party's training samples (poisoning) or the samples queried each epoch (manipulation), at most the eligible ones")]


def budget(eligible: np.ndarray, rate: float) -> int:
    """How many samples an attack at ``rate`` touches: ``round(rate * n)`` over all ``n`` samples,
    at most the number of ``eligible`` ones."""
    return min(round(rate * len(eligible)), int(eligible.sum()))


def choose(rng: np.random.Generator, eligible: np.ndarray, rate: float) -> np.ndarray:
    """The attacked samples, as a bool mask: ``round(rate * n)`` of the ``n = len(eligible)``
    samples, drawn uniformly without replacement among the ``eligible`` ones, or every eligible
    sample when there are fewer.

    The count is taken over all ``n`` samples, not over the eligible subset, so a given rate is
    the same budget for every attack. ``round`` is Python's (halves to even: 0.25 * 10 -> 2).
    """
    mask = np.zeros(len(eligible), dtype=bool)
    mask[rng.choice(np.flatnonzero(eligible), size=budget(eligible, rate), replace=False)] = True
    return mask

"""Every random stream of a run derives from the scenario's seed and a few tags naming its purpose
(party, attack, epoch...), so streams are independent of each other and of the order in which
parties are built, and a run is reproducible from its seed alone."""

from __future__ import annotations

import zlib

import numpy as np


def seeded_rng(seed: int, *tags: str | int) -> np.random.Generator:
    """An independent numpy stream per purpose: ``numpy.random.SeedSequence`` over the seed and
    the tags (strings hashed to 32-bit words)."""
    words = [seed] + [zlib.crc32(t.encode()) if isinstance(t, str) else t for t in tags]
    return np.random.default_rng(np.random.SeedSequence(words))


def derived_seed(seed: int, *tags: str | int) -> int:
    """A 32-bit seed per purpose, for libraries that take an integer (torch, SEAL's PRNG)."""
    return zlib.crc32("/".join(map(str, (seed, *tags))).encode())

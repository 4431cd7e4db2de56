"""The responder's evaluation of one batch, its features split into shards.

Every stage's ciphertexts are split into shards of features, one per worker: the inputs by
bands of image rows (:func:`input_holdings`), every later stage's outputs by where their inputs
lie (:func:`owners`). A linear stage (``Linear``, or ``SumPool`` as a linear map with weights 1)
runs in two steps:

1. :meth:`Shard.partial`: each shard combines the features it holds into every output it
   reaches, as coefficient arrays (exact modular arithmetic, :mod:`.bulk_linear`), and cuts the
   result into pieces by the outputs' owners;
2. :meth:`Shard.finish`: each shard adds the pieces of the outputs it owns from every shard and
   turns them into ciphertexts: relinearise, rescale, add the bias.

``Square`` works on each ciphertext where it lies. Inputs are dropped to the level the circuit
needs, so it ends on the lowest level (``q0`` alone, the smallest ciphertext); a ``Linear``
encodes its weights at the scale that brings each output back to exactly ``scale`` after its
rescales, once per output, not per product; a ``Square`` leaves its rescale pending, for the
next ``Linear`` to drop both primes at once on fewer ciphertexts.

With one shard (:class:`LocalShards`) nothing moves; with several, each shard is a Ray worker
(:mod:`.workers`) and the pieces travel between workers through Ray's object store. Inputs are
loaded (deserialised) in blocks of ``block_inputs`` as the first stage consumes them, so a
batch's inputs are never in memory all at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import tenseal.sealapi as seal

from testbed.schemes.ckks.bulk_linear import IntegerWeights, add_combination, add_modular
from testbed.schemes.ckks.circuit import Linear, Stage, SumPool, circuit_depth
from testbed.schemes.ckks.coefficients import ciphertext_from, coefficients
from testbed.schemes.ckks.crypto import PublicContext, encoded, mod_switched, paired, settled
from testbed.schemes.ckks.wire import seal_load


def input_holdings(input_shape: tuple[int, ...], features: int, shards: int, complex_packing: bool) -> list[np.ndarray]:
    """Which input features each shard holds: bands of image rows (every channel), so that a
    convolution's outputs mostly depend on one shard's inputs; contiguous ranges otherwise."""
    index = np.arange(features)
    if len(input_shape) == 3:
        height, width = input_shape[1:]
        flat = 2 * index if complex_packing else index  # a pair's first feature
        band = ((flat // width) % height) * shards // height
    else:
        band = index * shards // max(features, 1)
    return [index[band == s] for s in range(shards)]


def owners(pattern: np.ndarray, holdings: list[np.ndarray]) -> list[np.ndarray]:
    """Which outputs of a linear stage each shard finishes: the shard holding most of an
    output's inputs (so few partial sums move), with at most an even share each."""
    count = len(holdings)
    if count == 1:
        return [np.arange(len(pattern))]
    reach = np.stack([pattern[:, held].sum(axis=1) for held in holdings], axis=1)  # (outputs, shards)
    capacity = np.full(count, -(-len(pattern) // count))
    owner = np.empty(len(pattern), dtype=np.int64)
    for o in np.argsort(-(reach.max(axis=1) - reach.mean(axis=1)), kind="stable"):  # strongest preferences first
        for s in np.argsort(-reach[o], kind="stable"):
            if capacity[s]:
                owner[o], capacity[s] = s, capacity[s] - 1
                break
    return [np.flatnonzero(owner == s) for s in range(count)]


@dataclass
class Piece:
    """One shard's partial sums for the outputs of one range that its features reach, before
    any rescale (a shard whose features reach none of a range sends an empty piece)."""

    rows: np.ndarray  # (reached,) int: positions within the range
    sums: np.ndarray  # (reached, size, primes, degree) uint64
    parms_id: list[int]
    scale: float


def one_product_per_weight(stage: Stage, complex_inputs: bool) -> bool:
    """Whether a stage takes one SEAL product per weight (per-sample or complex weights) rather
    than the bulk arithmetic."""
    return isinstance(stage, Linear) and (stage.weight.ndim == 3 or complex_inputs)


@dataclass
class StageStep:
    """What every shard needs to run one linear stage (the same for all shards)."""

    stage: Linear | SumPool
    pending: int  # rescales owed by the stage's input ciphertexts
    scale: float
    complex_inputs: bool
    inputs: int  # features entering the stage
    owners: list[np.ndarray]  # per shard, the outputs it finishes

    @property
    def one_by_one(self) -> bool:
        return one_product_per_weight(self.stage, self.complex_inputs)

    @property
    def drops(self) -> int:
        return self.pending + 1 if isinstance(self.stage, Linear) else 0

    def pattern(self) -> np.ndarray:
        """``(outputs, inputs)``: which inputs each output sums."""
        weight = self.weight()
        return weight.reshape(*weight.shape[:2], -1).any(axis=2)

    def weight(self) -> np.ndarray:
        """``(outputs, inputs)`` or ``(outputs, inputs, samples)``; complex for complex inputs."""
        if isinstance(self.stage, SumPool):
            weight = np.zeros((len(self.stage.windows), self.inputs))
            for o, window in enumerate(self.stage.windows):
                weight[o, window] = 1.0
            return weight
        return np.conj(paired(self.stage.weight, axis=1)) / 2 if self.complex_inputs else self.stage.weight


class Arenas:
    """Scratch arrays by name, each a view of one flat block reused across blocks, stages and
    epochs while large enough: first touches of fresh memory (page faults) cost more here than
    the arithmetic, and one block per use holds the largest need, not every need."""

    def __init__(self) -> None:
        self._blocks: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        block = self._blocks.get(name)
        if block is None or len(block) < size:
            self._blocks.pop(name, None)  # the old block goes before the new one is made
            block = self._blocks[name] = np.empty(size, dtype=np.uint64)
        return block[:size].reshape(shape)

    def clear(self) -> None:
        self._blocks.clear()


def weight_scale_for(public: PublicContext, step: StageStep, parms_id: list[int], scale: float) -> float:
    """The scale a stage's weights are encoded at for inputs at ``parms_id`` and ``scale``: the one
    that brings each output back to exactly ``step.scale`` after its rescales (1 for a SumPool)."""
    if isinstance(step.stage, SumPool):
        return 1.0
    return step.scale * math.prod(public.primes(parms_id)[-step.drops :]) / scale


def finished(public: PublicContext, step: StageStep, output: int, sums: np.ndarray | None, parms_id: list[int], scale: float) -> seal.Ciphertext:
    """Output ``output`` of a linear stage from its summed coefficients (``None``: no weight
    reached it): relinearised, rescaled and with its bias for a ``Linear``; a ``SumPool``'s sums
    keep their pending relinearisation and rescale."""
    linear = isinstance(step.stage, Linear)
    after = public.parms_id_at(public.context.get_context_data(parms_id).chain_index() - step.drops)
    if sums is None:  # every weight zero at this scale: the output is its bias, added to an encryption of zero
        out = seal.Ciphertext()
        public.encryptor.encrypt_zero(after, out)
    else:
        out = ciphertext_from(public.context, parms_id, sums, scale)
        if step.complex_inputs:
            conjugate = seal.Ciphertext()
            public.evaluator.complex_conjugate(out, public.galois_keys, conjugate)
            public.evaluator.add_inplace(out, conjugate)
        if linear:
            settled(public, out, step.drops)
    if linear:
        out.scale = step.scale  # what the weight scale makes it, up to float rounding, which SEAL's additions reject
        if np.any(step.stage.bias[output]):
            public.evaluator.add_plain_inplace(out, encoded(public, step.stage.bias[output], after, out.scale))
    return out


def add_products_one_by_one(public: PublicContext, cts: list[seal.Ciphertext], weight: np.ndarray, weight_scale: float, sums: np.ndarray, used: np.ndarray, moduli: np.ndarray) -> None:
    """One SEAL product per weight: for per-sample weight vectors (last axis, a fused logit
    map) and complex weights, which are not one integer per prime."""
    nonzero = weight.reshape(*weight.shape[:2], -1).any(axis=2)
    product = seal.Ciphertext()
    for o in np.flatnonzero(nonzero.any(axis=1)):
        total: seal.Ciphertext | None = None
        for k in np.flatnonzero(nonzero[o]):
            plain = encoded(public, weight[o, k], cts[k].parms_id(), weight_scale)
            if plain.is_zero():
                # The weight rounds to 0 at weight_scale, so its product is exactly zero: a
                # transparent ciphertext, which SEAL refuses. Per-sample vectors round away far
                # sooner than scalars: a scalar is one coefficient, while n per-sample values
                # spread over N coefficients of at most 2n/N of their size.
                continue
            if total is None:
                total = seal.Ciphertext()
                public.evaluator.multiply_plain(cts[k], plain, total)
            else:
                public.evaluator.multiply_plain(cts[k], plain, product)
                public.evaluator.add_inplace(total, product)
        if total is not None:
            add_modular(sums[o], coefficients(total), moduli)
            used[o] = True


@dataclass
class Shard:
    """The features of one shard of a batch and the work on them."""

    public: PublicContext
    index: int
    block_inputs: int
    frames: dict[int, bytes | memoryview] = field(default_factory=dict)  # input frame index -> frame, this shard's features
    current: dict[int, seal.Ciphertext] = field(default_factory=dict)  # feature -> ciphertext, after the first stage
    pending_inputs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # features still serialized (frame index = offset + feature)
    frame_offset: int = 0
    start_parms: list[int] | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {"deserialize": 0.0})
    _arenas: Arenas = field(default_factory=Arenas)

    def take_seconds(self) -> dict[str, float]:
        """Seconds per phase (loading inputs) since the last call."""
        seconds, self.seconds = self.seconds, {"deserialize": 0.0}
        return seconds

    def hold(self, frames: dict[int, bytes | memoryview]) -> None:
        """Keep the serialized input ciphertexts of this shard's features (all batches)."""
        self.frames.update(frames)

    def start(self, batch: int, features: int, held: np.ndarray, depth: int) -> None:
        """Begin a batch of ``features`` input features: this shard's ``held`` ones, still serialized."""
        self.current = {}
        self.pending_inputs = held
        self.frame_offset = batch * features
        self.start_parms = self.public.parms_id_at(depth)

    # linear stages -----------------------------------------------------------------------------
    def partial(self, step: StageStep) -> list[Piece]:
        """This shard's features combined into every output they reach, one piece per owner."""
        held = self.pending_inputs if len(self.pending_inputs) else np.array(sorted(self.current), dtype=np.int64)
        reaches = step.pattern()[:, held].any(axis=1)  # partial sums only for these: memory per shard
        # Grouped by owner, so that each owner's piece is one slice of the sums: a copy of this
        # shard's own outputs took 7% of a worker's answer on the one-block convnet.
        groups = [np.flatnonzero(reaches[owned]) for owned in step.owners]  # positions within each owner's outputs
        reached = np.concatenate([owned[group] for owned, group in zip(step.owners, groups)])
        weight = step.weight()[reached]
        sums: np.ndarray | None = None
        used = np.zeros(len(reached), dtype=bool)
        parms_id, product_scale = None, 1.0
        for features, cts in self._blocks():
            if sums is None:
                parms_id = cts[0].parms_id()
                weight_scale = weight_scale_for(self.public, step, cts[0].parms_id(), cts[0].scale)
                product_scale = cts[0].scale * weight_scale
                sums = self._arenas.get("sums", (len(reached), *coefficients(cts[0]).shape))
                sums.fill(0)
                moduli = np.array(self.public.primes(parms_id), dtype=np.int64)
            block = weight[:, features]
            if not step.one_by_one:
                stacked = self._arenas.get("inputs", (len(cts), *sums.shape[1:]))
                for k, ct in enumerate(cts):
                    stacked[k] = coefficients(ct)
                rounded = IntegerWeights.rounded(block, weight_scale)
                add_combination(stacked, rounded, moduli, sums)
                used[np.diff(rounded.indptr) > 0] = True
            else:
                add_products_one_by_one(self.public, cts, block, weight_scale, sums, used, moduli)
        if sums is None:  # a shard without features (more shards than features)
            return [Piece(np.zeros(0, dtype=np.int64), np.zeros((0, 0, 0, 0), dtype=np.uint64), None, 0.0) for _ in step.owners]
        pieces, start = [], 0
        for group in groups:
            segment = slice(start, start + len(group))
            start = segment.stop
            kept = used[segment]  # an output whose every product rounded to zero has no sum
            pieces.append(Piece(group[kept], sums[segment] if kept.all() else sums[segment][kept], parms_id, product_scale))
        return pieces

    def finish(self, step: StageStep, *pieces: Piece) -> None:
        """Add the pieces of this shard's output range and make its output ciphertexts."""
        outputs = step.owners[self.index]
        first = next(p for p in pieces if p.parms_id is not None)  # some shard holds features
        moduli = np.array(self.public.primes(first.parms_id), dtype=np.int64)
        reaching = [p for p in pieces if len(p.rows)]
        # Start from a piece that reaches every output and may be written (this shard's own), else from zeros.
        reaching.sort(key=lambda p: not (len(p.rows) == len(outputs) and p.sums.flags.writeable))
        used = np.zeros(len(outputs), dtype=bool)
        total = None
        for piece in reaching:
            whole = len(piece.rows) == len(outputs)
            if total is None and whole and piece.sums.flags.writeable:
                total = piece.sums
            else:
                if total is None:
                    total = self._arenas.get("total", (len(outputs), *piece.sums.shape[1:]))
                    total.fill(0)
                if whole:
                    add_modular(total, piece.sums, moduli)
                else:
                    block = total[piece.rows]
                    add_modular(block, piece.sums, moduli)
                    total[piece.rows] = block
            used[piece.rows] = True
        self.current = {o: finished(self.public, step, o, total[k] if used[k] else None, first.parms_id, first.scale) for k, o in enumerate(outputs)}

    # per ciphertext ----------------------------------------------------------------------------
    def square(self, shift: float, pending: int) -> None:
        for ct in self.current.values():
            settled(self.public, ct, pending)
            if shift:
                self.public.evaluator.add_plain_inplace(ct, encoded(self.public, shift, ct.parms_id(), ct.scale))
            self.public.evaluator.square_inplace(ct)

    def results(self, pending: int) -> dict[int, seal.Ciphertext]:
        """This shard's outputs of the last stage, settled on the lowest level."""
        last = self.public.context.last_parms_id()
        return {o: mod_switched(self.public, settled(self.public, ct, pending), last) for o, ct in self.current.items()}

    # helpers -----------------------------------------------------------------------------------
    def _blocks(self) -> Iterator[tuple[list[int], list[seal.Ciphertext]]]:
        """This shard's features with their ciphertexts, ``block_inputs`` at a time: loaded from
        their frames for the first stage, as they are afterwards."""
        if len(self.pending_inputs):
            features, self.pending_inputs = self.pending_inputs.tolist(), np.zeros(0, dtype=np.int64)
            for start in range(0, len(features), self.block_inputs):
                block = features[start : start + self.block_inputs]
                yield block, [self._load(self.frame_offset + j) for j in block]
            return
        features = sorted(self.current)
        for start in range(0, len(features), self.block_inputs):
            block = features[start : start + self.block_inputs]
            yield block, [self.current[j] for j in block]

    def _load(self, frame: int) -> seal.Ciphertext:
        started = time.perf_counter()
        ct = seal_load(seal.Ciphertext(), self.frames[frame], self.public.context)
        self.seconds["deserialize"] += time.perf_counter() - started
        return mod_switched(self.public, ct, self.start_parms)


class LocalShards:
    """One shard in this process: the whole batch, nothing moves."""

    def __init__(self, public: PublicContext, input_frames: Sequence[bytes | memoryview], block_inputs: int):
        self.shard = Shard(public, 0, block_inputs)
        self.shard.hold(dict(enumerate(input_frames)))
        self.count = 1

    def holdings(self, features: int) -> list[np.ndarray]:
        return [np.arange(features)]

    def start(self, batch: int, features: int, holdings: list[np.ndarray], depth: int) -> None:
        self.shard.start(batch, features, holdings[0], depth)

    def linear(self, step: StageStep) -> None:
        self.shard.finish(step, *self.shard.partial(step))

    def square(self, shift: float, pending: int) -> None:
        self.shard.square(shift, pending)

    def results(self, pending: int) -> list[seal.Ciphertext]:
        found = self.shard.results(pending)
        return [found[o] for o in sorted(found)]

    def take_seconds(self) -> dict[str, float]:
        return self.shard.take_seconds()

    def close(self) -> None:
        """Nothing to stop: the shard lives in this process."""


def evaluate(shards, circuit: list[Stage], batch: int, features: int, scale: float, complex_inputs: bool) -> list[seal.Ciphertext]:
    """Responder: ``circuit`` on batch ``batch`` of the inputs the shards hold (``features`` input
    ciphertexts per batch) -> one ciphertext per output, on the lowest level."""
    if complex_inputs and not isinstance(circuit[0], Linear):
        raise ValueError("complex packing needs a circuit that starts with a linear stage")
    holdings = shards.holdings(features)
    shards.start(batch, features, holdings, circuit_depth(circuit))
    pending, width = 0, features
    for stage in circuit:
        if isinstance(stage, (Linear, SumPool)):
            step = StageStep(stage, pending, scale, complex_inputs, width, [])
            pattern = step.pattern()
            step.owners = holdings = owners(pattern, holdings)
            shards.linear(step)
            pending = 0 if isinstance(stage, Linear) else pending
            complex_inputs, width = False, len(pattern)
        else:
            shards.square(stage.shift, pending)
            pending = 1
    return shards.results(pending)


def memory_needed(widths: list[tuple[str, int]], depth: int, degree: int, features: int, block_inputs: int) -> tuple[int, int]:
    """``(bytes, stage)``: the memory one batch's evaluation takes in one process with one shard,
    and the stage that adds most (``widths`` from :func:`.circuit.stage_widths`).

    SEAL's memory pool keeps every block it ever handed out, reusable only for ciphertexts of the
    same size and level, so the process keeps what each stage's outputs took at every size and
    level they passed through (made, settled, squared); the scratch arenas keep the largest
    block of inputs and the largest partial sums."""
    primes, size, pending, width = depth + 1, 2, 0, features
    pool, arena_inputs, arena_sums, largest, where = 0, 0, 0, 0, 0
    for index, (kind, outputs) in enumerate(widths):
        words_in = size * primes * degree
        if kind == "Square":
            added = width * (size * (primes - pending) * degree if pending else 0) + width * 3 * (primes - pending) * degree
            primes, size, pending = primes - pending, 3, 1
        else:
            arena_inputs = max(arena_inputs, min(width, block_inputs) * words_in)
            arena_sums = max(arena_sums, outputs * words_in)
            added = outputs * words_in  # made from the sums
            if kind == "Linear":
                primes, size, pending = primes - pending - 1, 2, 0
                added += outputs * size * primes * degree  # settled
            width = outputs
        pool += added
        if added > largest:
            largest, where = added, index
    return 8 * (pool + arena_inputs + arena_sums), where

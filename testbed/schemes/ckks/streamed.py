"""The responder's evaluation of one batch within a memory bound: stage outputs spilled to disk.

In-memory evaluation (:mod:`.evaluation`) holds every output of a stage at once: the
full-width CIFAR-10 convnet's first convolution alone makes 16,384 ciphertexts of 1.8 MB. Here
the circuit runs as *passes*, each a linear stage (``Linear`` or ``SumPool``), the ``Square``
stages after it and, if one follows, the ``SumPool`` summing their outputs, so that a pass
keeps its outputs lazy (unrelinearised, a rescale pending) exactly as in memory. A pass reads
its inputs from the previous pass's *spill file* (raw coefficient records, one per ciphertext)
and computes its outputs in chunks small enough for the bound:

1. the chunk's outputs are taken in the order of the first input they need: for a convolution
   over (channel, row, column) features, every channel of a band of rows, so that consecutive
   chunks need mostly the same input rows;
2. the inputs the chunk needs are read into one array and combined by the same exact modular
   arithmetic as in memory (:mod:`.bulk_linear`);
3. each output is finished, squared and pooled one ciphertext at a time (SEAL's memory pool,
   which never shrinks, holds a few ciphertexts), and its coefficients written to the next file.

The operations are those of in-memory evaluation, so the answer is the same coefficient for
coefficient (tested); what is added is disk traffic (phase ``spill``) and the inputs that
neighbouring chunks both need, read twice. The batch's input ciphertexts are deserialised once,
into the first spill file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from testbed.memory import rss_bytes
from testbed.schemes.ckks.bulk_linear import IntegerWeights, add_combination, add_modular
from testbed.schemes.ckks.circuit import Linear, Square, Stage, SumPool, circuit_depth
from testbed.schemes.ckks.coefficients import ciphertext_from, coefficients
from testbed.schemes.ckks.crypto import PublicContext, encoded, mod_switched, settled
from testbed.schemes.ckks.evaluation import Arenas, StageStep, add_products_one_by_one, finished, weight_scale_for
from testbed.schemes.ckks.wire import seal_load

#: Bytes read or written by one system call: Linux moves at most about 2 GB per call.
_IO_BYTES = 2**30


#: Bytes of the bound kept for what chunks do not count: SEAL's pool, a chunk's weights, NumPy's temporaries.
RESERVE = 2**30


class MemoryBoundError(ValueError):
    """The memory bound is below what the smallest chunk of some pass needs."""

    def __init__(self, needed: int, available: int, where: str):
        super().__init__(f"{where} of the streamed evaluation needs at least {needed / 2**30:.2f} GB for one output's arrays, {max(available, 0) / 2**30:.2f} GB are left under scheme.max_memory_gb")
        self.needed, self._arguments = needed, (needed, available, where)

    def __reduce__(self) -> tuple:
        return type(self), self._arguments  # raised in a party's actor, it reaches the driver intact


@dataclass
class Pass:
    """A linear stage, the squares after it, and the SumPool that may sum their outputs."""

    head: Linear | SumPool
    shifts: list[float]  # one per Square, in order
    pool: SumPool | None

    def groups(self, outputs: int) -> list[np.ndarray]:
        """Per output of the pass, the head's outputs it sums (its window, or itself)."""
        return [np.asarray(w) for w in self.pool.windows] if self.pool else [np.array([o]) for o in range(outputs)]

    def pending_after(self, pending: int) -> int:
        """Rescales its outputs owe, given what its inputs owe: a square leaves one, a Linear none."""
        return 1 if self.shifts else 0 if isinstance(self.head, Linear) else pending


def passes(circuit: list[Stage]) -> list[Pass]:
    """``circuit`` cut into passes; ``ValueError`` if it does not start with a linear stage."""
    found: list[Pass] = []
    for stage in circuit:
        if isinstance(stage, Square):
            if not found or found[-1].pool is not None:
                raise ValueError("streamed evaluation needs a circuit whose squares follow a linear stage")
            found[-1].shifts.append(stage.shift)
        elif isinstance(stage, SumPool) and found and found[-1].shifts and found[-1].pool is None:
            found[-1].pool = stage
        else:
            found.append(Pass(stage, [], None))
    return found


class Spill:
    """One pass's output ciphertexts, all of one size and level, as fixed-size coefficient records in a file."""

    def __init__(self, directory: Path, name: str, count: int, shape: tuple[int, ...], parms_id: list[int], scale: float):
        self.path = directory / name
        self.count, self.shape, self.parms_id, self.scale = count, shape, parms_id, scale
        self.record = int(np.prod(shape)) * 8
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.seconds = 0.0

    def write(self, index: int, values: np.ndarray) -> None:
        started = time.perf_counter()
        _transfer(os.pwritev, self.fd, memoryview(np.ascontiguousarray(values)).cast("B"), index * self.record)
        self.seconds += time.perf_counter() - started

    def read(self, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Records ``indices`` (sorted) into ``out[:len(indices)]``, one call per run of consecutive records."""
        started = time.perf_counter()
        target = out[: len(indices)]
        cuts = np.flatnonzero(np.diff(indices) != 1) + 1
        position = 0
        for run in np.split(indices, cuts):
            _transfer(os.preadv, self.fd, memoryview(target[position : position + len(run)]).cast("B"), int(run[0]) * self.record)
            position += len(run)
        self.seconds += time.perf_counter() - started
        return target

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


def _transfer(call, fd: int, buffer: memoryview, offset: int) -> None:
    """All of ``buffer`` through ``os.preadv`` or ``os.pwritev``, which may move less per call."""
    done = 0
    while done < len(buffer):
        moved = call(fd, [buffer[done : done + _IO_BYTES]], offset + done)
        if moved <= 0:
            raise OSError(f"spill file: {'read' if call is os.preadv else 'write'} stopped at byte {offset + done}")
        done += moved


def output_shape(step: StageStep, step_pass: Pass, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Coefficient shape of one output of ``step_pass`` on inputs of coefficient shape ``shape``:
    the levels its head and squares drop, and size 3 after a square (relinearised by the next pass)."""
    size, primes, degree = shape
    pending = step.pending
    if isinstance(step.stage, Linear):
        size, primes, pending = 2, primes - step.drops, 0
    for _ in step_pass.shifts:
        size, primes, pending = 3, primes - pending, 1
    return size, primes, degree


def chunks(pattern: np.ndarray, groups: list[np.ndarray], costs: tuple[int, int, int], budget: int | None, where: str) -> tuple[list[np.ndarray], int]:
    """The pass's outputs in chunks whose arrays fit ``budget`` bytes (``None``: each alone), and
    the bytes the largest single output needs. ``costs``: bytes per input read, per head output
    summed, per output. Outputs go in the order of the first input they need;
    :class:`MemoryBoundError` if one output alone does not fit."""
    in_bytes, head_bytes, out_bytes = costs
    first = np.where(pattern.any(axis=1), pattern.argmax(axis=1), pattern.shape[1])
    order = np.argsort([first[g].min() for g in groups], kind="stable")
    found: list[np.ndarray] = []
    current: list[int] = []
    needed = np.zeros(pattern.shape[1], dtype=bool)
    heads = smallest = 0
    for f in order:
        reach = pattern[groups[f]].any(axis=0)
        alone = int(reach.sum()) * in_bytes + len(groups[f]) * head_bytes + out_bytes
        smallest = max(smallest, alone)
        if budget is not None and alone > budget:
            raise MemoryBoundError(alone, budget, where)
        grown = needed | reach
        if current and (budget is None or int(grown.sum()) * in_bytes + (heads + len(groups[f])) * head_bytes + (len(current) + 1) * out_bytes > budget):
            found.append(np.array(current))
            current, grown, heads = [], reach, 0
        current.append(int(f))
        needed, heads = grown, heads + len(groups[f])
    if current:
        found.append(np.array(current))
    return found, smallest


def pass_costs(step: StageStep, step_pass: Pass, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Bytes per input read, per head output summed and per output of a pass on inputs of ``shape``."""
    record = int(np.prod(shape)) * 8
    return record * (2 if step.one_by_one else 1), record, int(np.prod(output_shape(step, step_pass, shape))) * 8  # one-by-one products also hold each input as a ciphertext


def minimum_bytes(circuit: list[Stage], degree: int, features: int, scale: float, complex_inputs: bool) -> tuple[int, str]:
    """``(bytes, pass)``: the arrays the largest single output of any pass needs, the least
    budget streamed evaluation of ``circuit`` can run in."""
    cut = passes(circuit)
    shape, pending, width, worst = (2, circuit_depth(circuit) + 1, degree), 0, features, (0, "")
    for number, step_pass in enumerate(cut):
        step = StageStep(step_pass.head, pending, scale, complex_inputs, width, [])
        pattern = step.pattern()
        where = f"pass {number + 1} of {len(cut)}"
        _, smallest = chunks(pattern, step_pass.groups(len(pattern)), pass_costs(step, step_pass, shape), None, where)
        worst = max(worst, (smallest, where))
        shape, width, complex_inputs = output_shape(step, step_pass, shape), len(step_pass.pool.windows) if step_pass.pool else len(pattern), False
        pending = step_pass.pending_after(pending)
    return worst


class StreamedEvaluation:
    """A responder's batches evaluated pass by pass, the process within ``bound`` bytes, spilling to
    ``directory``: each batch's chunks get what the process does not hold already, less :data:`RESERVE`."""

    def __init__(self, public: PublicContext, input_frames: Sequence[bytes | memoryview], bound: int, directory: str | None):
        self.public, self.frames, self.bound = public, input_frames, bound
        self.budget = 0
        self.directory = directory or tempfile.gettempdir()
        self.seconds = {"deserialize": 0.0, "spill": 0.0}
        self.chunk_counts: list[int] = []  # per pass of the last batch: chunks it took
        self.progress: Callable[[str], None] | None = None  # told each pass as it starts (a bench's log)
        self._arenas = Arenas()

    def take_seconds(self) -> dict[str, float]:
        seconds, self.seconds = self.seconds, {"deserialize": 0.0, "spill": 0.0}
        return seconds

    def close(self) -> None:
        self._arenas.clear()

    def evaluate(self, circuit: list[Stage], batch: int, features: int, scale: float, complex_inputs: bool) -> list[seal.Ciphertext]:
        """As :func:`.evaluation.evaluate`, the same ciphertexts, within the budget."""
        cut = passes(circuit)
        self.chunk_counts = []
        self.budget = self.bound - rss_bytes() - RESERVE
        with tempfile.TemporaryDirectory(prefix="smule-spill-", dir=self.directory) as directory:
            spill = self._inputs(Path(directory), batch, features, circuit_depth(circuit))
            pending = 0
            try:  # the spill being read is closed however the batch ends; the directory goes with it
                for number, step_pass in enumerate(cut):
                    step = StageStep(step_pass.head, pending, scale, complex_inputs, spill.count, [])
                    target = self._run(step, step_pass, spill, Path(directory), f"pass {number + 1} of {len(cut)}")
                    self.seconds["spill"] += spill.seconds
                    spill.close()
                    spill, complex_inputs = target, False
                    pending = step_pass.pending_after(pending)
                records = spill.read(np.arange(spill.count), np.empty((spill.count, *spill.shape), dtype=np.uint64))
                last = self.public.context.last_parms_id()
                return [mod_switched(self.public, settled(self.public, ciphertext_from(self.public.context, spill.parms_id, r, spill.scale), pending), last) for r in records]
            finally:
                self.seconds["spill"] += spill.seconds
                spill.close()
                # The next batch's budget is what the process holds then: the last pass's arrays
                # (1 GB on the full-width convnet's dense layer) would leave it too little.
                self._arenas.clear()

    # -- passes ---------------------------------------------------------------------------------
    def _inputs(self, directory: Path, batch: int, features: int, depth: int) -> Spill:
        """The batch's input ciphertexts, deserialised once and dropped to the circuit's level, into a spill file."""
        parms_id = self.public.parms_id_at(depth)
        spill = None
        for j in range(features):
            started = time.perf_counter()
            ct = mod_switched(self.public, seal_load(seal.Ciphertext(), self.frames[batch * features + j], self.public.context), parms_id)
            self.seconds["deserialize"] += time.perf_counter() - started
            values = coefficients(ct)
            if spill is None:
                self._check_disk(features * values.nbytes, directory)
                spill = Spill(directory, "inputs", features, values.shape, parms_id, ct.scale)
            spill.write(j, values)
        return spill

    def _run(self, step: StageStep, step_pass: Pass, source: Spill, directory: Path, where: str) -> Spill:
        public = self.public
        pattern, weight = step.pattern(), step.weight()
        groups = step_pass.groups(len(pattern))
        self._arenas.clear()  # this pass's chunks are sized for the budget alone
        planned, _ = chunks(pattern, groups, pass_costs(step, step_pass, source.shape), self.budget, where)
        self.chunk_counts.append(len(planned))
        if self.progress is not None:
            self.progress(f"{where}: {len(groups)} outputs in {len(planned)} chunks of at most {self.budget / 2**30:.1f} GB")
        moduli = np.array(public.primes(source.parms_id), dtype=np.int64)
        weight_scale = weight_scale_for(public, step, source.parms_id, source.scale)
        owed = step.pending if isinstance(step.stage, SumPool) else 0  # rescales a head output owes before its square
        work = []  # per chunk: its head outputs and the inputs they need
        for chunk in planned:
            heads, position = np.unique(np.concatenate([groups[f] for f in chunk]), return_inverse=True)
            work.append((chunk, heads, position, np.flatnonzero(pattern[heads].any(axis=0))))
        # Each array once, at the pass's largest chunk: a larger one made while the last is still held would hold both.
        inputs = self._arenas.get("inputs", (max(len(needed) for *_, needed in work), *source.shape))
        sums_arena = self._arenas.get("sums", (max(len(heads) for _, heads, *_ in work), *source.shape))
        pooled_arena = self._arenas.get("pooled", (max(map(len, planned)), *output_shape(step, step_pass, source.shape))) if step_pass.pool else None
        target = None
        for chunk, heads, position, needed in work:
            held = source.read(needed, inputs)
            sums = sums_arena[: len(heads)]
            sums.fill(0)
            block = weight[np.ix_(heads, needed)]
            if step.one_by_one:
                used = np.zeros(len(heads), dtype=bool)
                cts = [ciphertext_from(public.context, source.parms_id, values, source.scale) for values in held]
                add_products_one_by_one(public, cts, block, weight_scale, sums, used, moduli)
                del cts
            else:
                rounded = IntegerWeights.rounded(block, weight_scale)
                add_combination(held, rounded, moduli, sums)
                used = np.diff(rounded.indptr) > 0
            owner = np.repeat(np.arange(len(chunk)), [len(groups[f]) for f in chunk])  # per position, its chunk output
            members: list[list[int]] = [[] for _ in heads]
            for p, k in enumerate(position):
                members[k].append(int(owner[p]))
            pooled = None
            for k, head in enumerate(heads):
                ct = finished(public, step, int(head), sums[k] if used[k] else None, source.parms_id, source.scale * weight_scale)
                pending = owed
                for shift in step_pass.shifts:
                    settled(public, ct, pending)
                    if shift:
                        public.evaluator.add_plain_inplace(ct, encoded(public, shift, ct.parms_id(), ct.scale))
                    public.evaluator.square_inplace(ct)
                    pending = 1
                values = coefficients(ct)
                if target is None:
                    self._check_disk(len(groups) * values.nbytes, directory)
                    target = Spill(directory, where.replace(" ", "-"), len(groups), values.shape, ct.parms_id(), ct.scale)
                    target_moduli = np.array(public.primes(target.parms_id), dtype=np.int64)
                if step_pass.pool is None:
                    target.write(int(head), values)
                    continue
                if pooled is None:
                    pooled = pooled_arena[: len(chunk)]
                    pooled.fill(0)
                for f in members[k]:
                    add_modular(pooled[f], values, target_moduli)
            if pooled is not None:
                for f_index, f in enumerate(chunk):
                    target.write(int(f), pooled[f_index])
        return target

    # -- helpers --------------------------------------------------------------------------------
    def _check_disk(self, needed: int, directory: Path) -> None:
        free = shutil.disk_usage(directory).free
        if free < needed:
            raise ValueError(f"scheme.spill_dir: {self.directory} has {free / 2**30:.1f} GB free, the evaluation spills {needed / 2**30:.1f} GB more; allowed: a directory with room")

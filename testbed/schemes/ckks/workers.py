"""A batch's evaluation spread over Ray workers, one shard of features each (``scheme.workers``).

Each worker is a Ray actor holding a :class:`~.evaluation.Shard`: the public context, and the
serialized input ciphertexts of its features for every batch, sent once when the responder
loads the querier's setup. A linear stage's partial sums go from worker to worker through
Ray's object store (the responder's process only passes references), so the responder never
holds more than its own share. The responder queues a batch's stages without waiting between
them (an actor runs the calls it gets in order) and waits once, for the outputs. Workers ask
for no CPU of their own (the party that owns them already holds its share of the cluster) and
go round robin to the cluster's nodes.

A worker that dies or raises fails the answer with :class:`WorkerFailure`, naming the worker
and the first stage that failed, even where later stages ran on what it left; nothing is
retried, so no answer is ever made of a partial evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ray
import tenseal.sealapi as seal
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from testbed.schemes.ckks.crypto import PublicContext
from testbed.schemes.ckks.evaluation import Piece, Shard, StageStep, input_holdings
from testbed.schemes.ckks.plan import CkksPlan
from testbed.schemes.ckks.wire import seal_bytes, seal_load

#: The object store of a Ray this module starts itself (a bench; a run starts Ray in testbed.cluster).
OBJECT_STORE_BYTES = 2 * 2**30


class WorkerFailure(RuntimeError):
    """A CKKS evaluation worker died or raised; the message names it and the stage."""


class ShardWorker:
    def __init__(self, public_frames: list[bytes], plan: CkksPlan, index: int, block_inputs: int):
        self.shard = Shard(PublicContext.load([memoryview(f) for f in public_frames], plan), index, block_inputs)

    def hold(self, frames: dict[int, bytes]) -> str:
        """Keep this worker's input frames; returns the id of the node it runs on."""
        self.shard.hold(frames)
        return ray.get_runtime_context().get_node_id()

    def start(self, batch: int, features: int, held: np.ndarray, depth: int) -> None:
        self.shard.start(batch, features, held, depth)

    def partial(self, step: StageStep) -> tuple[Piece | None, ...]:
        """The pieces for the other workers; this worker's own stays here (None in its place)."""
        pieces = self.shard.partial(step)
        self._own = pieces[self.shard.index]
        return tuple(None if k == self.shard.index else piece for k, piece in enumerate(pieces))

    def finish(self, step: StageStep, *pieces: Piece | None) -> None:
        own, self._own = self._own, None
        self.shard.finish(step, *(own if piece is None else piece for piece in pieces))

    def square(self, shift: float, pending: int) -> None:
        self.shard.square(shift, pending)

    def results(self, pending: int) -> dict[int, bytes]:
        return {o: seal_bytes(ct) for o, ct in self.shard.results(pending).items()}

    def take_seconds(self) -> dict[str, float]:
        return self.shard.take_seconds()


def _start_ray() -> None:
    if not ray.is_initialized():
        ray.init(object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, logging_level="ERROR", log_to_driver=False)


class RayShards:
    """``workers`` shards, each a Ray actor; the interface of :class:`~.evaluation.LocalShards`."""

    def __init__(self, public: PublicContext, public_frames: Sequence[bytes | memoryview], plan: CkksPlan, input_frames: Sequence[bytes | memoryview], input_shape: tuple[int, ...], workers: int, block_inputs: int):
        _start_ray()
        self.public, self.count = public, workers
        self._queued: list[tuple[str, list]] = []  # stages submitted and not yet waited for
        remote = ray.remote(num_cpus=0, max_restarts=0)(ShardWorker)
        context = [bytes(frame) for frame in public_frames]
        nodes = sorted(node["NodeID"] for node in ray.nodes() if node["Alive"] and node.get("Resources", {}).get("CPU", 0) > 0)
        self.actors = [
            remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=False)).remote(context, plan, index, block_inputs)
            for index in range(workers)
        ]  # round robin over the nodes with CPUs: SPREAD does not spread actors that ask for none
        features = plan.input_ciphertexts(int(np.prod(input_shape)))
        self._holdings = input_holdings(input_shape, features, workers, plan.complex_packing)
        batches = len(input_frames) // features
        holds = []
        for actor, mine in zip(self.actors, self._holdings):
            frames = {b * features + j: bytes(input_frames[b * features + j]) for b in range(batches) for j in mine}
            holds.append(actor.hold.remote(frames))
        self.nodes = self._wait(holds, "receiving the setup")

    def holdings(self, features: int) -> list[np.ndarray]:
        return self._holdings

    def start(self, batch: int, features: int, holdings: list[np.ndarray], depth: int) -> None:
        self._submit("starting a batch", [actor.start.remote(batch, features, held, depth) for actor, held in zip(self.actors, holdings)])

    def linear(self, step: StageStep) -> None:
        shared = ray.put(step)
        pieces = [actor.partial.options(num_returns=self.count).remote(shared) for actor in self.actors]
        self._submit(f"a {type(step.stage).__name__} stage", [actor.finish.remote(shared, *[pieces[w][v] for w in range(self.count)]) for v, actor in enumerate(self.actors)])

    def square(self, shift: float, pending: int) -> None:
        self._submit("a Square stage", [actor.square.remote(shift, pending) for actor in self.actors])

    def results(self, pending: int) -> list[seal.Ciphertext]:
        found: dict[int, bytes] = {}
        for part in self._wait([actor.results.remote(pending) for actor in self.actors], "returning the outputs"):
            found.update(part)
        return [seal_load(seal.Ciphertext(), found[o], self.public.context) for o in sorted(found)]

    def take_seconds(self) -> dict[str, float]:
        """Summed over workers: CPU seconds, not wall time."""
        parts = self._wait([actor.take_seconds.remote() for actor in self.actors], "reporting timings")
        return {phase: float(np.sum([p[phase] for p in parts])) for phase in parts[0]}

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)

    def _submit(self, stage: str, refs: list) -> None:
        """Queue a stage without waiting: an actor runs its calls in the order they were made, so
        the stages follow each other without a round trip to this process in between."""
        self._queued.append((stage, refs))

    def _wait(self, refs: list, stage: str) -> list:
        """The values of ``refs``, once every stage queued before them has finished too: a stage
        that failed fails the answer, even where later stages ran on what it left."""
        self._submit(stage, refs)
        queued, self._queued = self._queued, []
        try:
            values = ray.get([ref for _, stage_refs in queued for ref in stage_refs])
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
            where, index = next(((name, i) for name, stage_refs in queued for i, ref in enumerate(stage_refs) if _failed(ref)), (stage, None))
            who = f"worker {index} of {self.count}" if index is not None else f"one of {self.count} workers"
            raise WorkerFailure(f"CKKS evaluation {who} failed during {where}: {str(err).strip().splitlines()[-1]}") from None
        return values[len(values) - len(refs) :]


def _failed(ref: ray.ObjectRef) -> bool:
    try:
        ray.get(ref)
    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
        return True
    return False

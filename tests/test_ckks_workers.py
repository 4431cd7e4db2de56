"""CKKS evaluation spread over Ray workers gives exactly the single-process answer, on one node
or two, and a worker that dies fails the answer by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from testbed.registry import MODELS
from testbed.schemes.ckks.circuit import lower_model
from testbed.schemes.ckks.coefficients import coefficients
from testbed.schemes.ckks.crypto import PublicContext, encrypt_dataset, make_keys, public_frames
from testbed.schemes.ckks.evaluation import LocalShards, evaluate
from testbed.schemes.ckks.plan import plan_for_depth
from testbed.schemes.ckks.workers import RayShards, WorkerFailure

SHAPE = (2, 4, 4)
SPEC = {"kind": "he_cnn", "channels": 3, "kernel": 2, "stride": 2, "padding": 0, "pool": 2, "hidden": 3, "activation": "poly2", "batch_norm": True}


def setup(depth: int = 5):
    torch.manual_seed(0)
    model = MODELS.create(MODELS.parse_spec(SPEC)).build(SHAPE, 4)
    model.train()
    with torch.no_grad():
        model(torch.rand(64, *SHAPE))
    plan = plan_for_depth(depth, 26, 10)
    keys = make_keys(plan)
    context = [memoryview(f) for f in public_frames(keys)]
    frames = encrypt_dataset(keys, np.random.default_rng(0).random((plan.slots + 5, *SHAPE)))  # two batches
    return lower_model(model.eval(), SHAPE), plan, PublicContext.load(context, plan), context, frames


def outputs(shards, circuit, plan, batch: int, features: int) -> list[np.ndarray]:
    return [coefficients(ct).copy() for ct in evaluate(shards, circuit, batch, features, plan.scale, False)]


def test_two_workers_answer_exactly_what_one_process_answers(ray_local):
    circuit, plan, public, context, frames = setup()
    features = int(np.prod(SHAPE))
    local = LocalShards(public, frames, 5)
    spread = RayShards(public, context, plan, frames, SHAPE, 2, 5)  # blocks of 5: several per shard
    try:
        for batch in (0, 1):
            expected, got = outputs(local, circuit, plan, batch, features), outputs(spread, circuit, plan, batch, features)
            assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(expected, got))
        assert spread.take_seconds()["deserialize"] > 0
    finally:
        spread.close()


def test_a_worker_that_dies_fails_the_answer_naming_it(ray_local):
    circuit, plan, public, context, frames = setup()
    spread = RayShards(public, context, plan, frames, SHAPE, 2, 5)
    ray_local.kill(spread.actors[1])
    with pytest.raises(WorkerFailure, match="worker 1 of 2 failed during"):
        evaluate(spread, circuit, 0, int(np.prod(SHAPE)), plan.scale, False)
    spread.close()


def test_a_stage_that_fails_fails_the_answer_though_later_stages_were_queued_behind_it(ray_local):
    circuit, plan, public, context, frames = setup()
    features = int(np.prod(SHAPE))
    spread = RayShards(public, context, plan, frames, SHAPE, 2, 5)
    try:
        with pytest.raises(WorkerFailure, match="worker 0 of 2 failed during a Linear stage"):
            evaluate(spread, circuit, 2, features, plan.scale, False)  # the setup holds two batches: no third
        expected, got = outputs(LocalShards(public, frames, 5), circuit, plan, 0, features), outputs(spread, circuit, plan, 0, features)
        assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(expected, got))  # the next batch starts clean
    finally:
        spread.close()


CLUSTER = textwrap.dedent("""
    import numpy as np, ray
    from ray.cluster_utils import Cluster
    from test_ckks_workers import SHAPE, LocalShards, RayShards, outputs, setup
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR")
    try:
        circuit, plan, public, context, frames = setup(depth=5)
        features = int(np.prod(SHAPE))
        spread = RayShards(public, context, plan, frames, SHAPE, 2, 5)
        same = all(np.array_equal(a, b) for a, b in zip(outputs(LocalShards(public, frames, 5), circuit, plan, 0, features), outputs(spread, circuit, plan, 0, features)))
        print("nodes", len(set(spread.nodes)), "same", same)
    finally:
        ray.shutdown()
        cluster.shutdown()
""")


def test_workers_on_two_nodes_of_a_cluster_answer_the_same(tmp_path):
    """In a child process: a Ray cluster of two nodes, one worker on each."""
    done = subprocess.run([sys.executable, "-c", CLUSTER], capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent) + ":" + __import__("os").environ.get("PYTHONPATH", "")})
    assert "nodes 2 same True" in done.stdout, done.stdout + done.stderr

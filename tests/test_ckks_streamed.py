"""Streamed CKKS evaluation (stage outputs spilled to disk, computed in chunks within a memory
bound) gives exactly the in-memory answer, sizes its chunks by the bound, and refuses a bound
it cannot keep."""

from __future__ import annotations

import numpy as np
import pytest
from test_ckks_time import Counting, _model

from testbed.memory import rss_bytes
from testbed.registry import SCHEMES
from testbed.schemes.ckks.circuit import fuse_logit_map, lower_model
from testbed.schemes.ckks.coefficients import coefficients
from testbed.schemes.ckks.crypto import PublicContext, encrypt_dataset, make_keys, public_frames
from testbed.schemes.ckks.evaluation import LocalShards, evaluate
from testbed.schemes.ckks.plan import plan_for_depth
from testbed.schemes.ckks.streamed import RESERVE, MemoryBoundError, StreamedEvaluation, chunks, minimum_bytes, passes

SHAPE = (3, 8, 8)
CONVNET = {"kind": "he_convnet", "channels": [2, 3]}


def convnet():
    return _model(CONVNET, SHAPE)


@pytest.mark.parametrize("complex_packing, fused", [(False, False), (True, True)])
def test_streamed_evaluation_answers_exactly_what_memory_answers(complex_packing, fused, tmp_path):
    """Two blocks of conv, square and sum-pool, then a dense layer: with real packing every
    linear stage goes through the bulk arithmetic; with complex packing and a fused logit map the
    first and last stages go one SEAL product at a time. The bound leaves room for a few dozen
    ciphertexts, so the first pass takes several chunks whose input bands overlap."""
    plan = plan_for_depth(5, 26, 10, complex_packing=complex_packing)
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(f) for f in public_frames(keys)], plan)
    frames = encrypt_dataset(keys, np.random.default_rng(0).random((plan.slots + 3, *SHAPE)))  # two batches
    circuit = lower_model(convnet(), SHAPE)
    if fused:
        rng = np.random.default_rng(1)
        selected = rng.random(plan.slots) < 0.5
        circuit = circuit[:-1] + [fuse_logit_map(circuit[-1], selected, np.eye(4)[[1, 0, 3, 2]], rng.normal(size=(plan.slots, 4)))]
    features = plan.input_ciphertexts(int(np.prod(SHAPE)))
    record = 2 * plan.poly_modulus_degree * (plan.depth + 1) * 8
    streamed = StreamedEvaluation(public, frames, 0, str(tmp_path))
    for batch in (0, 1):
        expected = [coefficients(ct).copy() for ct in evaluate(LocalShards(public, frames, 16), circuit, batch, features, plan.scale, complex_packing)]
        streamed.bound = rss_bytes() + RESERVE + 80 * record  # the chunks get what the process does not hold
        got = [coefficients(ct).copy() for ct in streamed.evaluate(circuit, batch, features, plan.scale, complex_packing)]
        assert len(got) == 4 and all(np.array_equal(a, b) for a, b in zip(expected, got))
        assert not streamed._arenas._blocks  # nothing held between batches: the next one's budget is what the process holds
    assert streamed.chunk_counts[0] > 1 and len(streamed.chunk_counts) == len(passes(circuit)) == 3
    seconds = streamed.take_seconds()
    assert seconds["deserialize"] > 0 and seconds["spill"] > 0
    assert not list(tmp_path.iterdir())  # every batch's spill files deleted


def test_chunks_cover_every_output_once_within_the_budget_in_the_order_of_their_inputs():
    rng = np.random.default_rng(0)
    pattern = np.zeros((40, 30), dtype=bool)
    for o in range(40):  # a banded map: output o reads inputs near 3o/4
        pattern[o, max(0, 3 * o // 4 - 2) : 3 * o // 4 + 2] = True
    pattern = pattern[rng.permutation(40)]
    groups = [np.array([2 * f, 2 * f + 1]) for f in range(20)]  # a pool of two outputs each
    costs, budget = (10, 7, 5), 200
    found, smallest = chunks(pattern, groups, costs, budget, "pass 1")
    flat = np.concatenate(found)
    assert sorted(flat) == list(range(20))
    for chunk in found:
        heads = np.concatenate([groups[f] for f in chunk])
        assert pattern[heads].any(axis=0).sum() * 10 + len(heads) * 7 + len(chunk) * 5 <= budget
    first = [min(np.flatnonzero(pattern[g].any(axis=0))[0] for g in [groups[f]]) for f in flat]
    assert first == sorted(first) and len(found) > 2
    assert smallest == max(pattern[g].any(axis=0).sum() * 10 + 2 * 7 + 5 for g in groups)
    with pytest.raises(MemoryBoundError, match="pass 1 of the streamed evaluation needs at least"):
        chunks(pattern, groups, costs, smallest - 1, "pass 1")


def test_a_memory_bound_error_raised_in_a_party_reaches_the_driver_intact():
    import pickle

    error = MemoryBoundError(3 * 2**29, 2**29, "pass 2 of 4")
    copy = pickle.loads(pickle.dumps(error))  # how Ray carries it out of a party's actor
    assert str(copy) == str(error) and "needs at least 1.50 GB" in str(copy) and copy.needed == error.needed


def test_a_bound_below_one_outputs_arrays_is_refused_naming_the_minimum():
    plan = plan_for_depth(5, 26, 10)
    model = convnet()
    needed, where = minimum_bytes(lower_model(model, SHAPE), plan.poly_modulus_degree, int(np.prod(SHAPE)), plan.scale, False)
    assert where == "pass 1 of 3" and needed > 27 * 2 * 6 * plan.poly_modulus_degree * 8  # a 3x3 conv over 3 channels reads 27 inputs
    params = SCHEMES.parse_spec({"kind": "ckks", "depth": 5, "max_memory_gb": 0.05}).params
    with pytest.raises(ValueError, match=r"streamed evaluation needs .* GB for one output's arrays in pass 1 of 3 .* allowed: scheme.max_memory_gb of at least"):
        SCHEMES.get("ckks").check_model(params, model, SHAPE)
    generous = SCHEMES.parse_spec({"kind": "ckks", "depth": 5, "max_memory_gb": 1.0}).params
    assert generous.streams(10**10) and not generous.streams(10**6)
    SCHEMES.get("ckks").check_model(generous, model, SHAPE)


def test_streamed_evaluation_makes_the_seal_calls_the_time_model_counts_for_it(tmp_path):
    """The same SEAL calls per level as in memory, and the bulk arithmetic folds each output once
    (one block of all a chunk's inputs), which is how the scheme counts a streamed answer."""
    from collections import Counter

    from testbed.schemes.ckks.time_model import answer_operations

    plan = plan_for_depth(5, 26, 10)
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(f) for f in public_frames(keys)], plan)
    calls: Counter = Counter()
    public.evaluator, public.encryptor = Counting(public.evaluator, calls), Counting(public.encryptor, calls)
    frames = encrypt_dataset(keys, np.random.default_rng(0).random((16, *SHAPE)))
    circuit = lower_model(convnet(), SHAPE)
    StreamedEvaluation(public, frames, rss_bytes() + RESERVE + 2**30, str(tmp_path)).evaluate(circuit, 0, len(frames), plan.scale, False)
    streamed = answer_operations(circuit, plan, len(frames), None, False, False, False, 4)
    names = {"relinearize": "relinearize_inplace", "rescale": "rescale_to_next_inplace", "square": "square_inplace", "add_plain": "add_plain_inplace"}
    assert calls == Counter({(names[op], primes): n for (op, primes), n in streamed.items() if op in names})
    in_memory = answer_operations(circuit, plan, len(frames), 16, False, False, False, 4)
    assert {k: n for k, n in in_memory.items() if k[1]} == {k: n for k, n in streamed.items() if k[1]}  # SEAL calls alike
    assert in_memory[("term_word", 0)] == streamed[("term_word", 0)] and in_memory[("output_word", 0)] > streamed[("output_word", 0)] > 0

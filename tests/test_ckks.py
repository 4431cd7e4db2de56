"""CKKS secure inference: keys that stay home, logits that match plaintext, exact byte accounting."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal
import torch
from sklearn.datasets import load_digits
from torch import nn

from testbed.config import parse_scenario
from testbed.driver import run_scenario
from testbed.inprocess import InProcessParties
from testbed.registry import MODELS, SCHEMES
from testbed.results import RunDirectory
from testbed.schemes import LogitMap
from testbed.schemes.base import plaintext_logits
from testbed.schemes.ckks.accounting import answer_bytes, serialized_sizes, setup_bytes
from testbed.schemes.ckks.circuit import Linear, SumPool, circuit_depth, lower_model, model_depth
from testbed.schemes.ckks.crypto import PublicContext, decrypt_logits, encrypt_dataset, make_keys, public_frames
from testbed.schemes.ckks.bulk_linear import IntegerWeights, add_combination
from testbed.schemes.ckks.coefficients import ciphertext_from, coefficients
from testbed.schemes.ckks.evaluation import LocalShards, evaluate
from testbed.schemes.ckks.plan import MAX_COEFF_BITS, plan_for_depth
from testbed.schemes.ckks.wire import seal_bytes, seal_load, unpack

CLASSES = 10
# Measured max |error| on these logits (|logit| up to 54) is about 7e-4 at scale 2^26.
TOLERANCE = 5e-3


def _scheme(**params):
    return SCHEMES.create(SCHEMES.parse_spec({"kind": "ckks", "depth": 3, "flood_std": 0.0, **params}), CLASSES, 7)  # precision is measured unflooded


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, data.target


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    net = MODELS.create(MODELS.parse_spec({"kind": "mlp", "hidden": [16], "activation": "poly2"})).build((1, 8, 8), CLASSES)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    x, y = torch.from_numpy(digits[0]), torch.from_numpy(digits[1])
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net


@pytest.fixture(scope="module")
def reference(digits, model):
    plaintext = SCHEMES.create(SCHEMES.parse_spec("plaintext"), CLASSES, 0)
    plaintext.load(plaintext.setup(digits[0]))
    return plaintext.decode(plaintext.answer(model))


@pytest.fixture(scope="module")
def real(digits, model):
    """One real exchange: querier setup, responder answer, querier decode."""
    querier, responder = _scheme(), _scheme()
    setup = querier.setup(digits[0])
    responder.load(setup)
    answer = responder.answer(model)
    return querier, responder, setup, answer, querier.decode(answer)


def test_context_sent_to_responder_has_no_secret_key(real, digits):
    querier, _, setup, _, _ = real
    keys = querier._keys
    _, frames = unpack(setup.data)
    context = [bytes(frame) for frame in frames[:3]]
    # Exactly parameters, public key and relinearisation keys (no Galois keys), then one ciphertext per feature.
    assert context == [seal_bytes(keys.seal_params), seal_bytes(keys.public_key), seal_bytes(keys.relin_keys)]
    assert len(frames) == 3 + 64
    assert seal_bytes(keys.secret_key) not in setup.data
    for frame in context:
        with pytest.raises(RuntimeError):
            seal_load(seal.SecretKey(), frame, keys.context)
    # Feature 27 of every sample decrypts under the querier's key, and not under another key.
    feature = digits[0].reshape(len(digits[0]), -1)[:, 27]
    assert np.abs(_decrypt(keys, keys.secret_key, frames[3 + 27], len(feature)) - feature).max() < 1e-4
    stranger = _decrypt(keys, seal.KeyGenerator(keys.context).secret_key(), frames[3 + 27], len(feature))
    assert not np.allclose(stranger, feature, atol=1.0)


def _decrypt(keys, secret_key, frame, n: int) -> np.ndarray:
    plain = seal.Plaintext()
    seal.Decryptor(keys.context, secret_key).decrypt(seal_load(seal.Ciphertext(), frame, keys.context), plain)
    return np.array(keys.encoder.decode_double(plain)[:n])


def test_encrypted_logits_match_plaintext(real, reference):
    logits = real[4]
    assert logits.shape == reference.shape and logits.dtype == np.float32
    error = np.abs(logits - reference).max()
    assert 0 < error < TOLERANCE
    assert (logits.argmax(1) == reference.argmax(1)).mean() == 1.0


def test_logit_map_applied_under_encryption(real, model, reference):
    querier, responder = real[0], real[1]
    n = len(reference)
    rng = np.random.default_rng(3)
    swap = np.eye(CLASSES)
    swap[[0, 1]] = swap[[1, 0]]
    logit_map = LogitMap(selected=np.arange(n) % 3 == 0, matrix=0.5 * swap, offset=rng.normal(0, 2, (n, CLASSES)))
    mapped = querier.decode(responder.answer(model, logit_map))
    expected = logit_map.apply(reference)
    assert np.abs(mapped - expected).max() < TOLERANCE
    assert np.abs(expected - reference)[logit_map.selected].max() > 1.0  # the map did change them


def test_weights_that_encode_to_zero_drop_out():
    """A nonzero weight can round to 0 at the scale it is encoded at; multiplied in, it makes an
    exactly-zero (transparent) ciphertext, which SEAL refuses. It must count as a zero weight."""
    plan = plan_for_depth(1, 26, 10)
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(frame) for frame in public_frames(keys)], plan)
    x = np.random.default_rng(5).uniform(-1, 1, (8, 2))
    frames = encrypt_dataset(keys, x)

    def encodes_to_zero(value) -> bool:
        plain = seal.Plaintext()
        keys.encoder.encode(value, plan.scale, plain)
        return plain.is_zero()

    # 1e-6 survives as a scalar, not as one value per sample for 8 samples
    assert encodes_to_zero(1e-9) and not encodes_to_zero(1e-6) and encodes_to_zero([1e-6] * len(x))
    expected = x @ np.array([[0.0, 0.5], [0.0, 0.0]]).T + [0.0, 0.25]  # the tiny weights add under 1e-5
    for tiny, per_sample in ((1e-9, False), (1e-6, True)):
        weight, bias = np.array([[tiny, 0.5], [tiny, tiny]]), np.array([0.0, 0.25])
        if per_sample:
            weight, bias = np.repeat(weight[..., None], len(x), axis=2), np.repeat(bias[:, None], len(x), axis=1)
        outputs = evaluate(LocalShards(public, frames, 256), [Linear(weight, bias)], 0, len(frames), plan.scale, False)
        logits = decrypt_logits(keys, [memoryview(seal_bytes(ct)) for ct in outputs], len(x), 2)
        np.testing.assert_allclose(logits, expected, atol=1e-4)


class AnswerRecorder(InProcessParties):
    """In-process parties that keep, for every answer of party B, what its querier decodes and
    what B's model computes in plaintext on the querier's samples at that moment."""

    def __init__(self, scenario):
        super().__init__(scenario)
        self.answers = []
        responder = self.parties["B"]
        answer = responder.answer

        def recorded(peer, epoch):
            result = answer(peer, epoch)
            querier = self.parties[peer]
            plaintext = plaintext_logits(responder.model, torch.from_numpy(querier.x))
            self.answers.append((querier.querying["B"].decode(result[0].wire), plaintext))
            return result

        responder.answer = recorded


THREE_PARTIES_SWAP = {
    "name": "three_parties_swap_ckks",
    "seed": 13,
    "epochs": 3,
    "dataset": {"kind": "synthetic", "train_samples": 150, "test_samples": 60, "classes": 3, "side": 3},
    "scheme": {"kind": "ckks", "mode": "real", "depth": 3, "flood_std": 0.0},  # decoded compared with plaintext
    "training": {"batch_size": 16, "learning_rate": 0.01, "warmup_epochs": 1},
    "parties": {
        "A": {"samples": 40, "model": {"kind": "mlp", "hidden": [8], "activation": "poly2"}},
        "C": {"samples": 40, "model": {"kind": "mlp", "hidden": [4], "activation": "square"}},
        "B": {
            "role": "malicious", "samples": 40, "model": {"kind": "mlp", "hidden": [8], "activation": "poly2"},
            "attacks": [{"kind": "class_swap", "source": 0, "target": 2, "rate": 1.0}],
        },
    },
}


def test_three_heterogeneous_parties_with_a_swapping_one_run_in_real_ckks(tmp_path):
    parties = []

    def placement(scenario):
        parties.append(AnswerRecorder(scenario))
        return parties[0]

    summary = run_scenario(parse_scenario(THREE_PARTIES_SWAP), RunDirectory(tmp_path / "run"), progress=False, placement=placement)
    assert set(summary.parties) == {"A", "B", "C"}
    answers = parties[0].answers
    assert len(answers) == 2 * 2  # B answers A and C in each of the two exchange epochs
    swap = [2, 1, 0]
    for decoded, plaintext in answers:
        np.testing.assert_allclose(decoded, plaintext[:, swap], atol=1e-3)
        assert np.abs(plaintext[:, swap] - plaintext).max() > 0.01  # the swap changed the answers


def test_flooding_adds_noise_of_the_stated_size(digits, model, reference):
    querier, responder = _scheme(flood_std=0.05), _scheme(flood_std=0.05)
    responder.load(querier.setup(digits[0]))
    noise = querier.decode(responder.answer(model)) - reference
    assert noise.std() == pytest.approx(0.05, rel=0.1)


def test_accounted_bytes_equal_real_bytes(real, digits, model, reference):
    _, _, setup, answer, _ = real
    querier, responder = _scheme(mode="accounted"), _scheme(mode="accounted")
    accounted_setup = querier.setup(digits[0])
    responder.load(accounted_setup)
    accounted_answer = responder.answer(model)
    assert accounted_setup.charged_bytes == pytest.approx(len(setup.data), rel=0.001)
    assert accounted_answer.charged_bytes == pytest.approx(len(answer.data), rel=0.001)
    assert answer.charged_bytes == len(answer.data)  # real mode charges what it sends
    np.testing.assert_array_equal(querier.decode(accounted_answer), reference)


def test_accounted_bytes_are_a_function_of_the_parameters():
    """Two fresh measurements charge the same bytes, though SEAL's compressed sizes vary per object."""
    plan, samples = plan_for_depth(3, 26, 10), np.zeros((100, 1, 8, 8), np.float32)
    charged = []
    for _ in range(2):
        serialized_sizes.cache_clear()
        charged.append((setup_bytes(plan, samples), answer_bytes(plan, len(samples), CLASSES)))
    assert charged[0] == charged[1]


def test_too_deep_model_is_rejected_before_the_run():
    scheme = SCHEMES.get("ckks")
    default = SCHEMES.parse_spec("ckks").params
    deep = MODELS.create(MODELS.parse_spec({"kind": "mlp", "hidden": [8] * 16, "activation": "square"})).build((1, 8, 8), CLASSES)
    with pytest.raises(ValueError, match=r"depth 33, more than the maximum 31"):
        scheme.check_model(default, deep, (1, 8, 8))
    cnn = MODELS.create(MODELS.parse_spec({"kind": "he_cnn"})).build((1, 8, 8), CLASSES)
    scheme.check_model(default, cnn, (1, 8, 8))
    with pytest.raises(ValueError, match=r"depth 5, more than the scheme's depth 3"):
        scheme.check_model(SCHEMES.parse_spec({"kind": "ckks", "depth": 3}).params, cnn, (1, 8, 8))
    with pytest.raises(ValueError, match=r"depth 6 exceeds the maximum 5"):
        SCHEMES.parse_spec({"kind": "ckks", "depth": 6, "poly_modulus_degree": 8192})


def test_parameters_follow_depth_at_128_bit_security():
    assert MAX_COEFF_BITS == {n: seal.CoeffModulus.MaxBitCount(n, seal.SEC_LEVEL_TYPE.TC128) for n in MAX_COEFF_BITS}
    assert plan_for_depth(1, 26, 10).poly_modulus_degree == 4096
    assert plan_for_depth(5, 26, 10).coeff_mod_bit_sizes == (36, 26, 26, 26, 26, 26, 36)
    assert plan_for_depth(6, 26, 10).poly_modulus_degree == 16384
    assert plan_for_depth(31, 26, 10).poly_modulus_degree == 32768


def test_circuit_computes_the_model():
    """The lowered circuit (batch-norm folded, Poly2 as a shifted square, pool as sums) is the model."""
    torch.manual_seed(1)
    net = MODELS.create(MODELS.parse_spec({"kind": "he_cnn", "channels": 4, "hidden": 8})).build((1, 8, 8), CLASSES)
    x = torch.rand(32, 1, 8, 8)
    net(x)  # training mode: batch-norm running statistics become non-trivial
    net.eval()
    circuit = lower_model(net, (1, 8, 8))
    assert [type(stage).__name__ for stage in circuit] == ["Linear", "Square", "SumPool", "Linear", "Square", "Linear"]
    assert circuit_depth(circuit) == 5
    values = x.reshape(32, -1).double().numpy()
    for stage in circuit:
        if isinstance(stage, Linear):
            values = values @ stage.weight.T + stage.bias
        elif isinstance(stage, SumPool):
            values = np.stack([values[:, window].sum(1) for window in stage.windows], 1)
        else:
            values = (values + stage.shift) ** 2
    with torch.no_grad():
        np.testing.assert_allclose(values, net(x).double().numpy(), atol=1e-5)


def test_accounted_mode_refuses_what_real_mode_refuses(digits, model, reference):
    """A `scale` manipulation by a large factor cannot be encoded in real mode; accounted mode
    refuses it too, at the logit bound 2^(headroom_bits - 1) that real mode guarantees."""
    n = 50
    big = LogitMap(selected=np.ones(n, bool), matrix=1e5 * np.eye(CLASSES), offset=np.zeros((n, CLASSES)))
    assert np.abs(big.apply(reference[:n])).max() > 2 ** (10 - 1) > np.abs(reference).max()
    for mode in ("real", "accounted"):
        querier, responder = _scheme(mode=mode), _scheme(mode=mode)
        responder.load(querier.setup(digits[0][:n]))
        responder.answer(model)  # ordinary logits pass
        with pytest.raises(ValueError, match="encoded values are too large"):
            responder.answer(model, big)


@pytest.mark.parametrize("spec, shape", [
    ({"kind": "mlp", "hidden": [32], "activation": "poly2"}, (1, 8, 8)),
    ({"kind": "mlp", "hidden": [16, 8], "activation": "square"}, (1, 8, 8)),
    ({"kind": "mlp", "hidden": [], "activation": "square"}, (1, 8, 8)),
    ({"kind": "he_cnn", "hidden": 0, "activation": "square"}, (1, 8, 8)),
    ({"kind": "he_convnet", "channels": [2, 3]}, (3, 8, 8)),
], ids=str)
def test_model_depth_from_layer_types_is_the_lowered_circuits(spec, shape):
    model = MODELS.create(MODELS.parse_spec(spec)).build(shape, CLASSES).eval()
    assert model_depth(model) == circuit_depth(lower_model(model, shape))


def test_complex_packing_halves_setup_and_matches_plaintext(real, digits, model, reference):
    """Two features per slot: half the input ciphertexts, one conjugation key more, the same
    logits up to CKKS error, and accounted bytes still within 0.1% of the real ones."""
    _, _, plain_setup, _, _ = real
    querier, responder = _scheme(complex_packing=True), _scheme(complex_packing=True)
    setup = querier.setup(digits[0])
    _, frames = unpack(setup.data)
    assert len(frames) == 4 + 32  # parameters, public, relinearisation and conjugation keys; 64 features in 32 pairs
    assert seal_bytes(querier._keys.galois_keys) == bytes(frames[3])
    # The inputs cost half (the keys, large beside 1,797 digits, are a fixed cost).
    plain_inputs = sum(len(frame) for frame in unpack(plain_setup.data)[1][3:])
    assert sum(len(frame) for frame in frames[4:]) / plain_inputs == pytest.approx(0.5, abs=0.01)
    responder.load(setup)
    logits = querier.decode(responder.answer(model))
    assert np.abs(logits - reference).max() < TOLERANCE
    assert (logits.argmax(1) == reference.argmax(1)).mean() == 1.0
    accounted = _scheme(mode="accounted", complex_packing=True).setup(digits[0])
    assert accounted.charged_bytes == pytest.approx(len(setup.data), rel=0.001)


def test_complex_packing_of_an_odd_feature_count_pads_one_zero():
    plan = plan_for_depth(1, 26, 10, complex_packing=True)
    keys = make_keys(plan)
    public = PublicContext.load([memoryview(frame) for frame in public_frames(keys)], plan)
    x = np.random.default_rng(2).uniform(-1, 1, (6, 3))
    weight, bias = np.random.default_rng(4).normal(size=(2, 3)), np.array([0.5, -0.25])
    frames = encrypt_dataset(keys, x)
    assert len(frames) == 2
    out = evaluate(LocalShards(public, frames, 256), [Linear(weight, bias)], 0, len(frames), plan.scale, True)
    got = np.stack([_decrypt_ct(keys, ct, len(x)) for ct in out], 1)
    np.testing.assert_allclose(got, x @ weight.T + bias, atol=1e-3)


def _decrypt_ct(keys, ct, n: int) -> np.ndarray:
    plain = seal.Plaintext()
    keys.decryptor.decrypt(ct, plain)
    return np.array(keys.encoder.decode_double(plain)[:n])


def _encrypted(keys, rng, count: int) -> list[seal.Ciphertext]:
    cts = []
    for _ in range(count):
        plain = seal.Plaintext()
        keys.encoder.encode(rng.uniform(-1, 1, keys.plan.slots).tolist(), keys.plan.scale, plain)
        ct = seal.Ciphertext()
        keys.encryptor.encrypt(plain, ct)
        cts.append(ct)
    return cts


def test_coefficient_view_reads_and_writes_the_ciphertext_in_place():
    keys = make_keys(plan_for_depth(2, 26, 10))
    ct = _encrypted(keys, np.random.default_rng(0), 1)[0]
    view = coefficients(ct)
    data = ct.dyn_array()
    assert view.shape == (2, ct.coeff_modulus_size(), ct.poly_modulus_degree())
    assert [int(view.reshape(-1)[i]) for i in (0, 1, 5000, data.size() - 1)] == [data.at(i) for i in (0, 1, 5000, data.size() - 1)]
    copy = ciphertext_from(keys.context, ct.parms_id(), view, ct.scale)
    assert copy.is_ntt_form() and copy.scale == ct.scale and np.array_equal(coefficients(copy), view)
    plain = seal.Plaintext()
    keys.decryptor.decrypt(copy, plain)
    assert keys.encoder.decode_double(plain)[:4] == pytest.approx(_decrypt_ct(keys, ct, 4), abs=1e-9)


@pytest.mark.parametrize("depth, scale_bits, headroom_bits", [(2, 26, 10), (1, 40, 20)])  # a 36-bit and a 60-bit q0
def test_bulk_linear_combination_equals_seal_products_bit_for_bit(depth, scale_bits, headroom_bits):
    keys = make_keys(plan_for_depth(depth, scale_bits, headroom_bits))
    rng = np.random.default_rng(1)
    cts = _encrypted(keys, rng, 12)
    weight = rng.normal(0, 3, (5, 12)) * (rng.random((5, 12)) < 0.6)
    weight[3] = 0.0  # an output no product reaches
    parms_id, scale = cts[0].parms_id(), 2.0**scale_bits
    evaluator = seal.Evaluator(keys.context)
    moduli = np.array([m.value() for m in keys.context.get_context_data(parms_id).parms().coeff_modulus()], dtype=np.int64)
    rounded = IntegerWeights.rounded(weight, scale)
    got = np.zeros((5, *coefficients(cts[0]).shape), dtype=np.uint64)
    stacked = np.stack([coefficients(ct) for ct in cts])
    add_combination(stacked[:7], IntegerWeights.rounded(weight[:, :7], scale), moduli, got)  # two blocks, accumulated
    add_combination(stacked[7:], IntegerWeights.rounded(weight[:, 7:], scale), moduli, got)
    assert rounded.empty_rows().tolist() == [3]
    for o in (0, 1, 2, 4):
        total = None
        for j in np.flatnonzero(weight[o]):
            plain, product = seal.Plaintext(), seal.Ciphertext()
            keys.encoder.encode(float(weight[o, j]), parms_id, scale, plain)
            evaluator.multiply_plain(cts[j], plain, product)
            if total is None:
                total = product
            else:
                evaluator.add_inplace(total, product)
        assert np.array_equal(got[o], coefficients(total))
    assert not got[3].any()

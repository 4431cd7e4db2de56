"""CKKS secure inference: keys that stay home, logits that match plaintext, exact byte accounting."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal.sealapi as seal
import torch
from sklearn.datasets import load_digits
from torch import nn

from testbed.models import MODELS
from testbed.schemes import SCHEMES, LogitMap
from testbed.schemes.ckks import MAX_COEFF_BITS, ckks_parameters
from testbed.schemes.ckks_circuit import Linear, SumPool, circuit_depth, lower_model
from testbed.schemes.ckks_wire import seal_bytes, seal_load, unpack

CLASSES = 10
# Measured max |error| on these logits (|logit| up to 54) is about 7e-4 at scale 2^26.
TOLERANCE = 5e-3


def _scheme(**params):
    return SCHEMES.create(SCHEMES.parse_spec({"kind": "ckks", "depth": 3, **params}), CLASSES, 7)


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
    assert context == [seal_bytes(keys.parms), seal_bytes(keys.public_key), seal_bytes(keys.relin_keys)]
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
    assert accounted_setup.charged_bytes == pytest.approx(len(setup.data), rel=0.01)
    assert accounted_answer.charged_bytes == pytest.approx(len(answer.data), rel=0.01)
    assert answer.charged_bytes == len(answer.data)  # real mode charges what it sends
    np.testing.assert_array_equal(querier.decode(accounted_answer), reference)


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
    assert ckks_parameters(1, 26, 10).poly_modulus_degree == 4096
    assert ckks_parameters(5, 26, 10).coeff_mod_bit_sizes == (36, 26, 26, 26, 26, 26, 36)
    assert ckks_parameters(6, 26, 10).poly_modulus_degree == 16384
    assert ckks_parameters(31, 26, 10).poly_modulus_degree == 32768


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

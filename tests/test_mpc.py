"""The MPC joint-training baseline's communication: the cost model by hand, CrypTen against the
model (when the optional extra is installed), and the published figures' table."""

import sys

import pandas as pd
import pytest
from torch import nn

from analysis.published_mpc import COLUMNS, CSV_PATH, load_published
from testbed.models import Poly2, Square
from testbed.mpc_cost.cost_model import Cost, epoch_cost, training_cost
from testbed.mpc_cost.crypten_measure import bytes_per_epoch, crypten_unavailable_reason, measure_crypten_training
from testbed.registry import MODELS

BYTES_PER_OPENED = 2 * 8  # both parties send their 8-byte share of every opened ring element


def build(spec, input_shape, classes):
    return MODELS.create(MODELS.parse_spec(spec)).build(input_shape, classes)


def test_one_linear_layer_by_hand():
    b, d_in, d_out = 5, 4, 3
    layer = training_cost(nn.Sequential(nn.Linear(d_in, d_out)), (d_in,), d_out, b).per_layer[0]
    # forward X W^T: open X - A (b x d_in) and W - B (d_in x d_out) in one round
    assert layer.forward == Cost(opened=b * d_in + d_in * d_out, rounds=1, dealer=b * d_out)
    assert layer.forward.bytes == BYTES_PER_OPENED * (20 + 12) == 512
    # backward: dX = dY W opens (b x d_out) and W; then dW = X^T dY opens X and dY
    assert layer.backward == Cost(opened=(15 + 12) + (20 + 15), rounds=2, dealer=20 + 12)


@pytest.mark.parametrize(
    "activation, forward, backward",
    [
        # a square opens x - r once; its gradient g * 2x is one Beaver product of two n-tensors
        (Square(), (1, 1), (2, 1)),
        (Poly2(), (1, 1), (2, 1)),
        # ReLU: A2B adder = AND of the two shares (2n) + 6 levels of ANDs on stacked (S, P) (4n each),
        # B2A of the sign bit (n), x * bit (2n): 29n in 1 + 6 + 1 + 1 rounds; backward g * bit
        (nn.ReLU(), (29, 9), (2, 1)),
    ],
)
def test_activations_by_hand(activation, forward, backward):
    b, width = 4, 6
    n = b * width
    layer = training_cost(nn.Sequential(activation), (width,), width, b).per_layer[0]
    assert (layer.forward.opened, layer.forward.rounds) == (forward[0] * n, forward[1])
    assert (layer.backward.opened, layer.backward.rounds) == (backward[0] * n, backward[1])


def test_softmax_cross_entropy_by_hand():
    b, k = 32, 10
    n = b * k
    loss = training_cost(nn.Sequential(nn.Linear(4, k)), (4,), k, b).per_layer[-2]
    # max over 10 classes: int(ln 10) = 2 halving steps (10 -> 5 -> 3), each a comparison (27 per
    # element) and two selecting products; an all-pairs comparison of the 3 left, a product,
    # a random tie-break and a product for the value; then CrypTen's one-hot argmax over all 10
    halving = (27 * 160 + 2 * 320) + (27 * 64 + 2 * 128)
    pairwise = 27 * 192 + 192 + (16 * b + 2 * b + 27 * 96) + 192
    one_hot = 13 * n + (16 * b + 2 * b + 27 * n)
    softmax = halving + pairwise + one_hot + 8 * n + 38 * b + (n + b)  # exp, 1/sum, product
    log = 8 * n + 2 * (8 * n + 2 * n + 9 * n)  # initial exp, 2 Householder steps
    assert loss.forward.opened == softmax + log + 2 * n == 48544
    assert loss.forward.rounds == (10 + 10 + 20 + 7 + 10) + 8 + 28 + 1 + 32 + 1 == 127
    assert loss.backward == Cost(opened=n + 1, rounds=1, dealer=n)  # (p - y) / b times the encrypted seed 1


def test_totals_add_up_over_layers_and_epochs():
    mlp = build({"kind": "mlp", "hidden": [64], "activation": "poly2"}, (1, 8, 8), 10)
    estimate = training_cost(mlp, (1, 8, 8), 10, 32)
    names = [layer.name.split()[0] for layer in estimate.per_layer]
    assert names == ["Flatten", "Linear", "Poly2", "Linear", "CrossEntropy", "SGD"]
    assert estimate.rounds_per_batch == sum(layer.forward.rounds + layer.backward.rounds for layer in estimate.per_layer)
    assert estimate.bytes_per_batch == BYTES_PER_OPENED * sum(layer.total.opened for layer in estimate.per_layer)
    assert estimate.per_layer[-1].total == Cost()  # SGD with a public learning rate is local
    # 1,200 samples at 32: 37 full batches and one of 16
    epoch = epoch_cost(mlp, (1, 8, 8), 10, 32, 1200)
    last = training_cost(mlp, (1, 8, 8), 10, 16)
    assert epoch.batches == 38
    assert epoch.bytes == 37 * estimate.bytes_per_batch + last.bytes_per_batch
    assert epoch.rounds == 38 * estimate.rounds_per_batch  # rounds do not depend on the batch size


def test_convnet_pooling_is_free_and_batch_norm_is_not():
    cnn = build({"kind": "he_cnn", "channels": 2, "hidden": 4}, (3, 8, 8), 10)
    by_kind = {layer.name.split()[0]: layer for layer in training_cost(cnn, (3, 8, 8), 10, 4).per_layer}
    assert by_kind["AvgPool2d"].total == Cost() and by_kind["Flatten"].total == Cost()
    assert by_kind["BatchNorm2d"].forward.rounds == 1 + (8 + 3 * 3) + 2  # variance, 1/sqrt, normalise and scale


def test_cost_model_rejects_what_it_does_not_cover():
    with pytest.raises(ValueError, match="Sigmoid"):
        training_cost(nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()), (4,), 3, 8)
    with pytest.raises(ValueError, match="does not match"):
        training_cost(nn.Sequential(nn.Linear(4, 3)), (4,), 5, 8)


# -- CrypTen (optional) ------------------------------------------------------------------------


@pytest.fixture
def crypten_available():
    reason = crypten_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def assert_matches_model(model, input_shape, classes, batch_size, provider="TFP"):
    measured = measure_crypten_training(model, input_shape, classes, batch_size, batches=1, provider=provider)
    modelled = training_cost(model, input_shape, classes, batch_size)
    assert measured["source"].startswith("measured: CrypTen 0.4.1")
    # online traffic: the model is exact (docs/mpc.md); any difference is a finding, not noise
    assert measured["bytes_per_batch"] == modelled.bytes_per_batch
    assert measured["rounds_per_batch"] == modelled.rounds_per_batch
    assert measured["phases"]["step"] == {"bytes": 0, "rounds": 0}
    return measured, modelled


def test_crypten_tiny_relu_mlp_matches_the_model(crypten_available):
    measured, _ = assert_matches_model(build({"kind": "mlp", "hidden": [5], "activation": "relu"}, (1, 2, 2), 3), (1, 2, 2), 3, 4)
    assert measured["dealer_bytes_per_batch"] is None  # TFP: party 0 makes the triples, nothing is sent
    assert bytes_per_epoch(measured, 10) == 3 * measured["bytes_per_batch"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, input_shape, batch_size",
    [
        ({"kind": "mlp", "hidden": [64], "activation": "poly2"}, (1, 8, 8), 32),
        ({"kind": "mlp", "hidden": [64], "activation": "relu"}, (1, 8, 8), 32),
        ({"kind": "mlp", "hidden": [16, 8], "activation": "square", "batch_norm": True}, (1, 8, 8), 8),
        ({"kind": "he_cnn", "channels": 4, "stride": 2, "padding": 1, "hidden": 8}, (3, 12, 12), 8),
        ({"kind": "relu_cnn", "channels": [2, 4], "hidden": 8}, (3, 9, 9), 4),
    ],
)
def test_crypten_matches_the_model(crypten_available, spec, input_shape, batch_size):
    assert_matches_model(build(spec, input_shape, 10), input_shape, 10, batch_size)


@pytest.mark.slow
def test_crypten_trusted_third_party_sends_what_the_model_says(crypten_available):
    model = build({"kind": "mlp", "hidden": [8], "activation": "relu"}, (1, 4, 4), 10)
    measured, modelled = assert_matches_model(model, (1, 4, 4), 10, 8, provider="TTP")
    # CrypTen also counts each request and the reply's shape with sys.getsizeof: ~250 bytes a round
    overhead = measured["dealer_bytes_per_batch"] - modelled.dealer_bytes_per_batch
    assert 0 < overhead < 300 * modelled.rounds_per_batch


def test_without_crypten_nothing_is_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "crypten", None)  # what an absent package looks like to importlib
    assert "not installed" in crypten_unavailable_reason()
    model = nn.Sequential(nn.Linear(4, 3))
    assert measure_crypten_training(model, (4,), 3, 8) is None


def test_a_broken_crypten_install_is_reported(monkeypatch, tmp_path):
    (tmp_path / "crypten").mkdir()
    (tmp_path / "crypten" / "__init__.py").write_text("raise RuntimeError('broken install')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "crypten", raising=False)
    assert crypten_unavailable_reason() == "CrypTen failed to import: RuntimeError: broken install"


# -- published figures ---------------------------------------------------------------------------


def test_published_figures_load_with_numeric_values():
    table = load_published()
    assert tuple(table.columns) == COLUMNS + ("source",) and len(table) > 0
    assert table["source"].str.startswith("published: ").all()
    assert table["value"].dtype.kind == "f" and table["value"].notna().all()
    assert table["parties"].between(2, 4).all()
    assert (table["as_printed"].str.len() > 0).all() and (table["where"].str.len() > 0).all()


def test_published_table_rejects_a_non_numeric_value(tmp_path):
    rows = pd.read_csv(CSV_PATH, dtype=str, keep_default_na=False)
    rows.loc[0, "value"] = "about two"
    rows.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(ValueError, match="line 2: value"):
        load_published(tmp_path / "broken.csv")

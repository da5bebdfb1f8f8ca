"""The NumPy model zoo of ferroptim.train: losses, metrics, models.

Every loss's backward pass is checked against central finite differences in
float64 (relative error below 1e-6, inputs kept away from the kinks of MAE
and Huber). Loss values are also checked against independent naive formulas
(finite differences alone only check that the grad matches the value) and
against exact values at logits of +-1e4. A short Adam loop checks that the
models train with ``opt.step()`` reading ``arena.grads``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ferroptim as fo
from _layers_helpers import TOL, away_from_zero, numeric_grad, rel_err
from ferroptim.train.layers import Dense, Dropout, ReLU, Sequential, Sigmoid, layer_from_config
from ferroptim.train.losses import (
    MAE,
    MSE,
    BinaryCrossEntropyWithLogits,
    Huber,
    Loss,
    SoftmaxCrossEntropy,
    get_loss,
)
from ferroptim.train.metrics import (
    accuracy,
    get_metric,
    higher_is_better,
    mae,
    mse,
    r2,
    top_k_accuracy,
)
from ferroptim.train.models import build_model, linear_regression, logistic_regression, mlp

# -- losses -------------------------------------------------------------------


def check_loss(loss: Loss, pred: np.ndarray, target: np.ndarray) -> None:
    value, grad = loss(pred, target)
    assert isinstance(value, float) and grad.shape == pred.shape
    num = numeric_grad(lambda: loss(pred, target)[0], pred)
    assert rel_err(grad, num) < TOL


def test_regression_losses_backward_and_values() -> None:
    rng = np.random.default_rng(5)
    pred = rng.normal(size=(6, 2))
    offset = away_from_zero(rng.normal(size=(6, 2)), 0.2)
    target = pred - offset
    r = pred - target
    check_loss(MSE(), pred, target)
    check_loss(MAE(), pred, target)
    assert MSE()(pred, target)[0] == pytest.approx(np.mean(r**2), rel=1e-14)
    assert MAE()(pred, target)[0] == pytest.approx(np.mean(np.abs(r)), rel=1e-14)
    # Huber: residuals in both regions, away from +-delta
    delta = 0.7
    mags = np.array([0.1, 0.3, 0.5, 0.9, 1.4, 2.5])
    signs = np.array([1, -1, 1, -1, -1, 1])
    res = np.stack([mags * signs, mags[::-1] * signs], axis=1)
    target = pred - res
    check_loss(Huber(delta), pred, target)
    a = np.abs(res)
    expect = np.mean(np.where(a <= delta, 0.5 * res**2, delta * (a - 0.5 * delta)))
    assert Huber(delta)(pred, target)[0] == pytest.approx(expect, rel=1e-14)
    assert Huber(delta)(np.array([3.0]), np.array([0.0]))[0] == pytest.approx(0.7 * (3 - 0.35))


def naive_bce(z: np.ndarray, t: np.ndarray) -> float:
    s = 1 / (1 + np.exp(-z))
    return float(np.mean(-t * np.log(s) - (1 - t) * np.log(1 - s)))


def test_bce_backward_and_values() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(scale=3.0, size=(7, 1))
    soft = rng.uniform(size=(7, 1))
    hard = rng.integers(0, 2, size=7).astype(np.float64)  # (N,) targets for (N, 1) logits
    loss = BinaryCrossEntropyWithLogits()
    check_loss(loss, z, soft)
    check_loss(loss, z, hard)
    assert loss(z, soft)[0] == pytest.approx(naive_bce(z, soft), rel=1e-12)
    assert loss(z, hard)[0] == pytest.approx(naive_bce(z, hard[:, None]), rel=1e-12)
    # no cancellation: -log(sigmoid(30)) = log1p(exp(-30)), to full precision
    assert loss(np.array([30.0]), np.array([1.0]))[0] == pytest.approx(
        math.log1p(math.exp(-30)), rel=1e-12, abs=0
    )
    assert loss(np.array([-30.0]), np.array([0.0]))[0] == pytest.approx(
        math.log1p(math.exp(-30)), rel=1e-12, abs=0
    )


def naive_ce(z: np.ndarray, q: np.ndarray) -> float:
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return float(-np.sum(q * np.log(p)) / len(z))


def test_cross_entropy_backward_and_values() -> None:
    rng = np.random.default_rng(7)
    n, c = 6, 4
    z = rng.normal(scale=2.0, size=(n, c))
    labels = rng.integers(0, c, size=n)
    onehot = np.eye(c)[labels]
    soft = rng.uniform(size=(n, c))  # rows not summing to 1: the general grad
    ce = SoftmaxCrossEntropy()
    for target in (labels, onehot, soft, labels.astype(np.float64)):
        check_loss(ce, z, target)
    assert ce(z, labels)[0] == pytest.approx(naive_ce(z, onehot), rel=1e-12)
    assert ce(z, onehot)[0] == pytest.approx(naive_ce(z, onehot), rel=1e-12)
    assert ce(z, soft)[0] == pytest.approx(naive_ce(z, soft), rel=1e-12)
    np.testing.assert_allclose(ce(z, labels)[1], ce(z, onehot)[1], rtol=1e-12, atol=1e-15)
    eps = 0.1
    smooth = SoftmaxCrossEntropy(label_smoothing=eps)
    check_loss(smooth, z, labels)
    check_loss(smooth, z, onehot)
    q = (1 - eps) * onehot + eps / c
    assert smooth(z, labels)[0] == pytest.approx(naive_ce(z, q), rel=1e-12)
    assert smooth(z, onehot)[0] == pytest.approx(naive_ce(z, q), rel=1e-12)
    np.testing.assert_allclose(smooth(z, labels)[1], smooth(z, onehot)[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_at_huge_logits(dtype: type) -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        z = np.array([1e4, -1e4, 1e4, -1e4], dtype)
        t = np.array([1, 0, 0, 1], dtype)
        value, grad = BinaryCrossEntropyWithLogits()(z, t)
        assert value == 5e3  # per sample: 0, 0, 1e4, 1e4
        assert grad.dtype == dtype
        np.testing.assert_array_equal(grad, np.array([0, 0, 0.25, -0.25], dtype))
        logits = np.array([[1e4, 0, -1e4]] * 3, dtype)
        value, grad = SoftmaxCrossEntropy()(logits, np.array([0, 1, 2]))
        assert value == pytest.approx((0 + 1e4 + 2e4) / 3, rel=1e-12)
        assert grad.dtype == dtype
        expect = (np.array([[1, 0, 0]] * 3) - np.eye(3)) / 3
        np.testing.assert_allclose(grad, expect, atol=1e-7)
        value, grad = SoftmaxCrossEntropy(label_smoothing=0.3)(logits, np.array([0, 1, 2]))
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        # q = 0.8 at the label, 0.1 elsewhere; -log p = (0, 1e4, 2e4) in every row
        rows = [0.1 * 1e4 + 0.1 * 2e4, 0.8 * 1e4 + 0.1 * 2e4, 0.1 * 1e4 + 0.8 * 2e4]
        assert value == pytest.approx(sum(rows) / 3, rel=1e-6)
        for loss in (MSE(), MAE(), Huber(1.0)):
            value, grad = loss(z, -z)
            assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert Huber(1.0)(z, -z)[0] == pytest.approx(2e4 - 0.5)


def test_loss_shapes_dtypes_and_registry() -> None:
    pred = np.arange(6, dtype=np.float32).reshape(3, 2)
    value, grad = MSE()(pred, np.zeros(6))
    assert grad.dtype == np.float32 and grad.shape == (3, 2)
    assert value == pytest.approx(np.mean(np.arange(6.0) ** 2))
    with pytest.raises(ValueError):
        MSE()(np.zeros((3, 1)), np.zeros(4))
    with pytest.raises(ValueError):
        SoftmaxCrossEntropy()(np.zeros((3, 2)), np.array([0, 2, 1]))  # label out of range
    with pytest.raises(ValueError):
        SoftmaxCrossEntropy()(np.zeros((3, 2)), np.array([0.5, 1, 1]))
    with pytest.raises(ValueError):
        SoftmaxCrossEntropy()(np.zeros(3), np.array([0, 1, 1]))
    assert isinstance(get_loss("mse"), MSE)
    assert isinstance(get_loss("mae"), MAE)
    assert isinstance(get_loss("bce"), BinaryCrossEntropyWithLogits)
    assert isinstance(get_loss("cross_entropy"), SoftmaxCrossEntropy)
    huber = get_loss("huber", delta=2.5)
    assert isinstance(huber, Huber) and huber.delta == 2.5
    assert get_loss("cross_entropy", label_smoothing=0.1).label_smoothing == 0.1
    assert get_loss(huber) is huber
    with pytest.raises(ValueError):
        get_loss("hinge")
    with pytest.raises(ValueError):
        get_loss("mse", delta=1.0)
    with pytest.raises(ValueError):
        Huber(0)


# -- metrics ------------------------------------------------------------------


def test_accuracy() -> None:
    logits = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 5], [4, 5, 0]], np.float32)
    labels = np.array([0, 1, 2, 0])
    assert accuracy(logits, labels) == 0.75
    assert accuracy(logits, np.eye(3)[labels]) == 0.75
    assert accuracy(logits, np.array([1, 1, 1, 1])) == 0.5
    single = np.array([[2.0], [-1.0], [0.5], [-3.0], [0.0]])
    assert accuracy(single, np.array([1, 0, 0, 0, 1])) == 0.6  # logit 0 predicts class 0
    assert accuracy(single.ravel(), np.array([1.0, 0, 1, 0, 0])) == 1.0


def test_top_k_accuracy() -> None:
    logits = np.array([[3, 2, 1, 0], [0, 1, 2, 3], [1, 3, 2, 0], [0, 0, 5, 1]], np.float64)
    labels = np.array([0, 1, 2, 3])
    assert top_k_accuracy(logits, labels, k=1) == accuracy(logits, labels) == 0.25
    assert top_k_accuracy(logits, labels, k=2) == 0.75  # row 1: label ranks third
    assert top_k_accuracy(logits, labels, k=3) == 1.0
    assert top_k_accuracy(logits, np.eye(4)[labels], k=2) == 0.75
    assert top_k_accuracy(np.array([[1.0, 1.0, 0.0]]), np.array([1]), k=1) == 1.0  # a tie
    with pytest.raises(ValueError):
        top_k_accuracy(logits, labels, k=0)


def test_r2_mse_mae() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2(t, t) == 1.0
    assert r2(np.full(4, 2.5), t) == pytest.approx(0.0, abs=1e-15)
    assert r2(np.array([1.0, 2.0, 3.0, 5.0]), t) == pytest.approx(1 - 1 / 5)
    assert r2(np.array([4.0, 3.0, 2.0, 1.0]), t) == pytest.approx(1 - 20 / 5)
    two = np.stack([t, 2 * t], axis=1)
    pred = np.stack([np.array([1.0, 2.0, 3.0, 5.0]), 2 * t], axis=1)
    assert r2(pred, two) == pytest.approx((0.8 + 1.0) / 2)
    assert r2(np.array([[1.0], [2.0]]), np.array([1.0, 2.0])) == 1.0  # (N,) targets, (N, 1) preds
    assert r2(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0  # constant target, exact
    assert r2(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == 0.0  # constant target, missed
    assert mse(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == 5.0
    assert mae(np.array([1.0, -3.0]), np.array([0.0, 0.0])) == 2.0


def test_metric_registry() -> None:
    assert get_metric("accuracy") is accuracy and get_metric("acc") is accuracy
    assert get_metric("r2") is r2 and get_metric("mse") is mse
    logits = np.array([[3, 2, 1, 0], [0, 1, 2, 3]], np.float64)
    labels = np.array([1, 1])
    assert get_metric("top_2_accuracy")(logits, labels) == 0.5
    assert get_metric("top_k_accuracy", k=3)(logits, labels) == 1.0
    assert higher_is_better("accuracy") and higher_is_better("top_5_accuracy")
    assert not higher_is_better("mse") and not higher_is_better("mae")
    with pytest.raises(ValueError):
        get_metric("f1")
    with pytest.raises(ValueError):
        get_metric("accuracy", k=2)


# -- models -------------------------------------------------------------------


MODEL_FACTORIES = {
    "linear_regression": lambda seed: linear_regression(5, 2, seed=seed),
    "logistic_regression": lambda seed: logistic_regression(5, 3, seed=seed, dtype=np.float64),
    "mlp": lambda seed: mlp(5, (8, 4), 3, activation="tanh", dropout=0.2, seed=seed),
    "sequential": lambda seed: Sequential(
        [Dense(5, 4, init="he"), ReLU(), Dropout(0.1), Dense(4, 2), Sigmoid()], seed=seed
    ),
}


@pytest.mark.parametrize("kind", list(MODEL_FACTORIES))
def test_build_model_from_config(kind: str) -> None:
    model = MODEL_FACTORIES[kind](3)
    config = json.loads(json.dumps(model.config()))
    assert config["type"] == kind and config["seed"] == 3
    rebuilt = build_model(config)
    assert rebuilt.config() == config
    assert rebuilt.arena.names == model.arena.names
    assert rebuilt.arena.shapes == model.arena.shapes
    assert rebuilt.arena.dtype == model.arena.dtype
    np.testing.assert_array_equal(rebuilt.arena.data, model.arena.data)
    assert rebuilt.get_rng_state() == model.get_rng_state()
    X = np.random.default_rng(0).normal(size=(4, 5))
    np.testing.assert_array_equal(rebuilt.forward(X, True), model.forward(X, True))
    other = MODEL_FACTORIES[kind](4)
    assert not np.array_equal(other.arena.data, model.arena.data)


def test_model_configs_and_conventions() -> None:
    assert linear_regression(3).forward(np.ones((2, 3)), False).shape == (2, 1)
    assert logistic_regression(3, 2).forward(np.ones((2, 3)), False).shape == (2, 2)
    assert logistic_regression(3, 1).forward(np.ones((2, 3)), False).shape == (2, 1)
    model = mlp(3, hidden=(), n_outputs=4)
    assert model.arena.names == ["head.W", "head.b"]
    assert linear_regression(3).arena.names == ["head.W", "head.b"]
    assert logistic_regression(3, 2).arena.names == ["head.W", "head.b"]
    assert mlp(3).config()["hidden"] == [128, 64]
    for bad in ({"type": "resnet"}, {"type": "mlp", "n_features": 3, "width": 2}, {}):
        with pytest.raises(ValueError):
            build_model(bad)
    with pytest.raises(ValueError):
        mlp(3, activation="gelu")
    with pytest.raises(ValueError):
        layer_from_config({"type": "Conv2d"})
    assert isinstance(layer_from_config({"type": "Dropout", "p": 0.2}), Dropout)


# -- training with ferroptim ---------------------------------------------------


def test_linear_regression_trains_with_adam() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 5)).astype(np.float32)
    w = rng.normal(scale=2.0, size=(5, 1))
    y = (X @ w + 0.5 + 0.01 * rng.normal(size=(256, 1))).astype(np.float32)
    model = linear_regression(5, 1, seed=0)
    opt = fo.Adam(model.arena, lr=1e-2)
    loss = get_loss("mse")
    first = loss(model.forward(X, False), y)[0]
    for _ in range(600):
        _, grad = loss(model.forward(X, True), y)
        model.backward(grad)
        opt.step()
    final = loss(model.forward(X, False), y)[0]
    assert final < first / 100, (first, final)
    assert r2(model.forward(X, False), y) > 0.99
    assert np.shares_memory(model.layers[0].W, model.arena.data)


def spiral(n_per_class: int, n_classes: int, rng: np.random.Generator) -> tuple:
    X, y = [], []
    for c in range(n_classes):
        r = np.linspace(0.1, 1.0, n_per_class)
        theta = np.linspace(0, 3.0, n_per_class) + c * 2 * np.pi / n_classes
        theta += 0.1 * rng.normal(size=n_per_class)
        X.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        y.append(np.full(n_per_class, c))
    return np.concatenate(X).astype(np.float32), np.concatenate(y)


def test_mlp_classifies_spirals() -> None:
    rng = np.random.default_rng(1)
    X, y = spiral(100, 3, rng)
    model = mlp(2, hidden=(32, 32), n_outputs=3, seed=0)
    opt = fo.Adam(model.arena, lr=1e-2)
    loss = get_loss("cross_entropy")
    before = accuracy(model.forward(X, False), y)
    for _ in range(400):
        _, grad = loss(model.forward(X, True), y)
        model.backward(grad)
        opt.step()
    after = accuracy(model.forward(X, False), y)
    assert before < 0.7 and after > 0.9, (before, after)

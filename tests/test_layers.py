"""The NumPy model zoo of ferroptim.train: layers, Sequential, models, losses, metrics.

Every backward pass (each layer, each loss, and a whole Sequential writing
into its arena's grads) is checked against central finite differences in
float64 with a relative error below 1e-6, on small seeded random inputs kept
away from the kinks of ReLU, MAE and Huber. Loss values are also checked
against independent naive formulas (finite differences alone only check that
the grad matches the value) and against exact values at logits of +-1e4.
Dropout is checked for reproducibility (seed, get/set_rng_state through JSON),
eval-mode identity and inverted scaling; a short Adam loop checks that the
models train with ``opt.step()`` reading ``arena.grads``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.train.layers import (
    Dense,
    Dropout,
    Layer,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    layer_from_config,
)
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
from ferroptim.train.models import (
    Model,
    build_model,
    linear_regression,
    logistic_regression,
    mlp,
)

EPS = 1e-6
TOL = 1e-6


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of ``f()`` w.r.t. every entry of ``x`` (perturbed in place)."""
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f()
        x[idx] = old - eps
        down = f()
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def away_from_zero(a: np.ndarray, margin: float = 0.1) -> np.ndarray:
    return np.where(np.abs(a) < margin, np.copysign(margin, a) + a, a)


def bound_dense(n_in: int, n_out: int, rng: np.random.Generator) -> Dense:
    layer = Dense(n_in, n_out)
    params = {"W": rng.normal(size=(n_in, n_out)), "b": rng.normal(size=n_out)}
    grads = {"W": np.zeros((n_in, n_out)), "b": np.zeros(n_out)}
    layer.bind(params, grads)
    return layer


# -- layers: backward vs finite differences -------------------------------------------


def check_layer(layer: Layer, x: np.ndarray, rng: np.random.Generator) -> None:
    y = layer.forward(x, True)
    r = rng.normal(size=y.shape)  # L = sum(r * y), so dL/dy = r
    dx = layer.backward(r)
    assert dx is not None and dx.shape == x.shape

    def f() -> float:
        return float(np.sum(r * layer.forward(x, True)))

    assert rel_err(dx, numeric_grad(f, x)) < TOL


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
def test_dense_backward(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    layer = bound_dense(3, 5, rng)
    x = rng.normal(size=shape)
    y = layer.forward(x, True)
    r = rng.normal(size=y.shape)
    layer.dW.fill(np.nan)
    layer.db.fill(np.nan)
    dx = layer.backward(r)

    def f() -> float:
        return float(np.sum(r * layer.forward(x, True)))

    assert rel_err(dx, numeric_grad(f, x)) < TOL
    assert rel_err(layer.dW, numeric_grad(f, layer.W)) < TOL
    assert rel_err(layer.db, numeric_grad(f, layer.b)) < TOL
    assert layer.backward(r, input_grad=False) is None


@pytest.mark.parametrize("make", [ReLU, Tanh, Sigmoid], ids=lambda c: c.__name__)
def test_activation_backward(make: type[Layer]) -> None:
    rng = np.random.default_rng(1)
    x = away_from_zero(rng.normal(scale=2.0, size=(5, 4)))
    check_layer(make(), x, rng)


def test_relu_sigmoid_tanh_values() -> None:
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(ReLU().forward(x, True), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(Tanh().forward(x, True), np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(Sigmoid().forward(x, True), 1 / (1 + np.exp(-x)), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_at_extremes(dtype: type) -> None:
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], dtype)
    layer = Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x, True)
        dx = layer.backward(np.ones_like(x))
    assert y.dtype == dtype
    expect = [0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1]
    np.testing.assert_allclose(y, expect, rtol=1e-6)
    assert np.all(np.isfinite(dx)) and dx[0] == 0 and dx[-1] == 0 and dx[2] == 0.25


def test_dropout_backward() -> None:
    rng = np.random.default_rng(2)
    gen = np.random.Generator(np.random.PCG64(5))
    layer = Dropout(0.4, rng=gen)
    x = rng.normal(size=(6, 5))
    state = gen.bit_generator.state

    def f() -> float:
        gen.bit_generator.state = state  # the same mask every time
        return float(np.sum(r * layer.forward(x, True)))

    r = rng.normal(size=x.shape)
    f()
    dx = layer.backward(r)
    zeros = np.mean(dx == 0)
    assert 0 < zeros < 1  # the mask is not trivial
    assert rel_err(dx, numeric_grad(f, x)) < TOL


def test_backward_before_forward_raises() -> None:
    for layer in (bound_dense(2, 2, np.random.default_rng(0)), ReLU(), Tanh(), Sigmoid()):
        with pytest.raises(RuntimeError):
            layer.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError):
        Dense(2, 2).forward(np.ones((1, 2)), True)  # not bound
    with pytest.raises(ValueError):
        bound_dense(2, 3, np.random.default_rng(0)).forward(np.ones((1, 3)), True)


# -- Sequential ---------------------------------------------------------------


def test_sequential_names_init_and_binding() -> None:
    model = mlp(4, hidden=(8, 6), n_outputs=3, seed=0)
    # Named layers, so fine-tuning patterns ("head.*", "hidden*") apply.
    assert model.arena.names == [
        "hidden1.W",
        "hidden1.b",
        "hidden2.W",
        "hidden2.b",
        "head.W",
        "head.b",
    ]
    assert model.arena.shapes["hidden2.W"] == (8, 6) and model.arena.shapes["head.b"] == (3,)
    assert model.arena.dtype == np.float32
    for i, name in ((0, "hidden1"), (2, "hidden2"), (4, "head")):
        layer = model.layers[i]
        assert isinstance(layer, Dense)
        assert np.shares_memory(layer.W, model.arena.data)
        assert np.shares_memory(layer.dW, model.arena.grad)
        assert np.shares_memory(layer.W, model.arena.params[f"{name}.W"])
        assert np.all(model.arena.params[f"{name}.b"] == 0)
        assert np.any(model.arena.params[f"{name}.W"] != 0)
    assert [model.layers[i].init for i in (0, 2, 4)] == ["he", "he", "xavier"]
    tanh = mlp(4, hidden=(8,), n_outputs=3, activation="tanh")
    assert [tanh.layers[i].init for i in (0, 2)] == ["xavier", "xavier"]
    assert isinstance(model, Model)
    with_dropout = mlp(4, hidden=(8, 6), n_outputs=3, dropout=0.1)
    assert with_dropout.arena.names == model.arena.names
    assert model.arena.select("head.*").names == ["head.W", "head.b"]
    assert len(model.arena.select("hidden*").names) == 4


def test_sequential_layer_names() -> None:
    plain = Sequential([Dense(2, 3), ReLU(), Dense(3, 1)])
    assert plain.arena.names == ["0.W", "0.b", "2.W", "2.b"]  # unnamed: the index
    named = Sequential([Dense(2, 3), ReLU(), Dense(3, 1)], names=["base", None, "head"])
    assert named.arena.names == ["base.W", "base.b", "head.W", "head.b"]
    # The names survive a config round trip, with the same initial params.
    again = build_model(named.config())
    assert again.arena.names == named.arena.names
    np.testing.assert_array_equal(again.arena.data, named.arena.data)
    for bad in (["a", "b"], ["a", "a", "b"], ["a", "", "b"], "abc", ["a", 1, "b"]):
        with pytest.raises(ValueError, match="names"):
            Sequential([Dense(2, 3), ReLU(), Dense(3, 1)], names=bad)


def test_init_statistics() -> None:
    xavier = Sequential([Dense(400, 200, init="xavier")], seed=1, dtype=np.float64)
    he = Sequential([Dense(400, 200, init="he")], seed=1, dtype=np.float64)
    bound = math.sqrt(6 / 600)
    w = xavier.arena["0.W"]
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02
    assert abs(he.arena["0.W"].std() / math.sqrt(2 / 400) - 1) < 0.02
    assert abs(he.arena["0.W"].mean()) < 0.002
    # float32 holds the float64 draws, rounded
    f32 = Sequential([Dense(400, 200, init="he")], seed=1, dtype=np.float32)
    np.testing.assert_array_equal(f32.arena.data, he.arena.data.astype(np.float32))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_sequential_backward_fills_arena_grads(activation: str) -> None:
    rng = np.random.default_rng(3)
    model = mlp(5, (7, 6), 3, activation=activation, dropout=0.3, seed=4, dtype=np.float64)
    X = rng.normal(size=(8, 5))
    labels = rng.integers(0, 3, size=8)
    loss = SoftmaxCrossEntropy()
    state = model.get_rng_state()

    def f() -> float:
        model.set_rng_state(state)  # the same dropout masks every time
        return loss(model.forward(X, True), labels)[0]

    model.arena.grad.fill(np.nan)  # backward must overwrite every entry
    model.backward(loss(model_out(model, X, state), labels)[1])
    assert np.all(np.isfinite(model.arena.grad))
    analytic = model.arena.grad.copy()
    model.backward(loss(model_out(model, X, state), labels)[1])  # again: no accumulation
    np.testing.assert_array_equal(model.arena.grad, analytic)
    for name in model.arena.names:
        p, g = model.arena.params[name], model.arena.grads[name]
        flat = rng.choice(p.size, size=min(4, p.size), replace=False)
        idxs = [np.unravel_index(k, p.shape) for k in flat]
        num = []
        for idx in idxs:
            old = p[idx]
            p[idx] = old + EPS
            up = f()
            p[idx] = old - EPS
            down = f()
            p[idx] = old
            num.append((up - down) / (2 * EPS))
        assert rel_err([g[idx] for idx in idxs], num) < TOL, name


def model_out(model: Sequential, X: np.ndarray, state: dict) -> np.ndarray:
    model.set_rng_state(state)
    return model.forward(X, True)


def test_sequential_input_dropout_and_errors() -> None:
    rng = np.random.default_rng(4)
    model = Sequential([Dropout(0.5), Dense(3, 2), Tanh(), Dense(2, 1)], seed=1, dtype=np.float64)
    assert model.arena.names == ["1.W", "1.b", "3.W", "3.b"]
    X = rng.normal(size=(5, 3))
    state = model.get_rng_state()
    model.arena.grad.fill(np.nan)
    y = model.forward(X, True)
    model.backward(np.ones_like(y))
    assert np.all(np.isfinite(model.arena.grad))

    def f() -> float:
        model.set_rng_state(state)
        return float(model.forward(X, True).sum())

    w = model.arena.params["1.W"]
    num = numeric_grad(f, w)
    assert rel_err(model.arena.grads["1.W"], num) < TOL
    with pytest.raises(ValueError):
        model.backward(np.ones((4, 1)))
    with pytest.raises(RuntimeError):
        Sequential([Dense(2, 1)]).backward(np.ones((1, 1)))
    with pytest.raises(ValueError):
        Sequential([ReLU(), Tanh()])
    with pytest.raises(TypeError):
        Sequential([Dense(2, 1), "relu"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        Sequential([Dense(2, 1)], seed=-1)
    with pytest.raises(fo.exceptions.DtypeError):
        Sequential([Dense(2, 1)], dtype=np.int32)
    with pytest.raises(ValueError):
        Dense(0, 3)
    with pytest.raises(ValueError):
        Dense(2, 3, init="lecun")


class Spy(Layer):
    """An identity layer that records the ``input_grad`` flags it is given."""

    def __init__(self) -> None:
        self.flags: list[bool] = []

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return x

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        self.flags.append(input_grad)
        return grad_out if input_grad else None


def test_backward_skips_the_input_grad() -> None:
    class SpyDense(Dense):
        flags: list[bool] = []

        def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
            self.flags.append(input_grad)
            return super().backward(grad_out, input_grad)

    spies = [Spy(), Spy(), Spy()]
    model = Sequential([spies[0], SpyDense(3, 2), spies[1], Dense(2, 2), spies[2]], seed=0)
    model.forward(np.ones((4, 3)), True)
    model.backward(np.ones((4, 2)))
    # the first Dense computes no input grad and nothing before it is reached
    assert SpyDense.flags == [False]
    assert [s.flags for s in spies] == [[], [True], [True]]


def test_forward_casts_to_model_dtype() -> None:
    model = mlp(3, hidden=(4,), n_outputs=2, seed=0)
    out = model.forward(np.ones((2, 3), np.float64), train=False)
    assert out.dtype == np.float32
    model.backward(np.ones((2, 2), np.float64))
    assert model.arena.grad.dtype == np.float32 and np.any(model.arena.grad != 0)


# -- Dropout ------------------------------------------------------------------


def test_dropout_same_seed_same_mask() -> None:
    x = np.ones((50, 40))
    a = Dropout(0.5, rng=np.random.Generator(np.random.PCG64(11))).forward(x, True)
    b = Dropout(0.5, rng=np.random.Generator(np.random.PCG64(11))).forward(x, True)
    c = Dropout(0.5, rng=np.random.Generator(np.random.PCG64(12))).forward(x, True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    m1 = mlp(6, hidden=(16,), n_outputs=2, dropout=0.5, seed=7)
    m2 = mlp(6, hidden=(16,), n_outputs=2, dropout=0.5, seed=7)
    X = np.random.default_rng(0).normal(size=(10, 6))
    np.testing.assert_array_equal(m1.forward(X, True), m2.forward(X, True))


def test_dropout_rng_state_restores_stream() -> None:
    model = mlp(6, hidden=(16, 16), n_outputs=2, dropout=0.5, seed=3)
    X = np.random.default_rng(0).normal(size=(10, 6))
    state = json.loads(json.dumps(model.get_rng_state()))  # a checkpoint round trip
    y1 = model.forward(X, True)
    y2 = model.forward(X, True)
    assert not np.array_equal(y1, y2)  # the stream moves on
    model.set_rng_state(state)
    np.testing.assert_array_equal(model.forward(X, True), y1)
    np.testing.assert_array_equal(model.forward(X, True), y2)
    # a fresh model restored to the same state draws the same masks
    other = mlp(6, hidden=(16, 16), n_outputs=2, dropout=0.5, seed=99)
    other.arena.data[...] = model.arena.data
    other.set_rng_state(state)
    np.testing.assert_array_equal(other.forward(X, True), y1)
    with pytest.raises(ValueError):
        model.set_rng_state({"bit_generator": "MT19937", "state": {}})


def test_dropout_eval_is_identity() -> None:
    layer = Dropout(0.5, rng=np.random.Generator(np.random.PCG64(0)))
    x = np.random.default_rng(0).normal(size=(4, 5))
    assert layer.forward(x, False) is x
    g = np.ones_like(x)
    assert layer.backward(g) is g
    model = mlp(5, hidden=(8,), n_outputs=2, dropout=0.5, seed=0)
    state = model.get_rng_state()
    y1 = model.forward(x, train=False)
    no_dropout = mlp(5, hidden=(8,), n_outputs=2, seed=0)
    np.testing.assert_array_equal(y1, no_dropout.forward(x, train=False))
    assert model.get_rng_state() == state  # eval draws nothing
    with pytest.raises(RuntimeError):
        Dropout(0.5).forward(x, True)  # no generator
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            Dropout(p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_inverted_scaling(dtype: type) -> None:
    p = 0.3
    layer = Dropout(p, rng=np.random.Generator(np.random.PCG64(1)))
    y = layer.forward(np.ones(1_000_000, dtype), True)
    assert y.dtype == dtype
    # std of the mean is sqrt(p / (1 - p) / n) ~ 6.5e-4
    assert abs(y.mean() - 1) < 5e-3
    assert abs(np.mean(y == 0) - p) < 5e-3
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)


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

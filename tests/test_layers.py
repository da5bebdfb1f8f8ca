"""The NumPy model zoo of ferroptim.train: layers, Sequential and Dropout.

Every backward pass (each layer, and a whole Sequential writing into its
arena's grads) is checked against central finite differences in float64 with
a relative error below 1e-6, on small seeded random inputs kept away from the
kinks of ReLU. Dropout is checked for reproducibility (seed,
get/set_rng_state through JSON), eval-mode identity and inverted scaling.
Losses, metrics and models are in test_layers_losses.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ferroptim as fo
from _layers_helpers import EPS, TOL, away_from_zero, numeric_grad, rel_err
from ferroptim.train.layers import Dense, Dropout, Layer, ReLU, Sequential, Sigmoid, Tanh
from ferroptim.train.losses import SoftmaxCrossEntropy
from ferroptim.train.models import Model, build_model, mlp


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

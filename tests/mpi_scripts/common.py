"""A tiny float64 two-layer net with closed-form grads, for the MPI test scripts."""

from __future__ import annotations

import numpy as np

import ferroptim as fo

# "z" has no elements: it lies in no rank's slice, but in the weights' run.
SHAPES = {"w1": (7, 5), "b1": (5,), "w2": (5, 3), "z": (0,), "b2": (3,)}

# Every optimizer with hyperparameters that make its whole state move.
OPTIMIZERS = {
    "SGD": (fo.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "Adam": (fo.Adam, {"lr": 1e-2, "amsgrad": True}),
    "AdamW": (fo.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    "RMSprop": (fo.RMSprop, {"lr": 1e-2, "momentum": 0.5, "centered": True}),
    "Adagrad": (fo.Adagrad, {"lr": 5e-2}),
    "Adadelta": (fo.Adadelta, {"lr": 1.0}),
    "Adamax": (fo.Adamax, {"lr": 1e-2}),
    "NAdam": (fo.NAdam, {"lr": 1e-2}),
    "RAdam": (fo.RAdam, {"lr": 1e-2}),
    "Lion": (fo.Lion, {"lr": 1e-3}),
}


def data(seed: int, n: int = 64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 7))
    Y = rng.normal(size=(n, 3))
    return X, Y


def init_arena(seed: int, dtype=np.float64) -> fo.ParamArena:
    rng = np.random.default_rng(1000 + seed)
    arena = fo.ParamArena(SHAPES, dtype=dtype)
    arena.data[...] = rng.normal(scale=0.5, size=arena.size)
    return arena


def grads(arena: fo.ParamArena, X: np.ndarray, Y: np.ndarray) -> float:
    """Writes the mean-squared-error grads over (X, Y) into arena.grads."""
    p = arena.params
    h = np.tanh(X @ p["w1"] + p["b1"])
    out = h @ p["w2"] + p["b2"]
    diff = out - Y
    n = len(X)
    d_out = 2 * diff / n if n else diff
    arena.grads["w2"][...] = h.T @ d_out
    arena.grads["b2"][...] = d_out.sum(0)
    d_h = (d_out @ p["w2"].T) * (1 - h * h)
    arena.grads["w1"][...] = X.T @ d_h
    arena.grads["b1"][...] = d_h.sum(0)
    return float((diff * diff).mean()) if n else 0.0


def groups(arena: fo.ParamArena, lr: float) -> list[dict]:
    """Two groups with their own hyperparameters: the weights, and the biases."""
    return [
        {"params": arena.select(["w1", "w2", "z"])},
        {"params": arena.select(["b1", "b2"]), "lr": lr / 2},
    ]

"""`python -m ferroptim demo`: fit two small problems with every optimizer.

Least squares and logistic regression on seeded synthetic data, with the
gradients written out by hand, so the demo needs nothing but NumPy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import ferroptim as fo

Problem = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray, np.ndarray]]


def least_squares(seed: int = 0) -> tuple[Problem, int]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((512, 16))
    w_true = rng.standard_normal(16)
    y = x @ w_true + 0.5 + 0.01 * rng.standard_normal(512)

    def loss_and_grads(w: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r = x @ w + b - y
        return float(np.mean(r**2)), 2 * x.T @ r / len(y), np.atleast_1d(2 * np.mean(r))

    return loss_and_grads, 16


def logistic(seed: int = 0) -> tuple[Problem, int]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((512, 16))
    y = (x @ rng.standard_normal(16) > 0).astype(np.float64)

    def loss_and_grads(w: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        z = x @ w + b
        # log(1 + e^z) - y z, stable for large |z|
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        err = 1.0 / (1.0 + np.exp(-z)) - y
        return loss, x.T @ err / len(y), np.atleast_1d(np.mean(err))

    return loss_and_grads, 16


OPTIMIZERS: dict[str, Callable[[list[np.ndarray]], fo.Optimizer]] = {
    "SGD": lambda p: fo.SGD(p, lr=0.05, momentum=0.9),
    "Adam": lambda p: fo.Adam(p, lr=0.05),
    "AdamW": lambda p: fo.AdamW(p, lr=0.05),
    "RMSprop": lambda p: fo.RMSprop(p, lr=0.01),
}


def fit(problem: Problem, dim: int, make: Callable, steps: int) -> tuple[float, float]:
    w, b = np.zeros(dim), np.zeros(1)
    opt = make([w, b])
    first = problem(w, b)[0]
    for _ in range(steps):
        _, gw, gb = problem(w, b)
        opt.step([gw, gb])
    return first, problem(w, b)[0]


def main(steps: int = 200) -> int:
    print(f"ferroptim {fo.__version__}: SIMD {fo.simd_level()}, {fo.get_num_threads()} threads")
    print(f"{'problem':<16}{'optimizer':<10}{'loss at 0':>12}{f'loss at {steps}':>14}")
    for name, build in (("least squares", least_squares), ("logistic", logistic)):
        problem, dim = build()
        for opt_name, make in OPTIMIZERS.items():
            first, last = fit(problem, dim, make, steps)
            print(f"{name:<16}{opt_name:<10}{first:>12.5f}{last:>14.5f}")
    return 0

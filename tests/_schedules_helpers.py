"""Helpers shared by the test_schedules*.py modules."""

from __future__ import annotations

import numpy as np

import ferroptim as fo

STEPS = 1000
LRS = (0.1, 0.03)


def _ferro_opt(lrs: tuple[float, ...] = LRS, momentum: float = 0.0) -> fo.SGD:
    groups = [{"params": [np.zeros(1)], "lr": lr} for lr in lrs]
    return fo.SGD(groups, lr=lrs[0], momentum=momentum)


def _f1(epoch: int) -> float:
    return 1.0 / (1.0 + 0.01 * epoch)


def plateau_metric(n: int = STEPS, seed: int = 0) -> np.ndarray:
    """A loss that falls in stretches separated by plateaus of varied length, with noise."""
    rng = np.random.default_rng(seed)
    values, level = [], 1.0
    while len(values) < n:
        fall = int(rng.integers(5, 40))
        values += list(level * 0.97 ** np.arange(1, fall + 1))
        level = values[-1]
        flat = int(rng.integers(3, 40))
        values += list(level * (1 + 2e-5 * rng.standard_normal(flat)))
        if rng.random() < 0.2:  # a bump: worse for a while
            values += list(level * (1.05 + 0.01 * rng.random(int(rng.integers(2, 10)))))
    return np.array(values[:n])

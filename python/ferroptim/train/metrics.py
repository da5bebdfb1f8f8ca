r"""Metrics: functions ``metric(y_pred, y_true) -> float``.

Arguments come in the same order as the losses' (predictions first, unlike
scikit-learn). Classification metrics take the model's logits:

* :func:`accuracy`: multi-class logits ``(N, C)`` with ``C > 1`` are decided by
  argmax; a single logit per sample (``(N,)`` or ``(N, 1)``) is decided by
  ``logit > 0`` (i.e. :math:`\sigma(z) > 1/2`) against targets ``> 0.5``;
* :func:`top_k_accuracy`: the fraction of samples whose true class is among
  the ``k`` highest logits;

regression metrics take predictions: :func:`r2`, :func:`mse`, :func:`mae`.
Class targets are integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "Metric",
    "accuracy",
    "get_metric",
    "higher_is_better",
    "mae",
    "mse",
    "r2",
    "top_k_accuracy",
]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _class_labels(t: np.ndarray, n: int, c: int) -> np.ndarray:
    """Integer labels ``(N,)`` from labels ``(N,)``/``(N, 1)`` or rows ``(N, C)`` (argmax)."""
    if t.shape == (n, c) and c > 1:
        return np.argmax(t, axis=1)
    if t.size != n:
        raise ValueError(f"metric: y_true of shape {t.shape} does not match {n} samples")
    return t.reshape(n)


def accuracy(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    r"""Fraction of correct predictions: :math:`\frac1N \sum_n [\hat y_n = y_n]`
    with :math:`\hat y_n = \arg\max_c z_{nc}` for ``(N, C > 1)`` logits, and
    :math:`\hat y_n = [z_n > 0]` (against :math:`y_n = [t_n > 0.5]`) for one logit per sample."""
    p = np.asarray(y_pred)
    t = np.asarray(y_true)
    if p.size == 0:
        raise ValueError("accuracy: empty y_pred")
    if p.ndim >= 2 and p.shape[-1] > 1:
        p2 = p.reshape(-1, p.shape[-1])
        n, c = p2.shape
        pred = np.argmax(p2, axis=1)
        labels = _class_labels(t.reshape(n, c) if t.size == n * c else t, n, c)
        return float(np.mean(pred == labels))
    if t.size != p.size:
        raise ValueError(f"accuracy: y_true of shape {t.shape} for y_pred of shape {p.shape}")
    return float(np.mean((p.reshape(-1) > 0) == (t.reshape(-1) > 0.5)))


def top_k_accuracy(y_pred: np.ndarray, y_true: np.ndarray, k: int = 5) -> float:
    r"""Fraction of samples whose true class is among the ``k`` highest logits:
    sample :math:`n` counts when fewer than ``k`` classes score strictly higher
    than the true one, :math:`\#\{c : z_{nc} > z_{n y_n}\} < k` (ties resolved in
    the sample's favour). ``k >= C`` gives 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k_accuracy: k must be a positive integer, got {k!r}")
    p = np.asarray(y_pred)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"top_k_accuracy: logits must be (N, C), got shape {p.shape}")
    n, c = p.shape
    labels = _class_labels(np.asarray(y_true), n, c).astype(np.intp)
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"top_k_accuracy: labels must be in [0, {c})")
    true_score = p[np.arange(n), labels]
    rank = np.sum(p > true_score[:, None], axis=1)
    return float(np.mean(rank < k))


def _regression_pair(y_pred: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(y_pred, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.float64)
    if p.size == 0:
        raise ValueError("metric: empty y_pred")
    if t.shape != p.shape:
        if t.size != p.size:
            raise ValueError(f"metric: y_true of shape {t.shape} for y_pred of shape {p.shape}")
        t = t.reshape(p.shape)
    return p, t


def r2(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    r"""Coefficient of determination, per output column :math:`j`:

    .. math::

        R^2_j = 1 - \frac{\sum_n (t_{nj} - p_{nj})^2}{\sum_n (t_{nj} - \bar t_j)^2},

    averaged uniformly over the outputs (scikit-learn's default). A constant
    target column scores 1 if predicted exactly, else 0 (scikit-learn's
    ``force_finite``). 1 is perfect; predicting the mean scores 0.
    """
    p, t = _regression_pair(y_pred, y_true)
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    ss_res = np.sum((t - p) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    scores = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(scores))


def mse(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    r"""Mean squared error :math:`\frac1n \sum_i (p_i - t_i)^2`."""
    p, t = _regression_pair(y_pred, y_true)
    return float(np.mean((p - t) ** 2))


def mae(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    r"""Mean absolute error :math:`\frac1n \sum_i |p_i - t_i|`."""
    p, t = _regression_pair(y_pred, y_true)
    return float(np.mean(np.abs(p - t)))


#: name -> (function, higher is better)
METRICS: dict[str, tuple[Callable[..., float], bool]] = {
    "accuracy": (accuracy, True),
    "top_k_accuracy": (top_k_accuracy, True),
    "r2": (r2, True),
    "mse": (mse, False),
    "mae": (mae, False),
}

_ALIASES = {"acc": "accuracy", "r2_score": "r2"}
_TOP_K = re.compile(r"top_?(\d+)(?:_accuracy)?")


def _resolve(name: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a string, got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    match = _TOP_K.fullmatch(key)
    if match:
        return "top_k_accuracy", {"k": int(match.group(1))}
    if key not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)} and top_<k>_accuracy")
    return key, {}


def get_metric(name: str, **kwargs: Any) -> Metric:
    """The metric called ``name``: ``"accuracy"`` (``"acc"``), ``"top_k_accuracy"``
    (with ``k=``; or ``"top_5_accuracy"``, ``"top5"``), ``"r2"``, ``"mse"``, ``"mae"``.
    Returns a callable ``metric(y_pred, y_true) -> float``."""
    key, fixed = _resolve(name)
    fn = METRICS[key][0]
    args = {**fixed, **kwargs}
    if not args:
        return fn
    if key != "top_k_accuracy" or set(args) != {"k"}:
        raise ValueError(f"metric {key!r} takes no arguments {sorted(args)}")
    if isinstance(args["k"], bool) or not isinstance(args["k"], int) or args["k"] < 1:
        raise ValueError(f"top_k_accuracy: k must be a positive integer, got {args['k']!r}")
    return functools.partial(fn, **args)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric ``name`` is better (False for mse, mae)."""
    return METRICS[_resolve(name)[0]][1]

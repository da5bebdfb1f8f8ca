r"""Losses: callables ``loss(y_pred, y_true) -> (value, dL/dy_pred)``.

``value`` is a Python float; the grad has ``y_pred``'s shape and (floating)
dtype, ready for ``model.backward``. Reductions:

* elementwise losses (:class:`MSE`, :class:`MAE`, :class:`Huber`,
  :class:`BinaryCrossEntropyWithLogits`) average over *all* elements of
  ``y_pred`` (torch's ``reduction="mean"``): :math:`L = \frac1n \sum_i \ell_i`;
* :class:`SoftmaxCrossEntropy` sums over the classes and averages over the
  batch rows.

``y_true`` may differ from ``y_pred`` in shape only when it holds as many
values (``(N,)`` targets for ``(N, 1)`` predictions): it is then reshaped; any
other mismatch is a ``ValueError`` (never a silent ``(N, N)`` broadcast).
Values are accumulated in float64 whatever the input dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferroptim.train.layers import stable_sigmoid

__all__ = [
    "LOSSES",
    "MAE",
    "MSE",
    "BinaryCrossEntropyWithLogits",
    "Huber",
    "Loss",
    "SoftmaxCrossEntropy",
    "get_loss",
]


def _pred(y_pred: Any) -> np.ndarray:
    p = np.asarray(y_pred)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    if p.size == 0:
        raise ValueError("loss: empty y_pred")
    return p


def _matched(p: np.ndarray, y_true: Any) -> np.ndarray:
    t = np.asarray(y_true, dtype=p.dtype)
    if t.shape != p.shape:
        if t.size != p.size:
            raise ValueError(f"loss: y_true has shape {t.shape}, y_pred has shape {p.shape}")
        t = t.reshape(p.shape)
    return t


class Loss:
    """Base class: ``loss(y_pred, y_true) -> (value: float, grad: np.ndarray)``."""

    name = "loss"

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **constructor args}``, accepted by :func:`get_loss`."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class MSE(Loss):
    r"""Mean squared error :math:`L = \frac1n \sum_i (p_i - t_i)^2`,
    :math:`\partial L/\partial p_i = 2 (p_i - t_i) / n`."""

    name = "mse"

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        p = _pred(y_pred)
        r = p - _matched(p, y_true)
        value = float(np.mean(np.square(r), dtype=np.float64))
        r *= 2.0 / r.size
        return value, r


class MAE(Loss):
    r"""Mean absolute error :math:`L = \frac1n \sum_i |p_i - t_i|`,
    :math:`\partial L/\partial p_i = \operatorname{sign}(p_i - t_i) / n`
    (subgradient 0 where :math:`p_i = t_i`)."""

    name = "mae"

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        p = _pred(y_pred)
        r = p - _matched(p, y_true)
        value = float(np.mean(np.abs(r), dtype=np.float64))
        grad = np.sign(r)
        grad *= 1.0 / r.size
        return value, grad


class Huber(Loss):
    r"""Huber loss (torch's ``HuberLoss``), with :math:`r_i = p_i - t_i`:

    .. math::

        \ell_i = \begin{cases} \tfrac12 r_i^2 & |r_i| \le \delta \\
        \delta (|r_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}, \qquad
        \frac{\partial L}{\partial p_i} = \frac{\operatorname{clip}(r_i, -\delta, \delta)}{n}.
    """

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not delta > 0 or not np.isfinite(delta):
            raise ValueError(f"Huber: delta must be positive and finite, got {delta!r}")
        self.delta = float(delta)

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        p = _pred(y_pred)
        r = p - _matched(p, y_true)
        d = self.delta
        a = np.abs(r)
        elem = np.where(a <= d, 0.5 * r * r, d * (a - 0.5 * d))
        value = float(np.mean(elem, dtype=np.float64))
        grad = np.clip(r, -d, d)
        grad *= 1.0 / r.size
        return value, grad

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "delta": self.delta}


class BinaryCrossEntropyWithLogits(Loss):
    r"""Binary cross-entropy on logits :math:`z` with targets :math:`t \in [0, 1]`:

    .. math::

        \ell_i = -t_i \log \sigma(z_i) - (1 - t_i) \log(1 - \sigma(z_i))
               = t_i\, \operatorname{softplus}(-z_i) + (1 - t_i)\, \operatorname{softplus}(z_i),

    with :math:`\operatorname{softplus}(z) = \log(1 + e^z)` computed as
    ``np.logaddexp(0, z)``: exact (no overflow, no cancellation of large terms)
    for hard labels even at :math:`|z| = 10^4`.
    :math:`\partial L/\partial z_i = (\sigma(z_i) - t_i) / n`, :math:`\sigma` computed stably.
    Use with a model that outputs one logit per sample (shape ``(N,)`` or ``(N, 1)``).
    """

    name = "bce"

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        z = _pred(y_pred)
        t = _matched(z, y_true)
        elem = t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z)
        value = float(np.mean(elem, dtype=np.float64))
        grad = stable_sigmoid(z).astype(z.dtype, copy=False)
        grad -= t
        grad *= 1.0 / z.size
        return value, grad


class SoftmaxCrossEntropy(Loss):
    r"""Softmax cross-entropy on logits :math:`z \in \mathbb R^{N \times C}`.

    ``y_true`` is either integer class labels of shape ``(N,)`` (floats holding
    whole numbers are accepted) or target distributions :math:`q` of shape
    ``(N, C)`` (e.g. one-hot). With label smoothing :math:`\varepsilon`, the
    targets become :math:`q' = (1 - \varepsilon) q + \varepsilon / C`. Then

    .. math::

        \log p_{nc} = (z_{nc} - m_n) - \log \sum_k e^{z_{nk} - m_n}, \quad
        m_n = \max_k z_{nk}, \qquad
        L = -\frac1N \sum_{n,c} q'_{nc} \log p_{nc},

    .. math::

        \frac{\partial L}{\partial z_{nc}} = \frac{p_{nc} \sum_k q'_{nk} - q'_{nc}}{N}
        \quad (= (p_{nc} - q'_{nc}) / N \text{ for rows of } q' \text{ summing to 1}).

    The max-subtraction makes it exact for logits of any finite size (e.g. ±1e4).
    """

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[float, np.ndarray]:
        z = _pred(y_pred)
        if z.ndim != 2:
            raise ValueError(f"cross_entropy: logits must be (N, C), got shape {z.shape}")
        n, c = z.shape
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        grad = np.exp(logp)
        eps = self.label_smoothing
        t = np.asarray(y_true)
        if t.shape == z.shape:
            q = t.astype(z.dtype, copy=False)
            if eps:
                q = (1 - eps) * q + eps / c
            value = -float(np.sum(q * logp, dtype=np.float64)) / n
            grad *= q.sum(axis=1, keepdims=True)
            grad -= q
        else:
            labels = self._labels(t, n, c)
            rows = np.arange(n)
            picked = logp[rows, labels].astype(np.float64)
            value = -float(np.sum(picked)) * (1 - eps) / n
            if eps:
                value -= eps / c * float(np.sum(logp, dtype=np.float64)) / n
                grad -= eps / c
            grad[rows, labels] -= 1 - eps
        grad *= 1.0 / n
        return value, grad

    @staticmethod
    def _labels(t: np.ndarray, n: int, c: int) -> np.ndarray:
        if t.shape not in ((n,), (n, 1)):
            raise ValueError(
                f"cross_entropy: y_true must be labels ({n},) or targets ({n}, {c}), "
                f"got shape {t.shape}"
            )
        t = t.reshape(n)
        if not np.issubdtype(t.dtype, np.integer):
            if not np.issubdtype(t.dtype, np.floating) or not np.all(t == np.round(t)):
                raise ValueError("cross_entropy: class labels must be whole numbers")
        labels = t.astype(np.intp)
        if n and (labels.min() < 0 or labels.max() >= c):
            raise ValueError(f"cross_entropy: labels must be in [0, {c}), got {t.min()}..{t.max()}")
        return labels

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "label_smoothing": self.label_smoothing}


LOSSES: dict[str, type[Loss]] = {
    "mse": MSE,
    "mae": MAE,
    "huber": Huber,
    "bce": BinaryCrossEntropyWithLogits,
    "cross_entropy": SoftmaxCrossEntropy,
}

_ALIASES = {
    "l2": "mse",
    "l1": "mae",
    "bce_with_logits": "bce",
    "binary_cross_entropy": "bce",
    "ce": "cross_entropy",
    "softmax_cross_entropy": "cross_entropy",
}


def get_loss(name: str | Loss, **kwargs: Any) -> Loss:
    """The loss called ``name`` (``"mse"``, ``"mae"``, ``"huber"``, ``"bce"``,
    ``"cross_entropy"``, or an alias such as ``"ce"``), built with ``kwargs``
    (``delta=`` for huber, ``label_smoothing=`` for cross_entropy). A
    :class:`Loss` instance is returned as is."""
    if isinstance(name, Loss):
        if kwargs:
            raise ValueError("get_loss: kwargs given with a Loss instance")
        return name
    if not isinstance(name, str):
        raise TypeError(f"get_loss: expected a name or a Loss, got {name!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    try:
        return LOSSES[key](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for loss {key!r}: {e}") from None

"""The model protocol, the model factories, and :func:`build_model`.

Every factory returns a :class:`~ferroptim.train.layers.Sequential` with named
layers, so fine-tuning patterns apply: the output layer's params are
``"head.W"`` and ``"head.b"``, the hidden layers' of :func:`mlp` are
``"hidden1.W"``, ``"hidden1.b"``, ``"hidden2.W"``, ... (select the body with
``arena.select("hidden*")``, the output layer with ``arena.select("head.*")``).
Its ``config()`` is ``{"type": <factory name>, **its arguments}`` (``dtype`` as a
string), so ``build_model(model.config())`` rebuilds the same architecture with
the same initial params. The output convention: regressors output predictions
``(N, n_outputs)``; classifiers output *logits*, one per class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ferroptim.arena import ParamArena
from ferroptim.train.layers import (
    Dense,
    Dropout,
    Layer,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    layer_from_config,
    param_dtype,
)

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "Model",
    "build_model",
    "linear_regression",
    "logistic_regression",
    "mlp",
]


@runtime_checkable
class Model(Protocol):
    """What the trainer needs from a model.

    * ``arena``: every param, in one :class:`ParamArena` (float32, float64, or
      bfloat16/float16 with :class:`Sequential`);
    * ``forward(X, train)``: the outputs for a batch ``X`` (logits for
      classifiers, predictions for regressors), caching what backward needs;
      ``train=True`` enables Dropout;
    * ``backward(grad_out)``: given ``dL/d(outputs)`` of the last forward, writes
      ``dL/dparam`` into ``arena.grads[name]`` in place, overwriting every
      entry (no accumulation: zeroing first is not needed);
    * ``get_rng_state()`` / ``set_rng_state(state)``: the model's RNG state as a
      JSON-serializable dict (PCG64 ``bit_generator.state``), for an exact resume;
    * ``config()``: a JSON-serializable dict, ``build_model(config)`` rebuilds
      the architecture (with the same initial params).
    """

    arena: ParamArena

    def forward(self, X: np.ndarray, train: bool) -> np.ndarray: ...

    def backward(self, grad_out: np.ndarray) -> None: ...

    def get_rng_state(self) -> dict[str, Any]: ...

    def set_rng_state(self, state: dict[str, Any]) -> None: ...

    def config(self) -> dict[str, Any]: ...


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}


def _dtype_name(dtype: Any) -> str:
    return param_dtype(dtype).name


def _with_spec(model: Sequential, spec: dict[str, Any]) -> Sequential:
    model.spec = spec
    return model


def linear_regression(
    n_features: int, n_outputs: int = 1, seed: int = 0, dtype: Any = np.float32
) -> Sequential:
    r"""Linear regression :math:`\hat y = x W + b`, ``W`` Xavier-initialised:
    one :class:`Dense` layer (params ``"head.W"``, ``"head.b"``); outputs ``(N, n_outputs)``.
    Train with ``"mse"`` (or ``"mae"``, ``"huber"``)."""
    model = Sequential([Dense(n_features, n_outputs)], seed=seed, dtype=dtype, names=["head"])
    return _with_spec(
        model,
        {
            "type": "linear_regression",
            "n_features": int(n_features),
            "n_outputs": int(n_outputs),
            "seed": int(seed),
            "dtype": _dtype_name(dtype),
        },
    )


def logistic_regression(
    n_features: int, n_classes: int, seed: int = 0, dtype: Any = np.float32
) -> Sequential:
    r"""Multinomial logistic regression: logits :math:`z = x W + b` of shape
    ``(N, n_classes)``, one per class, trained with ``"cross_entropy"``
    (:math:`p = \operatorname{softmax}(z)`).

    Convention: the number of logits always equals ``n_classes``, so
    ``n_classes=2`` gives **two** logits (softmax over 2 classes). For the
    single-logit binary form (:math:`p = \sigma(z)`, trained with ``"bce"``),
    pass ``n_classes=1``. Params ``"head.W"``, ``"head.b"``.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ValueError(f"n_classes: must be a positive integer, got {n_classes!r}")
    model = Sequential([Dense(n_features, n_classes)], seed=seed, dtype=dtype, names=["head"])
    return _with_spec(
        model,
        {
            "type": "logistic_regression",
            "n_features": int(n_features),
            "n_classes": int(n_classes),
            "seed": int(seed),
            "dtype": _dtype_name(dtype),
        },
    )


def mlp(
    n_features: int,
    hidden: Sequence[int] = (128, 64),
    n_outputs: int = 1,
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int = 0,
    dtype: Any = np.float32,
) -> Sequential:
    """Multi-layer perceptron: for each width ``h`` of ``hidden``,
    ``Dense(prev, h) -> activation [-> Dropout(dropout) if dropout > 0]``, then a
    linear ``Dense(prev, n_outputs)`` output (logits or predictions).

    Hidden Dense layers use He init for ``"relu"`` and Xavier for ``"tanh"`` /
    ``"sigmoid"``; the output layer uses Xavier. Params are named by layer:
    ``"hidden1.W"``, ``"hidden1.b"``, ``"hidden2.W"``, ..., then ``"head.W"``,
    ``"head.b"`` (so ``arena.select("head.*")`` is the output layer).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if isinstance(hidden, (int, np.integer)):
        hidden = (int(hidden),)
    widths = [int(h) for h in hidden]
    dropout = float(dropout)
    init = "he" if activation == "relu" else "xavier"
    layers: list[Layer] = []
    names: list[str | None] = []
    prev = n_features
    for i, width in enumerate(widths, 1):
        layers += [Dense(prev, width, init=init), ACTIVATIONS[activation]()]
        names += [f"hidden{i}", f"{activation}{i}"]
        if dropout > 0:
            layers.append(Dropout(dropout))
            names.append(f"dropout{i}")
        prev = width
    layers.append(Dense(prev, n_outputs))
    names.append("head")
    model = Sequential(layers, seed=seed, dtype=dtype, names=names)
    return _with_spec(
        model,
        {
            "type": "mlp",
            "n_features": int(n_features),
            "hidden": widths,
            "n_outputs": int(n_outputs),
            "activation": activation,
            "dropout": dropout,
            "seed": int(seed),
            "dtype": _dtype_name(dtype),
        },
    )


def _sequential(
    layers: Sequence[Mapping[str, Any]],
    seed: int = 0,
    dtype: Any = np.float32,
    names: Sequence[str | None] | None = None,
) -> Sequential:
    return Sequential([layer_from_config(c) for c in layers], seed=seed, dtype=dtype, names=names)


MODELS: dict[str, Callable[..., Sequential]] = {
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
    "mlp": mlp,
    "sequential": _sequential,
}


def build_model(config: Mapping[str, Any]) -> Sequential:
    """Rebuilds a model from its ``config()``: ``{"type": name, **arguments}``
    with ``name`` one of :data:`MODELS` (``"sequential"`` takes ``layers``, a list
    of layer configs, ``seed`` and ``dtype``)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"build_model: expected a dict, got {config!r}")
    args = dict(config)
    kind = args.pop("type", None)
    if kind not in MODELS:
        raise ValueError(f"build_model: unknown model type {kind!r}; known: {sorted(MODELS)}")
    try:
        return MODELS[kind](**args)
    except TypeError as e:
        raise ValueError(f"build_model: bad config for {kind!r}: {e}") from None

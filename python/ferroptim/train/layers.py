"""NumPy layers with hand-written backward passes, and the :class:`Sequential` model.

Every layer maps a batch ``x`` to ``y = f(x)`` in :meth:`Layer.forward`, caching
what its backward pass needs, and :meth:`Layer.backward` maps ``dL/dy`` to
``dL/dx`` while *writing* (overwriting, never accumulating) the grads of its own
params into the arrays bound by :meth:`Layer.bind`. A :class:`Sequential` binds
those arrays to views of one :class:`~ferroptim.arena.ParamArena`, so an
optimizer built on ``model.arena`` updates the very arrays the layers compute
with, and reads the grads ``model.backward`` wrote, with no copies.

The model protocol the trainer relies on (see :class:`ferroptim.train.models.Model`):

* ``model.arena``: the :class:`ParamArena` holding every param, named
  ``"<layer name>.<param>"`` (the built-in models: ``"hidden1.W"``, ...,
  ``"head.W"``; a plain :class:`Sequential`: the layer index, ``"0.W"``, ...);
* ``model.forward(X, train) -> Y``: logits for classifiers, predictions for regressors;
* ``model.backward(dL/dY) -> None``: writes ``dL/dparam`` into ``arena.grads[name]``
  for the params of the last forward;
* ``model.get_rng_state() -> dict`` / ``model.set_rng_state(state)``: the state of
  the model's ``np.random.Generator(PCG64)`` (weight init, then Dropout masks),
  JSON-serializable, for exact checkpoint resume;
* ``model.config() -> dict``: JSON-serializable, rebuilds the architecture via
  :func:`ferroptim.train.models.build_model`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ferroptim.arena import ParamArena

__all__ = [
    "LAYERS",
    "Dense",
    "Dropout",
    "Layer",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "layer_from_config",
]

Shape = tuple[int, ...]
INITS = ("xavier", "he")


def param_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype; ``"bfloat16"`` is ml_dtypes' (imported only then)."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError("dtype bfloat16 needs ml_dtypes (pip install ml_dtypes)") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype a model with ``dtype`` params computes in: float32 for bfloat16
    (NumPy has no fast bfloat16 arithmetic), else the params' own."""
    dtype = param_dtype(dtype)
    return np.dtype(np.float32) if dtype.name == "bfloat16" else dtype


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b``; float16 operands are multiplied in float32 (BLAS, and the way
    float16 hardware accumulates) and the product rounded to float16."""
    if a.dtype != np.float16:
        return np.matmul(a, b, out=out)
    product = np.matmul(a.astype(np.float32), b.astype(np.float32))
    if out is None:
        return product.astype(np.float16)
    out[...] = product
    return out


def _views(arena: ParamArena, buffer: np.ndarray) -> dict[str, np.ndarray]:
    """Views of a flat buffer laid out as ``arena``'s."""
    return {n: buffer[lo:hi].reshape(arena.shapes[n]) for n, (lo, hi) in arena.offsets.items()}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


class Layer:
    """Base class of the layers. A layer without params only overrides
    :meth:`forward` and :meth:`backward`.

    ``backward(grad_out, input_grad=True)`` returns ``dL/dx`` for the input of the
    last :meth:`forward`, or ``None`` when ``input_grad`` is False (the first
    layer of a model, whose input needs no grad).
    """

    def param_shapes(self) -> dict[str, Shape]:
        """The shapes of the layer's params, by local name (``{}`` for none)."""
        return {}

    def init_params(self, rng: np.random.Generator, params: Mapping[str, np.ndarray]) -> None:
        """Fills ``params`` (arrays shaped as :meth:`param_shapes`) in place."""

    def bind(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Makes the layer compute with ``params`` and write its grads into ``grads``."""

    def set_rng(self, rng: np.random.Generator) -> None:
        """Gives the layer the model's generator (used by :class:`Dropout`)."""

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-serializable ``{"type": class name, **constructor args}``."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _cached(layer: Layer, value: Any) -> Any:
    if value is None:
        raise RuntimeError(f"{type(layer).__name__}.backward called before forward")
    return value


class Dense(Layer):
    r"""Fully connected layer :math:`y = x W + b`.

    Params ``"W"`` of shape ``(in_features, out_features)`` and ``"b"`` of shape
    ``(out_features,)``. ``x`` is ``(..., in_features)``; the leading dims are
    flattened into the batch :math:`N`. With :math:`G = \partial L/\partial y`:

    .. math::

        \frac{\partial L}{\partial W} = x^\top G, \qquad
        \frac{\partial L}{\partial b} = \sum_{n} G_{n}, \qquad
        \frac{\partial L}{\partial x} = G W^\top.

    Init (biases zero): ``"xavier"`` (Glorot uniform)
    :math:`W \sim U(-a, a)`, :math:`a = \sqrt{6 / (\text{in} + \text{out})}`, for
    tanh/sigmoid/linear outputs; ``"he"`` (Kaiming normal)
    :math:`W \sim \mathcal N(0, 2 / \text{in})`, for ReLU.
    """

    def __init__(self, in_features: int, out_features: int, init: str = "xavier") -> None:
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        if init not in INITS:
            raise ValueError(f"init: must be one of {INITS}, got {init!r}")
        self.init = init
        self.W: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None
        self._x: np.ndarray | None = None

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def init_params(self, rng: np.random.Generator, params: Mapping[str, np.ndarray]) -> None:
        shape = (self.in_features, self.out_features)
        if self.init == "xavier":
            a = math.sqrt(6.0 / (self.in_features + self.out_features))
            params["W"][...] = rng.uniform(-a, a, size=shape)
        else:
            params["W"][...] = rng.normal(0.0, math.sqrt(2.0 / self.in_features), size=shape)
        params["b"][...] = 0

    def bind(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        for key, arrays in (("params", params), ("grads", grads)):
            for name, shape in self.param_shapes().items():
                if arrays[name].shape != shape:
                    raise ValueError(
                        f"Dense.bind: {key}[{name!r}] has shape {arrays[name].shape}, "
                        f"expected {shape}"
                    )
        self.W, self.b = params["W"], params["b"]
        self.dW, self.db = grads["W"], grads["b"]

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if self.W is None or self.b is None:
            raise RuntimeError("Dense has no params: bind it (or put it in a Sequential)")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: input of shape {x.shape}, expected (..., {self.in_features})")
        self._x = x
        y = _matmul(x, self.W)
        y += self.b
        return y

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        x = _cached(self, self._x)
        assert self.W is not None and self.dW is not None and self.db is not None
        x2 = x.reshape(-1, self.in_features)
        g2 = grad_out.reshape(-1, self.out_features)
        _matmul(x2.T, g2, out=self.dW)
        np.sum(g2, axis=0, out=self.db)
        return _matmul(grad_out, self.W.T) if input_grad else None

    def config(self) -> dict[str, Any]:
        return {
            "type": "Dense",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "init": self.init,
        }


class ReLU(Layer):
    r""":math:`y = \max(x, 0)`, :math:`\partial L/\partial x = G \cdot [x > 0]`
    (the subgradient 0 at :math:`x = 0`)."""

    def __init__(self) -> None:
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self._mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        mask = _cached(self, self._mask)
        return np.multiply(grad_out, mask) if input_grad else None


class Tanh(Layer):
    r""":math:`y = \tanh x`, :math:`\partial L/\partial x = G (1 - y^2)`."""

    def __init__(self) -> None:
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        y = _cached(self, self._y)
        return grad_out * (1 - y * y) if input_grad else None


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    r"""The logistic function :math:`\sigma(x) = 1 / (1 + e^{-x})` without overflow:
    with :math:`e = e^{-|x|} \le 1`, :math:`\sigma(x) = 1/(1+e)` for :math:`x \ge 0`
    and :math:`e/(1+e)` for :math:`x < 0`."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Layer):
    r""":math:`y = \sigma(x)` computed stably (no overflow for any finite ``x``),
    :math:`\partial L/\partial x = G\, y (1 - y)`."""

    def __init__(self) -> None:
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self._y = stable_sigmoid(x)
        return self._y

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        y = _cached(self, self._y)
        return grad_out * (y * (1 - y)) if input_grad else None


class Dropout(Layer):
    r"""Inverted dropout: in training, :math:`y = x \odot m` with
    :math:`m_i = [u_i \ge p] / (1 - p)`, :math:`u_i \sim U[0, 1)`, so
    :math:`\mathbb E[y] = x`; :math:`\partial L/\partial x = G \odot m`.
    With ``train=False`` (or ``p == 0``) it is the identity.

    The uniforms come from the generator given by :meth:`set_rng` (a
    :class:`Sequential` gives its own, so the model's RNG state fixes the masks),
    or from ``rng=``; drawn in the input's dtype (float32 or float64).
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = rng
        self._mask: np.ndarray | None = None
        self._identity = True

    def set_rng(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if not train or self.p == 0:
            self._identity, self._mask = True, None
            return x
        if self.rng is None:
            raise RuntimeError("Dropout needs a Generator: pass rng= or put it in a Sequential")
        # float16 inputs: drawn in float32 (the generator's narrowest), kept in float16.
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        if x.dtype == np.float16:
            dtype = np.dtype(np.float32)
        mask = (self.rng.random(x.shape, dtype=dtype) >= self.p).astype(x.dtype)
        mask *= mask.dtype.type(1.0 / (1.0 - self.p))
        self._identity, self._mask = False, mask
        return x * mask

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if not input_grad:
            return None
        if self._identity:
            return grad_out
        return grad_out * _cached(self, self._mask)

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "p": self.p}


LAYERS: dict[str, type[Layer]] = {
    "Dense": Dense,
    "ReLU": ReLU,
    "Tanh": Tanh,
    "Sigmoid": Sigmoid,
    "Dropout": Dropout,
}


def layer_from_config(config: Mapping[str, Any]) -> Layer:
    """The layer described by ``config`` (from :meth:`Layer.config`)."""
    args = dict(config)
    kind = args.pop("type", None)
    if kind not in LAYERS:
        raise ValueError(f"unknown layer type {kind!r}; known: {sorted(LAYERS)}")
    try:
        return LAYERS[kind](**args)
    except TypeError as e:
        raise ValueError(f"bad config for layer {kind}: {e}") from None


def _layer_names(names: Sequence[str | None] | None, n: int) -> list[str]:
    """One prefix per layer: the given name, or the layer index."""
    if names is None:
        return [str(i) for i in range(n)]
    if isinstance(names, str) or len(names) != n:
        raise ValueError(f"names: expected a list of {n} names (one per layer), got {names!r}")
    out = [str(i) if name is None else name for i, name in enumerate(names)]
    for name in out:
        if not isinstance(name, str) or not name:
            raise ValueError(f"names: each must be a non-empty string or None, got {name!r}")
    if len(set(out)) != n:
        raise ValueError(f"names: must be unique, got {out}")
    return out


class Sequential:
    """A chain of layers whose params live in one :class:`ParamArena`.

    The param ``k`` of the layer at index ``i`` is ``arena.params[f"{i}.{k}"]``
    (``"0.W"``, ``"0.b"``, ``"2.W"``, ...), or ``f"{names[i]}.{k}"`` when ``names``
    gives the layers names (one entry per layer, ``None`` keeps the index: e.g.
    ``"hidden1"`` ... ``"head"``, so ``arena.select("head.*")`` picks the output
    layer for fine-tuning). float32 by default, or float64, ``"bfloat16"`` or
    float16 via ``dtype``: low-precision params are drawn in float32 and rounded
    once into the arena; bfloat16 params compute in float32 (from a float32 copy
    refreshed at each :meth:`forward`), float16 ones in float16; the grads are
    written in the arena's grad dtype. Weights are initialised from
    ``np.random.Generator(PCG64(seed))`` in layer order (biases zero); the same
    generator then draws the Dropout masks, so ``(seed, architecture)`` fixes the
    initial params and :meth:`get_rng_state` / :meth:`set_rng_state` fix every
    later mask.

    :meth:`forward` casts ``X`` to the compute dtype; :meth:`backward` overwrites
    every entry of ``arena.grad`` (each param is used by the last forward).
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        seed: int = 0,
        dtype: Any = np.float32,
        names: Sequence[str | None] | None = None,
    ) -> None:
        self.layers = list(layers)
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: expected Layer instances, got {layer!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.names = _layer_names(names, len(self.layers))
        shapes: dict[str, Shape] = {}
        for i, layer in enumerate(self.layers):
            for k, shape in layer.param_shapes().items():
                shapes[f"{self.names[i]}.{k}"] = shape
        if not shapes:
            raise ValueError("Sequential: needs at least one layer with params")
        self.arena = arena = ParamArena(shapes, param_dtype(dtype))
        self.dtype = arena.dtype
        self.compute_dtype = compute_dtype(self.dtype)
        # A compute copy of the params, and grads in the compute dtype, where the
        # arena's differ (copied at forward, and into arena.grad after backward).
        c = self.compute_dtype
        self._copy = None if c == self.dtype else np.zeros(arena.size, c)
        self._grad = None if c == arena.grad.dtype else np.zeros(arena.size, c)
        init_buffer = arena.data if self.dtype.itemsize >= 4 else np.zeros(arena.size, np.float32)
        init, grad_views = _views(arena, init_buffer), arena.grads
        params = arena.params if self._copy is None else _views(arena, self._copy)
        if self._grad is not None:
            grad_views = _views(arena, self._grad)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        for i, layer in enumerate(self.layers):
            full = {k: f"{self.names[i]}.{k}" for k in layer.param_shapes()}
            layer.init_params(self.rng, {k: init[n] for k, n in full.items()})
            layer.bind(
                {k: params[n] for k, n in full.items()},
                {k: grad_views[n] for k, n in full.items()},
            )
            layer.set_rng(self.rng)
        if init_buffer is not arena.data:
            arena.data[...] = init_buffer  # rounded to nearest even, once
        self._first = min(i for i, layer in enumerate(self.layers) if layer.param_shapes())
        self._out_shape: tuple[int, ...] | None = None
        #: Set by the factories of :mod:`ferroptim.train.models`: then :meth:`config`
        #: returns it (e.g. ``{"type": "mlp", ...}``) instead of the layer list.
        self.spec: dict[str, Any] | None = None

    def forward(self, X: np.ndarray, train: bool) -> np.ndarray:
        """Runs the layers on ``X`` (cast to the compute dtype); ``train`` turns
        Dropout on. Caches what :meth:`backward` needs."""
        if self._copy is not None:
            self._copy[...] = self.arena.data  # the params as the optimizer left them
        x = np.asarray(X, dtype=self.compute_dtype)
        for layer in self.layers:
            x = layer.forward(x, train)
        self._out_shape = x.shape
        return x

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``forward(X, train=False)``."""
        return self.forward(X, train=False)

    def backward(self, grad_out: np.ndarray) -> None:
        """Backpropagates ``grad_out = dL/dY`` of the last :meth:`forward`, writing
        ``dL/dparam`` into ``arena.grads[name]`` in place (overwriting)."""
        if self._out_shape is None:
            raise RuntimeError("Sequential.backward called before forward")
        g = np.asarray(grad_out, dtype=self.compute_dtype)
        if g.shape != self._out_shape:
            raise ValueError(
                f"backward: grad_out has shape {g.shape}, the last forward gave {self._out_shape}"
            )
        for i in range(len(self.layers) - 1, self._first - 1, -1):
            out = self.layers[i].backward(g, input_grad=i > self._first)
            if out is not None:
                g = out
        if self._grad is not None:
            self.arena.grad[...] = self._grad

    def get_rng_state(self) -> dict[str, Any]:
        """The generator's ``bit_generator.state``: a JSON-serializable dict of ints."""
        return copy.deepcopy(self.rng.bit_generator.state)

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restores a state from :meth:`get_rng_state` (in place: the layers keep
        sharing the generator)."""
        if not isinstance(state, Mapping) or state.get("bit_generator") != "PCG64":
            raise ValueError("set_rng_state: expected a PCG64 state from get_rng_state()")
        self.rng.bit_generator.state = copy.deepcopy(dict(state))

    def config(self) -> dict[str, Any]:
        """A JSON-serializable dict from which ``build_model`` rebuilds the same
        architecture with the same initial params."""
        if self.spec is not None:
            return copy.deepcopy(self.spec)
        config = {
            "type": "sequential",
            "layers": [layer.config() for layer in self.layers],
            "seed": self.seed,
            "dtype": self.dtype.name,
        }
        if self.names != [str(i) for i in range(len(self.layers))]:
            config["names"] = list(self.names)
        return config

    @property
    def n_params(self) -> int:
        """Number of scalar params."""
        return self.arena.size

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], {self.n_params} {self.dtype} params)"

"""Training a ``torch.nn.Module`` with the :class:`~ferroptim.train.Trainer`.

torch computes the forward pass and the grads (autograd); ferroptim takes the
step over one :class:`~ferroptim.ParamArena`. The module's params *are* views
of the arena (``p.data`` is ``torch.from_numpy(arena.params[name])``) and its
``p.grad`` are views of ``arena.grads``, so backward writes the grads straight
into the arena and a step copies nothing::

    import torch
    import ferroptim as fo
    from ferroptim.train import Trainer, TorchLoss, TorchModel

    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = TorchModel(net)
    opt = fo.AdamW(model.arena, lr=1e-3)
    trainer = Trainer(model, opt, loss=TorchLoss(torch.nn.CrossEntropyLoss()),
                      metrics=["accuracy"])
    trainer.fit(X_train, y_train, epochs=10, validation_data=(X_val, y_val))

torch is imported only by this module (an optional dependency).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ferroptim.arena import ParamArena
from ferroptim.exceptions import DtypeError, ParamError

__all__ = ["TorchLoss", "TorchModel"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _torch() -> Any:
    try:
        import torch
    except ImportError as err:  # the optional extra is missing
        raise ImportError(
            "TorchModel and TorchLoss need torch (pip install torch; CPU wheels: "
            "--index-url https://download.pytorch.org/whl/cpu)"
        ) from err
    return torch


def _input(torch: Any, X: Any, dtype: Any) -> Any:
    """``X`` as a CPU tensor; floating inputs in the params' dtype, integer ones
    (token ids, indices) as they are."""
    if isinstance(X, torch.Tensor):
        return X.to(getattr(torch, np.dtype(dtype).name)) if X.is_floating_point() else X
    a = np.asarray(X)
    if a.dtype.kind in "fb":
        a = a.astype(dtype, copy=False)
    elif a.dtype.kind not in "iu":
        raise TypeError(f"X: expected numbers, got an array of dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a))


class TorchLoss:
    """A torch loss as a :class:`~ferroptim.train.Trainer` loss.

    Wraps ``loss(output, target) -> scalar tensor`` (``torch.nn.CrossEntropyLoss()``,
    ``torch.nn.MSELoss()``, ``torch.nn.functional.cross_entropy``, ...) into the
    trainer's ``loss(y_pred, y_true) -> (value, dL/dy_pred)`` on NumPy arrays;
    the grad comes from torch's autograd.

    Parameters
    ----------
    loss : callable
        A torch loss taking ``(output, target)`` tensors and returning a scalar tensor.

    Notes
    -----
    Integer targets become ``int64`` tensors (class indices, as
    ``CrossEntropyLoss`` and ``NLLLoss`` want); floating targets take the
    output's dtype, reshaped to its shape when they hold as many values.
    """

    def __init__(self, loss: Callable[[Any, Any], Any]) -> None:
        if not callable(loss):
            raise TypeError(f"loss: expected a torch loss (callable), got {type(loss).__name__}")
        self.loss = loss
        self.name = getattr(loss, "__name__", type(loss).__name__)

    def __call__(self, y_pred: Any, y_true: Any) -> tuple[float, np.ndarray]:
        torch = _torch()
        p = np.asarray(y_pred)
        if p.dtype.kind != "f":
            raise TypeError(f"loss: y_pred must be floating, got {p.dtype}")
        out = torch.from_numpy(np.array(p, copy=True)).requires_grad_(True)
        t = np.asarray(y_true)
        if t.dtype.kind in "iub":
            target = torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))
        else:
            t = np.asarray(t, dtype=p.dtype)
            if t.shape != p.shape and t.size == p.size:
                t = t.reshape(p.shape)
            target = torch.from_numpy(np.ascontiguousarray(t))
        with torch.enable_grad():
            value = self.loss(out, target)
            if value.numel() != 1:
                raise ValueError(
                    f"loss: {self.name} returned {tuple(value.shape)} values; use a "
                    "reduction (mean or sum) that gives one"
                )
            value.backward()
        return float(value.detach()), out.grad.numpy()

    def __repr__(self) -> str:
        return f"TorchLoss({self.loss!r})"


class TorchModel:
    """A ``torch.nn.Module`` in the trainer's model protocol.

    The module's params are moved into one :class:`~ferroptim.ParamArena`
    (``self.arena``, same names as ``module.named_parameters()``): each
    ``p.data`` becomes a view of ``arena.params[name]`` and each ``p.grad`` a
    view of ``arena.grads[name]``. Build the optimizer on ``model.arena``
    (``fo.AdamW(model.arena)``, or groups of ``model.arena.select("conv*")``);
    freeze with ``opt.freeze(...)``. Train with the trainer's losses (on the
    NumPy outputs) or a torch loss through :class:`TorchLoss`.

    Parameters
    ----------
    module : torch.nn.Module
        The network, on the CPU, its params all float32 or all float64 (tied
        params count once).
    dtype : {"float32", "float64"}, optional
        Convert the module's params to this dtype first (default: keep theirs).

    Notes
    -----
    Do not move or convert the module afterwards (``.to()``, ``.double()``,
    ``.cuda()``): that replaces ``p.data`` and cuts it from the arena
    (:meth:`forward` then raises). ``optimizer.zero_grad(set_to_none=True)``
    on a torch optimizer is harmless: the views are put back before each
    backward. Inputs: floating ``X`` is cast to the params' dtype, integer
    ``X`` (token ids) is passed as is. Checkpoints keep the params in the
    arena and, through ``get_rng_state``, the module's buffers (BatchNorm
    statistics) and torch's CPU RNG state (dropout), for an exact resume.
    """

    def __init__(self, module: Any, *, dtype: str | None = None) -> None:
        torch = _torch()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        if dtype is not None and str(dtype) not in _DTYPES:
            raise DtypeError(f"dtype: must be 'float32' or 'float64', got {dtype!r}")
        named = list(module.named_parameters())
        if not named:
            raise ParamError("module: it has no parameters to train")
        for name, p in named:
            if p.device.type != "cpu":
                raise ParamError(f"module: param {name!r} is on {p.device}; TorchModel is CPU-only")
            if p.is_sparse or p.layout != torch.strided:
                raise ParamError(f"module: param {name!r} is not a dense tensor")
        found = {str(p.dtype).removeprefix("torch.") for _, p in named}
        if dtype is None:
            bad = sorted(found - set(_DTYPES))
            if bad or len(found) > 1:
                raise DtypeError(
                    f"module: params have dtypes {sorted(found)}; TorchModel needs all float32 "
                    "or all float64 (give dtype='float32' to convert)"
                )
            dtype = found.pop()
        np_dtype = np.dtype(_DTYPES[str(dtype)])
        # All checks done: from here on the module is changed.
        with torch.no_grad():
            arrays = {name: p.detach().to(torch.float64).numpy() for name, p in named}
        self.arena = ParamArena.from_arrays(arrays, dtype=np_dtype)
        self.module = module
        self.dtype = np_dtype
        self._params = named
        # The arena's buffers never move: their addresses identify the views.
        self._addresses = {name: self.arena.params[name].ctypes.data for name, _ in named}
        self._grad_views = {}
        for name, p in named:
            p.data = torch.from_numpy(self.arena.params[name])
            self._grad_views[name] = torch.from_numpy(self.arena.grads[name])
            p.grad = self._grad_views[name]
        self._out: Any = None

    # -- the model protocol ----------------------------------------------

    def _check_views(self) -> None:
        for name, p in self._params:
            if p.data_ptr() != self._addresses[name] or p.dtype != self._grad_views[name].dtype:
                raise ParamError(
                    f"param {name!r} of the module no longer lives in the arena (was the "
                    "module moved or converted with .to()/.double()?); build a new TorchModel"
                )

    def forward(self, X: np.ndarray, train: bool = False) -> np.ndarray:
        """The module's output for ``X`` as a NumPy array.

        Parameters
        ----------
        X : numpy.ndarray
            A batch of inputs (floating: cast to the params' dtype; integer: as is).
        train : bool
            Sets ``module.train(train)``; only a training forward keeps the
            graph for :meth:`backward` (eval runs under ``torch.no_grad()``).
        """
        torch = _torch()
        self._check_views()
        x = _input(torch, X, self.dtype)
        self.module.train(bool(train))
        if not train:
            self._out = None
            with torch.no_grad():
                out = self.module(x)
            return out.numpy()
        with torch.enable_grad():
            self._out = self.module(x)
        return self._out.detach().numpy()

    def backward(self, grad_out: np.ndarray) -> None:
        """Backpropagates through the last training forward; the grads land in
        ``arena.grads`` (overwritten, not accumulated).

        Parameters
        ----------
        grad_out : numpy.ndarray
            ``dL/d(output)``, the shape of that forward's output.
        """
        torch = _torch()
        if self._out is None:
            raise RuntimeError("backward needs a forward(X, train=True) first")
        g = np.asarray(grad_out)
        if g.shape != tuple(self._out.shape):
            raise ValueError(
                f"grad_out: shape {g.shape} for an output of shape {tuple(self._out.shape)}"
            )
        self.arena.zero_grad()
        for name, p in self._params:
            # zero_grad(set_to_none=True) or a hook may have replaced it.
            if p.grad is None or p.grad.data_ptr() != self._grad_views[name].data_ptr():
                p.grad = self._grad_views[name]
        out, self._out = self._out, None
        out.backward(torch.from_numpy(np.ascontiguousarray(g, dtype=self.dtype)))
        for name, p in self._params:
            # Autograd adds into an existing grad in place; if it made a new
            # tensor instead (create_graph, hooks), copy it into the arena.
            if p.grad is not None and p.grad.data_ptr() != self._grad_views[name].data_ptr():
                self.arena.grads[name][...] = p.grad.detach().numpy()
                p.grad = self._grad_views[name]

    # -- checkpoints -----------------------------------------------------

    def get_rng_state(self) -> dict[str, Any]:
        """torch's CPU RNG state and the module's buffers (NumPy copies)."""
        torch = _torch()
        buffers = {n: b.detach().cpu().numpy().copy() for n, b in self.module.named_buffers()}
        return {"torch_rng": torch.get_rng_state().numpy().copy(), "buffers": buffers}

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`get_rng_state`; checks everything before changing anything.

        Parameters
        ----------
        state : dict
            ``{"torch_rng": uint8 array, "buffers": {name: array}}``.
        """
        torch = _torch()
        if not isinstance(state, Mapping) or not {"torch_rng", "buffers"} <= set(state):
            raise ValueError("model state: expected a dict with 'torch_rng' and 'buffers'")
        rng = state["torch_rng"]
        if not isinstance(rng, np.ndarray) or rng.dtype != np.uint8 or rng.ndim != 1:
            raise ValueError("model state: 'torch_rng' must be a 1-d uint8 array")
        saved = state["buffers"]
        mine = dict(self.module.named_buffers())
        if not isinstance(saved, Mapping) or set(saved) != set(mine):
            names = sorted(saved) if isinstance(saved, Mapping) else saved
            raise ValueError(f"model state: buffers {names} != the module's {sorted(mine)}")
        for name, b in mine.items():
            a = saved[name]
            if not isinstance(a, np.ndarray) or a.shape != tuple(b.shape):
                raise ValueError(f"model state: buffer {name!r} must have shape {tuple(b.shape)}")
        before = torch.get_rng_state()
        kept = {name: b.detach().clone() for name, b in mine.items()}
        try:
            torch.set_rng_state(torch.from_numpy(rng.copy()))  # torch checks the length
            with torch.no_grad():
                for name, b in mine.items():
                    b.copy_(torch.from_numpy(np.array(saved[name])))
        except Exception:  # all or nothing: put back what was changed
            torch.set_rng_state(before)
            with torch.no_grad():
                for name, b in mine.items():
                    b.copy_(kept[name])
            raise

    def config(self) -> dict[str, Any]:
        """The module's class (checked when a checkpoint loads; the param
        names and shapes are checked through the arena layout)."""
        cls = type(self.module)
        return {"type": "torch", "module": f"{cls.__module__}.{cls.__qualname__}"}

    def __repr__(self) -> str:
        return f"TorchModel({type(self.module).__name__}, {self.arena!r})"

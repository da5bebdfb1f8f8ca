"""ferroptim.functional: init/update over NumPy pytrees, bitwise equal to in-place steps."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import functional as F
from ferroptim.exceptions import GradError, HyperparameterError, ParamError, StateDictError

# Each factory with hyperparameters that exercise its state (momentum, amsgrad, centered, ...).
FACTORIES: dict[str, tuple[type, dict[str, Any]]] = {
    "sgd": (fo.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (fo.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    "adamw": (fo.AdamW, dict(lr=1e-2, weight_decay=0.01)),
    "adamax": (fo.Adamax, dict(lr=1e-2)),
    "nadam": (fo.NAdam, dict(lr=1e-2)),
    "radam": (fo.RAdam, dict(lr=1e-2)),
    "rmsprop": (fo.RMSprop, dict(lr=1e-2, momentum=0.5, centered=True)),
    "adagrad": (fo.Adagrad, dict(lr=0.1, lr_decay=1e-3)),
    "adadelta": (fo.Adadelta, dict(lr=1.0)),
    "lion": (fo.Lion, dict(lr=1e-3, weight_decay=0.1)),
    "rprop": (fo.Rprop, dict(lr=1e-2, etas=(0.4, 1.3), l1=1e-3)),
    "asgd": (fo.ASGD, dict(lr=1e-2, lambd=0.01, t0=2.0)),
}

STEPS = 6


def _params(kind: str, rng: np.random.Generator) -> Any:
    arrays = [
        rng.standard_normal((3, 4)).astype(np.float32),
        rng.standard_normal(5),  # float64
        rng.standard_normal((2, 2, 2)).astype(np.float32),
    ]
    if kind == "dict":
        return {"w": arrays[0], "b": arrays[1], "k": arrays[2]}
    return tuple(arrays) if kind == "tuple" else arrays


def _like(tree: Any, rng: np.random.Generator) -> Any:
    if isinstance(tree, dict):
        return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in tree.items()}
    out = [rng.standard_normal(v.shape).astype(v.dtype) for v in tree]
    return tuple(out) if isinstance(tree, tuple) else out


def _values(tree: Any) -> list[np.ndarray]:
    return list(tree.values()) if isinstance(tree, dict) else list(tree)


def _same_bits(a: Any, b: Any) -> bool:
    """Bitwise equality of two nested structures of arrays and scalars."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same_bits(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_bits, a, b))
    return type(a) is type(b) and a == b


def _deep(tree: Any) -> Any:
    return copy.deepcopy(tree)


@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_functional_updates_equal_in_place_steps_bitwise(name: str, kind: str) -> None:
    cls, hypers = FACTORIES[name]
    rng = np.random.default_rng(0)
    params = _params(kind, rng)
    grads_seq = [_like(params, rng) for _ in range(STEPS)]

    in_place = _deep(params)
    opt = cls(in_place if kind == "dict" else list(in_place), **hypers)

    tx = getattr(F, name)(**hypers)
    before = _deep(params)
    state = tx.init(params)
    assert _same_bits(params, before), "init changed the params"
    current = params
    for grads in grads_seq:
        grads_before, state_before, current_before = _deep(grads), _deep(state), _deep(current)
        new, new_state = tx.update(grads, state, current)
        # The inputs are bitwise unchanged ...
        assert _same_bits(grads, grads_before)
        assert _same_bits(current, current_before)
        assert _same_bits(state.state_dict, state_before.state_dict)
        # ... and the result has the input's structure.
        assert type(new) is type(params)
        if kind == "dict":
            assert list(new) == list(params)
        opt.step(grads if kind == "dict" else list(grads))
        current, state = new, new_state
        assert _same_bits(_values(current), _values(in_place))
    assert _same_bits(state.state_dict["state"], opt.state_dict()["state"])
    assert _same_bits(params, before)  # the very first params too


def test_one_state_updates_the_same_way_twice() -> None:
    """A state is a value: updating from it twice gives the same bits (nothing was consumed)."""
    tx = F.adam(lr=0.1)
    rng = np.random.default_rng(1)
    params = _params("list", rng)
    grads = _like(params, rng)
    state = tx.init(params)
    state = tx.update(grads, state, params)[1]
    a, sa = tx.update(grads, state, params)
    b, sb = tx.update(grads, state, params)
    assert _same_bits(a, b) and _same_bits(sa.state_dict, sb.state_dict)


def test_step_options_carry_through_the_state() -> None:
    """accumulate=2 keeps its buffers in the state; max_grad_norm clips as in place."""
    hypers = dict(lr=0.05, accumulate=2, max_grad_norm=0.5)
    rng = np.random.default_rng(2)
    params = _params("dict", rng)
    grads_seq = [_like(params, rng) for _ in range(5)]
    in_place = _deep(params)
    opt = fo.AdamW(in_place, **hypers)
    tx = F.adamw(**hypers)
    state, current = tx.init(params), params
    for grads in grads_seq:
        current, state = tx.update(grads, state, current)
        opt.step(grads)
        assert _same_bits(_values(current), _values(in_place))
    assert "accumulation" in state.state_dict  # an odd number of calls: one is pending


def test_none_grad_skips_that_param() -> None:
    tx = F.sgd(lr=0.5)
    params = [np.ones(2), np.ones(3)]
    new, _ = tx.update([None, np.ones(3)], tx.init(params), params)
    assert _same_bits(new[0], np.ones(2)) and _same_bits(new[1], np.full(3, 0.5))


def test_state_arrays_are_read_only() -> None:
    tx = F.adam()
    params = [np.zeros(3)]
    _, state = tx.update([np.ones(3)], tx.init(params), params)
    exp_avg = state.state_dict["state"][0]["exp_avg"]
    with pytest.raises(ValueError, match="read-only"):
        exp_avg[0] = 1.0
    with pytest.raises(AttributeError):
        state.state_dict = {}  # type: ignore[misc]


def test_every_optimizer_class_has_a_factory() -> None:
    classes = {
        getattr(fo, n)
        for n in fo.__all__
        if isinstance(getattr(fo, n), type)
        and issubclass(getattr(fo, n), fo.Optimizer)
        and getattr(fo, n) is not fo.Optimizer
    }
    factories = {FACTORIES[n][0] for n in FACTORIES}
    assert classes == factories
    for name, (cls, _) in FACTORIES.items():
        tx = getattr(F, name)()
        assert tx.optimizer_class is cls
        sig = inspect.signature(getattr(F, name))
        assert "params" not in sig.parameters and "lr" in sig.parameters
        assert name in F.__all__


def test_from_optimizer_and_positional_lr() -> None:
    tx = F.from_optimizer(fo.SGD, lr=0.25, momentum=0.5)
    params = {"a": np.ones(2)}
    new, _ = tx.update({"a": np.ones(2)}, tx.init(params), params)
    assert _same_bits(new["a"], np.full(2, 0.75))
    assert F.sgd(0.25).hypers == {"lr": 0.25}


BAD: list[tuple[str, Any, type, str]] = [
    ("bad lr", lambda: F.adamw(lr=-1.0), HyperparameterError, "lr"),
    ("unknown option", lambda: F.adam(max_grad_nrom=1.0), HyperparameterError, "max_grad_nrom"),
    ("not a class", lambda: F.from_optimizer(object), HyperparameterError, "optimizer_class"),
    ("params type", lambda: F.sgd().init(np.zeros(3)), ParamError, "params"),
    ("params empty", lambda: F.sgd().init([]), ParamError, "empty"),
    ("params leaf", lambda: F.sgd().init([[1.0, 2.0]]), ParamError, r"params\[0\]"),
    ("params key", lambda: F.sgd().init({1: np.zeros(1)}), ParamError, "keys"),
]


@pytest.mark.parametrize(("what", "call", "error", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(what: str, call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_failed_update_changes_nothing() -> None:
    tx = F.adam(lr=0.1)
    params = {"w": np.ones(3), "b": np.ones(2)}
    state = tx.update({"w": np.ones(3), "b": np.ones(2)}, tx.init(params), params)[1]
    snapshot = (_deep(params), _deep(state))
    bad_calls = [
        (lambda: tx.update([np.ones(3), np.ones(2)], state, params), GradError),  # list for dict
        (lambda: tx.update({"w": np.ones(3)}, state, params), GradError),  # a name missing
        (lambda: tx.update({"w": np.ones(3), "b": np.ones(5)}, state, params), GradError),
        (
            lambda: tx.update({"w": np.ones(3), "b": np.ones(2)}, state.state_dict, params),
            HyperparameterError,
        ),
        (lambda: tx.update({"w": np.ones(3)}, state, {"w": np.ones(3)}), StateDictError),
    ]
    for call, error in bad_calls:
        with pytest.raises(error):
            call()
        assert _same_bits(params, snapshot[0])
        assert _same_bits(state.state_dict, snapshot[1].state_dict)


def test_exported_from_the_package() -> None:
    assert fo.functional is F and "functional" in fo.__all__

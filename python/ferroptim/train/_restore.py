"""Checks and all-or-nothing loading of a :class:`Trainer` state.

``Trainer.load_state_dict`` first checks every part of the state that can be
checked without touching the run (types, shapes, dtypes, history records),
then loads the parts that check themselves (optimizer, scheduler, model RNG,
callbacks) one by one, each undone if a later one fails, and only then sets
the plain parts (params, history, counters), which cannot fail.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ferroptim.train.checkpoint import CheckpointError

_REQUIRED = ("layout", "dtype", "optimizer_class", "epoch", "step", "params", "optimizer")
_REQUIRED += ("history",)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays, odd objects: not the same thing
        return False


def _count(state: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = state.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise CheckpointError(f"checkpoint['{key}'] must be an int >= 0, got {value!r}")
    return int(value)


def _history(value: Any) -> dict[str, Any]:
    """A validated copy of a saved ``History.state_dict()``."""
    if not isinstance(value, Mapping) or not {"epochs", "steps", "metric_names"} <= set(value):
        raise CheckpointError(
            "checkpoint['history'] must be a dict with 'epochs', 'steps' and 'metric_names'"
        )
    result: dict[str, Any] = {}
    for part in ("epochs", "steps"):
        records = value[part]
        if not isinstance(records, list):
            raise CheckpointError(f"checkpoint['history']['{part}'] must be a list")
        copies = []
        for i, record in enumerate(records):
            ok = isinstance(record, Mapping) and all(
                isinstance(k, str)
                and (v is None or isinstance(v, (numbers.Real, str)))
                and not isinstance(v, np.ndarray)
                for k, v in record.items()
            )
            if not ok:
                raise CheckpointError(
                    f"checkpoint['history']['{part}'][{i}] must be a dict of names to numbers"
                )
            copies.append(dict(record))
        result[part] = copies
    names = value["metric_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError("checkpoint['history']['metric_names'] must be a list of strings")
    result["metric_names"] = list(names)
    return result


def check(trainer: Any, state: Any) -> dict[str, Any]:
    """Everything about ``state`` that can be checked without changing the run.

    Returns the parts to set once the self-checking loaders have succeeded.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"a trainer state is a dict, got {type(state).__name__}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {missing}")
    arena = trainer.model.arena
    problems = []
    mine, theirs = trainer._layout(), state["layout"]
    if not _equal(theirs, mine):
        theirs = theirs if isinstance(theirs, Mapping) else {}
        diff = sorted(
            str(n) for n in set(mine) | set(theirs) if not _equal(mine.get(n), theirs.get(n))
        )
        problems.append(f"params differ: {diff[:5]}{'...' if len(diff) > 5 else ''}")
    if not _equal(state["dtype"], str(arena.dtype)):
        problems.append(f"dtype {state['dtype']} != {arena.dtype}")
    if not _equal(state["optimizer_class"], type(trainer.optimizer).__name__):
        problems.append(
            f"optimizer {state['optimizer_class']} != {type(trainer.optimizer).__name__}"
        )
    model_config = trainer.model.config() if hasattr(trainer.model, "config") else {}
    config = state.get("config") or {}
    saved_model = config.get("model", {}) if isinstance(config, Mapping) else None
    if not isinstance(saved_model, Mapping):
        problems.append("the saved model config is not a dict")
    elif not _equal(dict(saved_model), model_config):
        keys = sorted(
            str(k)
            for k in set(saved_model) | set(model_config)
            if not _equal(saved_model.get(k), model_config.get(k))
        )
        problems.append(f"model config differs in {keys}")
    if (state.get("scheduler") is None) != (trainer.scheduler is None):
        problems.append("one run has a scheduler and the other has not")
    scaler = getattr(trainer, "loss_scaler", None)
    if (state.get("loss_scaler") is None) != (scaler is None):
        problems.append("one run has a loss scaler and the other has not")
    saved_cbs = state.get("callbacks", [])
    here = len(trainer._stateful_callbacks())
    if not isinstance(saved_cbs, list):
        problems.append("the saved callback states are not a list")
    elif len(saved_cbs) != here:
        problems.append(f"{len(saved_cbs)} callbacks saved, {here} here")
    if problems:
        raise CheckpointError("checkpoint does not match this run: " + "; ".join(problems))
    if trainer.scheduler is not None and not isinstance(state["scheduler"], Mapping):
        raise CheckpointError("checkpoint['scheduler'] must be a dict")
    for i, cb_state in enumerate(saved_cbs):
        if not isinstance(cb_state, Mapping):
            raise CheckpointError(f"checkpoint['callbacks'][{i}] must be a dict")
    params = state["params"]
    # Exactly the arena's dtype: a string or integer array is not converted.
    if not isinstance(params, np.ndarray) or params.dtype != arena.dtype:
        kind = params.dtype if isinstance(params, np.ndarray) else type(params).__name__
        raise CheckpointError(f"checkpoint['params'] must be a {arena.dtype} array, got {kind}")
    if params.shape != tuple(arena.data.shape):
        raise CheckpointError(
            f"params: {params.shape} values saved, the model has {tuple(arena.data.shape)}"
        )
    return {
        "params": params,
        "history": _history(state["history"]),
        "epoch": _count(state, "epoch"),
        "step": _count(state, "step"),
        "optimizer_updates": _count(state, "optimizer_updates", 0),
    }


def _undo_object(obj: Any, skip: list[Any]) -> Callable[[], None]:
    """An undo for a callback's ``load_state_dict``: its attributes, and the
    state of any attribute that has its own ``state_dict`` (a nested scheduler)."""
    attrs = dict(getattr(obj, "__dict__", {}))
    nested = [
        (v, v.state_dict())
        for v in attrs.values()
        if not any(v is s for s in skip)
        and hasattr(v, "state_dict")
        and hasattr(v, "load_state_dict")
    ]

    def undo() -> None:
        for v, s in nested:
            v.load_state_dict(s)
        if hasattr(obj, "__dict__"):
            obj.__dict__.clear()
            obj.__dict__.update(attrs)

    return undo


def apply(trainer: Any, state: Mapping[str, Any], checked: dict[str, Any]) -> None:
    """Loads ``state`` (checked by :func:`check`) all or nothing."""
    opt, model = trainer.optimizer, trainer.model
    # Undone by their own entries (or not state at all), never through a callback.
    skip = [opt, model, trainer, trainer.scheduler]
    undo: list[Callable[[], None]] = []
    try:
        before, updates = opt.state_dict(), opt.num_updates

        def undo_optimizer() -> None:
            opt.load_state_dict(before)
            opt.num_updates = updates

        undo.append(undo_optimizer)
        opt.load_state_dict(state["optimizer"])
        if trainer.scheduler is not None:
            undo.append(_undo_object(trainer.scheduler, skip))
            trainer.scheduler.load_state_dict(state["scheduler"])
        scaler = getattr(trainer, "loss_scaler", None)
        if scaler is not None:
            undo.append(_undo_object(scaler, skip))
            scaler.load_state_dict(state["loss_scaler"])
        if state.get("model_rng") is not None and hasattr(model, "set_rng_state"):
            if hasattr(model, "get_rng_state"):
                rng = model.get_rng_state()
                undo.append(lambda: model.set_rng_state(rng))
            model.set_rng_state(state["model_rng"])
        for cb, cb_state in zip(trainer._stateful_callbacks(), state.get("callbacks", [])):
            undo.append(_undo_object(cb, skip))
            cb.load_state_dict(cb_state)
    except Exception as err:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # best effort; the error below is the one to report
                pass
        detail = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(f"checkpoint does not load: {detail}") from err
    # Plain assignments from checked values: these cannot fail.
    model.arena.data[...] = checked["params"]
    opt.num_updates = checked["optimizer_updates"]
    trainer.history.load_state_dict(checked["history"])
    trainer.epoch = checked["epoch"]
    trainer.step = checked["step"]

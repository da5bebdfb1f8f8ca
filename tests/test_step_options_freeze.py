"""Step options: freezing params (by pattern, name, index, group, in an arena),
and every optimizer takes every option, keyword-only.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _step_options_helpers import F32, F64, FACTORIES, bits, make_grads, make_params
from ferroptim import exceptions

CLASSES = [fo.SGD, fo.Adam, fo.AdamW, fo.RMSprop, fo.Adagrad, fo.Adadelta]
CLASSES += [fo.Adamax, fo.NAdam, fo.RAdam, fo.Lion]


# -- freeze / unfreeze -------------------------------------------------------------------


def named_params(dtype: Any = F32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(13)
    shapes = {"enc.w": (4, 3), "enc.b": (3,), "dec.w": (3, 2), "dec.b": (2,)}
    return {n: rng.standard_normal(s).astype(dtype) for n, s in shapes.items()}


def named_grads(rng: np.random.Generator, params: dict[str, np.ndarray]) -> dict[str, Any]:
    return {n: rng.standard_normal(p.shape).astype(p.dtype) for n, p in params.items()}


@pytest.mark.parametrize("name", ["adamw", "nadam", "lion", "adagrad"])
def test_freeze_by_pattern_and_unfreeze(name: str) -> None:
    params = named_params()
    fresh = {n: p.copy() for n, p in params.items()}
    opt = FACTORIES[name](params)
    opt.freeze("enc.*")
    assert sorted(opt.frozen) == ["enc.b", "enc.w"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert opt.step(named_grads(rng, params)) is True
    for n in ("enc.w", "enc.b"):
        assert params[n].tobytes() == fresh[n].tobytes()
        assert n not in opt.state_dict()["state"]
    for n in ("dec.w", "dec.b"):
        assert not np.array_equal(params[n], fresh[n])
    assert opt.step_counts == [0, 0, 3, 3]
    opt.unfreeze("enc.*")
    assert opt.frozen == []
    # The first step after thawing is a first step: it equals a fresh optimizer's.
    twin = FACTORIES[name]({"enc.w": params["enc.w"].copy(), "enc.b": params["enc.b"].copy()})
    grads = named_grads(rng, params)
    opt.step(grads)
    twin_params = twin.params
    twin.step({"enc.w": grads["enc.w"], "enc.b": grads["enc.b"]})
    assert params["enc.w"].tobytes() == twin_params[0].tobytes()
    assert params["enc.b"].tobytes() == twin_params[1].tobytes()
    assert opt.step_counts == [1, 1, 4, 4]


def test_freeze_by_name_index_and_group() -> None:
    params = named_params()
    opt = fo.Adam(params, lr=0.1)
    opt.freeze("dec.b")
    assert opt.frozen == ["dec.b"]
    opt.freeze("enc.w", "dec.b")
    assert sorted(opt.frozen) == ["dec.b", "enc.w"]
    opt.unfreeze("dec.b")
    assert opt.frozen == ["enc.w"]

    arrays = make_params(F64)
    before = bits(arrays)
    opt = fo.SGD([{"params": arrays[:2]}, {"params": arrays[2:], "lr": 0.01}], lr=0.1, momentum=0.9)
    opt.freeze(0)
    opt.freeze(group=1)
    assert sorted(opt.frozen) == [0, 2, 3]
    opt.step(make_grads(np.random.default_rng(1), F64))
    after = bits(arrays)
    assert [a == b for a, b in zip(after, before)] == [True, False, True, True]
    assert opt.step_counts == [0, 1, 0, 0]
    assert set(opt.state_dict()["state"]) == {1}
    opt.unfreeze(group=1)
    opt.step(make_grads(np.random.default_rng(2), F64))
    assert opt.step_counts == [0, 2, 1, 1]
    assert bits(arrays)[0] == before[0]


def test_freeze_errors() -> None:
    opt = fo.Adam(named_params(), lr=0.1)
    with pytest.raises(exceptions.ParamError, match="nope"):
        opt.freeze("nope*")
    with pytest.raises(exceptions.ParamError):
        opt.freeze(0)  # named params are frozen by name
    with pytest.raises(exceptions.ParamError, match="group"):
        opt.freeze(group=5)
    assert opt.frozen == []
    unnamed = fo.Adam(make_params(F32), lr=0.1)
    with pytest.raises(exceptions.ParamError):
        unnamed.freeze(4)
    assert unnamed.frozen == []


def test_freeze_in_arena() -> None:
    arena = fo.ParamArena({"base.w": (4, 4), "base.b": (4,), "head.w": (4, 2)}, F32)
    arena.data[:] = np.linspace(-1, 1, arena.size, dtype=F32)
    one_run = fo.AdamW(arena, lr=0.1)
    with pytest.raises(exceptions.ParamError, match="share one arena run") as info:
        one_run.freeze("base.*")
    for n in ("base.w", "base.b", "head.w"):
        assert n in str(info.value)
    assert one_run.frozen == []
    one_run.freeze("*")  # the whole run is fine
    assert sorted(one_run.frozen) == ["base.b", "base.w", "head.w"]

    groups = [{"params": arena.select("base.*")}, {"params": arena.select("head.*")}]
    opt = fo.AdamW(groups, lr=0.1)
    opt.freeze("base.*")
    before = arena.data.copy()
    arena.grad[:] = 1.0
    assert opt.step() is True
    n_base = 4 * 4 + 4
    assert arena.data[:n_base].tobytes() == before[:n_base].tobytes()
    assert not np.array_equal(arena.data[n_base:], before[n_base:])
    assert opt.step_counts == [0, 0, 1]


# -- the options are keyword-only on every optimizer --------------------------------------

ALL_OPTIONS = {
    "max_grad_norm": 1.0,
    "norm_type": 2.0,
    "clip_value": 0.5,
    "skip_nonfinite": True,
    "ema_decay": 0.99,
    "accumulate": 2,
    "accumulate_mean": False,
}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_optimizer_takes_every_option(cls: type[fo.Optimizer]) -> None:
    p = [np.zeros(3, F32)]
    opt = cls(p, **ALL_OPTIONS)
    assert opt.accumulate == 2
    assert opt.step([np.ones(3, F32)]) is False
    assert opt.step([np.full(3, np.nan, F32)]) is False
    assert opt.skipped_steps == 1
    assert p[0].tobytes() == np.zeros(3, F32).tobytes()
    # Keyword-only: nothing in the signature can take them by position.
    params = inspect.signature(cls).parameters
    assert not any(
        n in ALL_OPTIONS and v.kind is not inspect.Parameter.KEYWORD_ONLY for n, v in params.items()
    )
    with pytest.raises(TypeError):
        cls(p, max_grad_normm=1.0)
    copy.deepcopy(opt.state_dict())

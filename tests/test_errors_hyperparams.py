"""Bad input, part 3: bad hyperparameters (at construction or set later),
param groups broken after construction, and state dicts that do not match
raise the package's errors and change nothing; the exception hierarchy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _api_helpers import deep_equal
from _errors_helpers import F32, F64, FACTORIES, KINDS, Rig, check_raises
from ferroptim.exceptions import (
    DtypeError,
    GradError,
    HyperparameterError,
    ParamError,
    StateDictError,
)

# -- hyperparameters ----------------------------------------------------------

NAN, INF = float("nan"), float("inf")

BAD_HYPERS: list[tuple[str, dict[str, Any], str]] = [
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"lr": NAN}, "lr"),
    ("sgd", {"lr": INF}, "lr"),
    ("sgd", {"lr": -INF}, "lr"),
    ("sgd", {"lr": "0.1"}, "lr"),
    ("sgd", {"lr": None}, "lr"),
    ("sgd", {"lr": True}, "lr"),
    ("sgd", {"weight_decay": -1e-4}, "weight_decay"),
    ("sgd", {"weight_decay": NAN}, "weight_decay"),
    ("sgd", {"l1": -1e-4}, "l1"),
    ("sgd", {"l1": INF}, "l1"),
    ("sgd", {"momentum": -0.9}, "momentum"),
    ("sgd", {"momentum": NAN}, "momentum"),
    ("sgd", {"dampening": NAN}, "dampening"),
    ("sgd", {"nesterov": True, "momentum": 0.0}, "nesterov"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    ("adam", {"lr": -1e-3}, "lr"),
    ("adam", {"lr": NAN}, "lr"),
    ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"eps": NAN}, "eps"),
    ("adam", {"eps": INF}, "eps"),
    ("adam", {"weight_decay": -0.01}, "weight_decay"),
    ("adam", {"weight_decay": INF}, "weight_decay"),
    ("adam", {"l1": NAN}, "l1"),
    ("adam", {"betas": (1.0, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, 1.0)}, "betas"),
    ("adam", {"betas": (-0.1, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, -1e-9)}, "betas"),
    ("adam", {"betas": (NAN, 0.999)}, "betas"),
    ("adam", {"betas": (0.9, INF)}, "betas"),
    ("adam", {"betas": (0.9,)}, "betas"),
    ("adam", {"betas": 0.9}, "betas"),
    ("adamw", {"weight_decay": -0.01}, "weight_decay"),
    ("adamw", {"betas": (0.9, 1.5)}, "betas"),
    ("adamw", {"lr": INF}, "lr"),
    ("rmsprop", {"lr": -0.01}, "lr"),
    ("rmsprop", {"alpha": -0.5}, "alpha"),
    ("rmsprop", {"alpha": NAN}, "alpha"),
    ("rmsprop", {"eps": -1.0}, "eps"),
    ("rmsprop", {"momentum": -0.1}, "momentum"),
    ("rmsprop", {"momentum": INF}, "momentum"),
    ("rmsprop", {"weight_decay": -1.0}, "weight_decay"),
    ("rmsprop", {"l1": -1.0}, "l1"),
]
CLASSES = {"sgd": fo.SGD, "adam": fo.Adam, "adamw": fo.AdamW, "rmsprop": fo.RMSprop}


def _hyper_id(case: tuple[str, dict[str, Any], str]) -> str:
    kind, kwargs, _ = case
    return kind + "-" + "-".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize("case", BAD_HYPERS, ids=_hyper_id)
def test_bad_hyperparameter_at_construction(case: tuple[str, dict[str, Any], str]) -> None:
    kind, kwargs, name = case
    p = np.ones(3, F32)
    check_raises(lambda: CLASSES[kind]([p], **kwargs), HyperparameterError, ValueError, name)
    # Also when given only for one group.
    check_raises(
        lambda: CLASSES[kind]([{"params": [p]}, {"params": [np.ones(2)], **kwargs}]),
        HyperparameterError,
        ValueError,
        name,
    )
    assert np.array_equal(p, np.ones(3, F32))


_RIG_KIND = {"sgd": "sgd", "adam": "adam", "adamw": "adamw", "rmsprop": "rmsprop"}


@pytest.mark.parametrize("case", BAD_HYPERS, ids=_hyper_id)
@pytest.mark.parametrize("group", [0, 1])
def test_bad_hyperparameter_set_later(case: tuple[str, dict[str, Any], str], group: int) -> None:
    """Set through param_groups: the next step raises and changes nothing."""
    kind, kwargs, name = case
    rig = Rig(_RIG_KIND[kind])
    # A second group, so a bad value in either group is checked before any write.
    extra, extra_twin = np.ones(50, F64), np.ones(50, F64)
    rig.opt.add_param_group({"params": [extra], "lr": 0.02})
    rig.twin.add_param_group({"params": [extra_twin], "lr": 0.02})
    rig.params.append(extra)
    rig.twin_params.append(extra_twin)
    rig.good_step()
    target = rig.opt.param_groups[group]
    saved = {k: target[k] for k in kwargs}
    target.update(kwargs)
    for _ in range(2):  # raises every time, not only once
        check_raises(lambda: rig.opt.step(rig.grads()), HyperparameterError, ValueError, name)
    rig.assert_unchanged(groups=False)
    # state_dict() still works while the groups hold a bad value, and
    # loading such a state_dict is refused.
    bad_sd = rig.opt.state_dict()
    target.update(saved)
    rig.assert_unchanged()
    check_raises(lambda: rig.opt.load_state_dict(bad_sd), StateDictError, ValueError, name)
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_param_groups_broken_later(kind: str) -> None:
    """A group that lost a key, a removed group, a group that is not a dict."""
    rig = Rig(kind)
    extra, extra_twin = np.ones(50, F64), np.ones(50, F64)
    rig.opt.add_param_group({"params": [extra], "lr": 0.02})
    rig.twin.add_param_group({"params": [extra_twin], "lr": 0.02})
    rig.params.append(extra)
    rig.twin_params.append(extra_twin)
    rig.good_step()

    lr = rig.opt.param_groups[1].pop("lr")
    check_raises(lambda: rig.opt.step(rig.grads()), HyperparameterError, ValueError, "lr")
    rig.opt.param_groups[1]["lr"] = lr
    rig.assert_unchanged()

    group = rig.opt.param_groups.pop()
    check_raises(lambda: rig.opt.step(rig.grads()), ParamError, ValueError, "param groups")
    rig.opt.param_groups.append(group)
    rig.assert_unchanged()

    rig.opt.param_groups[1] = list(group.items())
    check_raises(lambda: rig.opt.step(rig.grads()), DtypeError, TypeError, "group")
    rig.opt.param_groups[1] = group
    rig.assert_nothing_lost()


# -- state_dict mismatches --------------------------------------------------


def _stepped(kind: str, arrays: Any, steps: int = 2, seed: int = 5) -> fo.Optimizer:
    rng = np.random.default_rng(seed)
    opt = FACTORIES[kind](arrays)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype) for p in opt.params])
    return opt


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_mismatch_positional(kind: str) -> None:
    rig = Rig(kind)
    fresh = [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]
    good = _stepped(kind, [p.copy() for p in fresh], steps=4).state_dict()

    def variant(edit: Callable[[dict], None]) -> dict:
        sd = copy.deepcopy(good)
        edit(sd)
        return sd

    def pop_state_key(sd: dict) -> None:
        del sd["state"]

    def two_params(sd: dict) -> None:
        sd["param_groups"][0]["params"] = [0, 1]
        del sd["state"][2]

    def four_params(sd: dict) -> None:
        sd["param_groups"][0]["params"] = [0, 1, 2, 3]

    def extra_group(sd: dict) -> None:
        sd["param_groups"].append(dict(sd["param_groups"][0], params=[]))

    def unknown_key(sd: dict) -> None:
        sd["state"][7] = sd["state"][0]

    def wrong_shape_last(sd: dict) -> None:
        # The first two params' state is fine: none of it may be loaded.
        slot = next(k for k in sd["state"][2] if k != "step")
        sd["state"][2][slot] = np.zeros(5)

    def transposed_shape(sd: dict) -> None:
        slot = next(k for k in sd["state"][1] if k != "step")
        sd["state"][1][slot] = sd["state"][1][slot].T.copy()

    def unknown_slot(sd: dict) -> None:
        sd["state"][1]["bogus_slot"] = np.zeros((2, 3), F32)

    def bad_step(sd: dict) -> None:
        sd["state"][2]["step"] = -1

    def fractional_step(sd: dict) -> None:
        sd["state"][2]["step"] = 1.5

    def slot_not_array(sd: dict) -> None:
        slot = next(k for k in sd["state"][2] if k != "step")
        sd["state"][2][slot] = "zeros"

    def state_not_dict(sd: dict) -> None:
        sd["state"][2] = [1, 2]

    def group_without_params(sd: dict) -> None:
        del sd["param_groups"][0]["params"]

    def bad_lr(sd: dict) -> None:
        sd["param_groups"][0]["lr"] = -5.0

    cases = {
        "no_state": (pop_state_key, ("state",)),
        "two_params": (two_params, ("2 params",)),
        "four_params": (four_params, ("4 params",)),
        "extra_group": (extra_group, ("2 param groups",)),
        "unknown_key": (unknown_key, ("7",)),
        "wrong_shape_last": (wrong_shape_last, ("#2", "shape")),
        "transposed_shape": (transposed_shape, ("#1", "shape")),
        "unknown_slot": (unknown_slot, ("#1", "bogus_slot")),
        "negative_step": (bad_step, ("#2", "step")),
        "fractional_step": (fractional_step, ("#2", "step")),
        "slot_not_array": (slot_not_array, ("#2",)),
        "state_not_dict": (state_not_dict, ("2",)),
        "group_without_params": (group_without_params, ("params",)),
        "bad_lr": (bad_lr, ("lr",)),
    }
    lr_before = rig.opt.param_groups[0]["lr"]
    for what, (edit, words) in cases.items():
        sd = variant(edit)
        sd_before = copy.deepcopy(sd)
        with pytest.raises(StateDictError) as info:
            rig.opt.load_state_dict(sd)
        assert isinstance(info.value, ValueError)
        for word in words:
            assert word in str(info.value), (what, word, str(info.value))
        assert rig.opt.param_groups[0]["lr"] == lr_before, what
        rig.assert_unchanged()
        # The rejected dict itself was not modified either.
        assert deep_equal(sd, sd_before), what
    rig.assert_nothing_lost()


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_mismatch_named(kind: str) -> None:
    rig = Rig(kind, named=True)
    other = {"w": np.ones(5, F32), "bias": np.ones((2, 3), F32), "other": np.ones(4)}
    sd = _stepped(kind, other).state_dict()
    with pytest.raises(StateDictError, match="c64") as info:
        rig.opt.load_state_dict(sd)
    assert "other" in str(info.value)
    rig.assert_unchanged()
    # Same names, one shape differs (the last one), so nothing may be loaded.
    same_names = {"w": np.ones(5, F32), "bias": np.ones((2, 3), F32), "c64": np.ones(3)}
    sd = _stepped(kind, same_names).state_dict()
    with pytest.raises(StateDictError, match="'c64'"):
        rig.opt.load_state_dict(sd)
    rig.assert_unchanged()
    # A positional state_dict into a named optimizer: keys don't match.
    sd = _stepped(kind, [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(sd)
    rig.assert_nothing_lost()


def test_state_dict_of_other_optimizer_class() -> None:
    rig = Rig("adam")
    sgd_sd = _stepped("sgd", [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(sgd_sd)
    rig.assert_nothing_lost()
    rig = Rig("sgd")
    adam_sd = _stepped("adam", [np.ones(5, F32), np.ones((2, 3), F32), np.ones(4)]).state_dict()
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(adam_sd)
    rig.assert_nothing_lost()


@pytest.mark.parametrize("bad", [None, [], "sd", {"state": {}}, {"param_groups": []}])
def test_state_dict_not_a_state_dict(bad: Any) -> None:
    rig = Rig("adam")
    with pytest.raises(StateDictError):
        rig.opt.load_state_dict(bad)
    rig.assert_nothing_lost()


def test_exception_hierarchy() -> None:
    for exc in (HyperparameterError, ParamError, GradError, StateDictError):
        assert issubclass(exc, ValueError)
        assert not issubclass(exc, TypeError)
    assert issubclass(DtypeError, TypeError)
    assert not issubclass(DtypeError, ValueError)
    assert len({HyperparameterError, ParamError, GradError, DtypeError, StateDictError}) == 5

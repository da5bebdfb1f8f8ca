"""Fine-tuning helpers: fo.exclude_from_weight_decay, fo.layerwise_lr_groups,
and an end-to-end fine-tune with a frozen base and a faster head."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import exceptions
from ferroptim.finetune import DEFAULT_NO_DECAY

F32, F64 = np.float32, np.float64

NAMES_DECAY = ["embed.weight", "layer0.attn.w", "layer0.mlp.w", "head.weight", "w"]
NAMES_NO_DECAY = [
    "layer0.attn.bias",
    "head.bias",
    "bias",
    "layer0.ln1.weight",
    "layer0.layernorm.weight",
    "final_norm.scale",
    "conv.bn.weight",
    "layer1.gamma",
    "layer1.beta",
    "fc.b",
    "b",
]


def named(names: list[str], dtype: Any = F32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(names))
    return {n: rng.standard_normal((2, 3)).astype(dtype) for n in names}


def group_names(groups: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for g in groups:
        p = g["params"]
        out.append(list(p.names) if isinstance(p, fo.ArenaGroup) else list(p))
    return out


# -- exclude_from_weight_decay ---------------------------------------------------------


def test_default_patterns_split_bias_and_norm_scales() -> None:
    mixed = [n for pair in zip(NAMES_DECAY + [""] * 6, NAMES_NO_DECAY) for n in pair if n]
    params = named(mixed)
    groups = fo.exclude_from_weight_decay(params)
    assert len(groups) == 2
    decay, no_decay = groups
    assert "weight_decay" not in decay  # keeps the optimizer's
    assert no_decay["weight_decay"] == 0.0
    assert sorted(decay["params"]) == sorted(NAMES_DECAY)
    assert sorted(no_decay["params"]) == sorted(NAMES_NO_DECAY)
    # Order within a group follows the input; the arrays are the caller's, not copies.
    assert list(decay["params"]) == [n for n in mixed if n in NAMES_DECAY]
    for g in groups:
        for n, a in g["params"].items():
            assert a is params[n]


def test_patterns_and_group_options() -> None:
    params = named(["enc.w", "enc.bias", "head.w", "head.bias"])
    groups = fo.exclude_from_weight_decay(params, patterns=["head.*"], lr=0.5)
    assert group_names(groups) == [["enc.w", "enc.bias"], ["head.w", "head.bias"]]
    assert groups[0]["lr"] == 0.5 and groups[1]["lr"] == 0.5
    assert groups[1]["weight_decay"] == 0.0
    # Patterns are case-sensitive fnmatch patterns, matched against whole names.
    only = fo.exclude_from_weight_decay(named(["Bias", "xbias", "bias.w"]))
    assert group_names(only) == [["Bias", "bias.w"], ["xbias"]]
    assert "*bias" in DEFAULT_NO_DECAY


def test_single_group_when_one_side_is_empty() -> None:
    all_decay = fo.exclude_from_weight_decay(named(["a.w", "c.w"]))
    assert len(all_decay) == 1 and "weight_decay" not in all_decay[0]
    none_decay = fo.exclude_from_weight_decay(named(["a.bias", "c.bias"]))
    assert len(none_decay) == 1 and none_decay[0]["weight_decay"] == 0.0
    with pytest.raises(exceptions.ParamError):
        fo.exclude_from_weight_decay({})


def test_weight_decay_only_reaches_the_decay_group() -> None:
    params = {"fc.w": np.ones(4, F32), "fc.bias": np.ones(4, F32), "ln.weight": np.ones(4, F32)}
    opt = fo.AdamW(fo.exclude_from_weight_decay(params), lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]
    zero = {n: np.zeros(4, F32) for n in params}
    opt.step(zero)  # zero grads: only the decoupled decay moves a param
    np.testing.assert_array_equal(params["fc.w"], np.full(4, F32(1 - 0.1 * 0.5)))
    np.testing.assert_array_equal(params["fc.bias"], np.ones(4, F32))
    np.testing.assert_array_equal(params["ln.weight"], np.ones(4, F32))


def test_arena() -> None:
    arena = fo.ParamArena({"fc1.w": (4, 3), "fc1.bias": (3,), "ln.weight": (3,), "fc2.w": (3, 2)})
    groups = fo.exclude_from_weight_decay(arena, lr=0.01)
    assert all(isinstance(g["params"], fo.ArenaGroup) for g in groups)
    assert group_names(groups) == [["fc1.w", "fc2.w"], ["fc1.bias", "ln.weight"]]
    assert groups[0]["params"].arena is arena
    arena.data[:] = 1.0
    opt = fo.AdamW(groups, weight_decay=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    opt.step()  # arena grads are zero
    np.testing.assert_array_equal(arena["fc1.w"], np.full((4, 3), F32(1 - 0.01 * 0.5)))
    np.testing.assert_array_equal(arena["fc2.w"], np.full((3, 2), F32(1 - 0.01 * 0.5)))
    np.testing.assert_array_equal(arena["fc1.bias"], np.ones(3, F32))
    np.testing.assert_array_equal(arena["ln.weight"], np.ones(3, F32))


# -- layerwise_lr_groups ----------------------------------------------------------------


def test_layerwise_lrs() -> None:
    layers = [named([f"l{i}.w", f"l{i}.bias"]) for i in range(4)]
    groups = fo.layerwise_lr_groups(layers, lr=1e-3, decay=0.5, weight_decay=0.0)
    assert len(groups) == 4
    for i, g in enumerate(groups):
        assert g["params"] is layers[i]
        assert g["lr"] == pytest.approx(1e-3 * 0.5 ** (3 - i), rel=1e-15)
        assert g["weight_decay"] == 0.0
    assert groups[-1]["lr"] == 1e-3  # the output layer gets lr exactly
    opt = fo.AdamW(groups, lr=123.0)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in groups]
    # Each group's params move by about its lr on the first Adam step.
    before = [{n: a.copy() for n, a in layer.items()} for layer in layers]
    opt.step({n: np.ones((2, 3), F32) for layer in layers for n in layer})
    for i, layer in enumerate(layers):
        moved = before[i][f"l{i}.w"] - layer[f"l{i}.w"]
        np.testing.assert_allclose(moved, groups[i]["lr"], rtol=1e-3)


def test_layerwise_decay_one_and_single_layer() -> None:
    layers = [[np.zeros(2)], [np.zeros(3)], [np.zeros(1)]]
    assert [g["lr"] for g in fo.layerwise_lr_groups(layers, 0.1, 1.0)] == [0.1] * 3
    assert [g["lr"] for g in fo.layerwise_lr_groups(layers[:1], 0.1, 0.3)] == [0.1]
    assert fo.layerwise_lr_groups(layers, 0.0, 0.5)[0]["lr"] == 0.0


def test_layerwise_with_arena_selects() -> None:
    arena = fo.ParamArena({"l0.w": (3,), "l1.w": (3,), "l2.w": (3,)}, F64)
    layers = [arena.select(f"l{i}.*") for i in range(3)]
    opt = fo.SGD(fo.layerwise_lr_groups(layers, lr=1.0, decay=0.1), lr=0.5)
    arena.grad[:] = 1.0
    opt.step()
    np.testing.assert_allclose(arena["l0.w"], -0.01, rtol=1e-15)
    np.testing.assert_allclose(arena["l1.w"], -0.1, rtol=1e-15)
    np.testing.assert_allclose(arena["l2.w"], -1.0, rtol=1e-15)


@pytest.mark.parametrize(
    ("layers", "lr", "decay", "error"),
    [
        ([], 0.1, 0.5, exceptions.ParamError),
        ([[np.zeros(2)]], -0.1, 0.5, exceptions.HyperparameterError),
        ([[np.zeros(2)]], math.nan, 0.5, exceptions.HyperparameterError),
        ([[np.zeros(2)]], math.inf, 0.5, exceptions.HyperparameterError),
        ([[np.zeros(2)]], 0.1, 0.0, exceptions.HyperparameterError),
        ([[np.zeros(2)]], 0.1, -0.5, exceptions.HyperparameterError),
        ([[np.zeros(2)]], 0.1, 1.5, exceptions.HyperparameterError),
        ([[np.zeros(2)]], 0.1, math.nan, exceptions.HyperparameterError),
    ],
)
def test_layerwise_validation(layers: list[Any], lr: float, decay: float, error: type) -> None:
    with pytest.raises(error):
        fo.layerwise_lr_groups(layers, lr, decay)
    assert issubclass(error, ValueError)


# -- end to end ----------------------------------------------------------------------------


def regression_problem() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A two-layer linear model y = (x @ W1 + b1) @ W2 + b2 on fixed data."""
    rng = np.random.default_rng(42)
    x = rng.standard_normal((64, 6))
    y = x @ rng.standard_normal((6, 2)) + 0.1
    params = {
        "base.w": rng.standard_normal((6, 5)),
        "base.bias": rng.standard_normal(5),
        "head.w": rng.standard_normal((5, 2)) * 0.1,
        "head.bias": np.zeros(2),
    }
    return x, y, params


def loss_and_grads(
    x: np.ndarray, y: np.ndarray, p: dict[str, np.ndarray]
) -> tuple[float, dict[str, np.ndarray]]:
    h = x @ p["base.w"] + p["base.bias"]
    out = h @ p["head.w"] + p["head.bias"]
    err = out - y
    d_out = 2 * err / err.size
    d_h = d_out @ p["head.w"].T
    grads = {
        "base.w": x.T @ d_h,
        "base.bias": d_h.sum(0),
        "head.w": h.T @ d_out,
        "head.bias": d_out.sum(0),
    }
    return float(np.mean(err**2)), grads


@pytest.mark.parametrize("use_arena", [False, True], ids=["dict", "arena"])
def test_end_to_end_finetune(use_arena: bool, torch: Any) -> None:
    x, y, init = regression_problem()
    base_lr, steps, max_norm = 1e-3, 15, 0.5
    if use_arena:
        arena = fo.ParamArena.from_arrays(init, F64)
        params = arena.params
        groups = [
            {"params": arena.select("base.*")},
            {"params": arena.select("head.*"), "lr": 10 * base_lr},
        ]
    else:
        params = {n: a.copy() for n, a in init.items()}
        groups = [
            {"params": {n: params[n] for n in params if n.startswith("base.")}},
            {"params": {n: params[n] for n in params if n.startswith("head.")}, "lr": 10 * base_lr},
        ]
    opt = fo.AdamW(groups, lr=base_lr, weight_decay=0.01, max_grad_norm=max_norm)
    opt.freeze("base.*")
    assert sorted(opt.frozen) == ["base.bias", "base.w"]

    # The reference: torch AdamW on the head alone, clip_grad_norm_ over the
    # head's grads (frozen params have no grads and are not in the norm).
    head = {n: torch.from_numpy(init[n].copy()) for n in ("head.w", "head.bias")}
    topt = torch.optim.AdamW(list(head.values()), lr=10 * base_lr, weight_decay=0.01, foreach=False)

    losses, clipped = [], 0
    for _ in range(steps):
        loss, grads = loss_and_grads(x, y, params)
        losses.append(loss)
        for n, t in head.items():
            t.grad = torch.from_numpy(grads[n].copy())
        norm = float(torch.nn.utils.clip_grad_norm_(list(head.values()), max_norm))
        clipped += norm > max_norm
        topt.step()
        if use_arena:
            for n, g in grads.items():
                arena.grads[n][...] = g
            assert opt.step() is True
        else:
            assert opt.step(grads) is True
        np.testing.assert_allclose(opt.last_grad_norm, norm, rtol=1e-12)

    for n in ("base.w", "base.bias"):
        assert params[n].tobytes() == init[n].tobytes(), n
    for n in ("head.w", "head.bias"):
        assert not np.array_equal(params[n], init[n]), n
        np.testing.assert_allclose(params[n], head[n].numpy(), rtol=1e-10, atol=1e-12)
    assert clipped > 0, "max_grad_norm should have clipped some steps"
    assert opt.step_counts == [0, 0, steps, steps]
    state = opt.state_dict()["state"]
    assert set(state) == {"head.w", "head.bias"}
    assert losses[-1] < losses[0]
    assert loss_and_grads(x, y, params)[0] < losses[-1]

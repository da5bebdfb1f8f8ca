"""Hypothesis strategies and drivers for the property suites (tests/test_properties*.py).

A :class:`Setup` describes one optimizer run without building it: class, dtype,
param shapes, how the params are given (a list, param groups, named params, a
ParamArena), per-class hyperparameters, step options, frozen params and which
grads are None. Everything a run does derives from it and a step index, so two
runs of one Setup (another thread count, a failed call in between, a state_dict
round trip) can be compared bitwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import strategies as st

import ferroptim as fo
from ferroptim import exceptions

CLASSES = [
    fo.SGD,
    fo.Adam,
    fo.AdamW,
    fo.Adamax,
    fo.NAdam,
    fo.RAdam,
    fo.RMSprop,
    fo.Adagrad,
    fo.Adadelta,
    fo.Lion,
]
PACKAGE_ERRORS = tuple(getattr(exceptions, name) for name in exceptions.__all__)

# Valid hyperparameters per class (beyond lr, weight_decay, l1, maximize, which all take).
HYPERS: dict[str, dict[str, list[Any]]] = {
    "SGD": {"momentum": [0.0, 0.9], "dampening": [0.0, 0.1], "nesterov": [False, True]},
    "Adam": {"amsgrad": [False, True], "betas": [(0.9, 0.999), (0.5, 0.9)]},
    "AdamW": {"amsgrad": [False, True], "betas": [(0.9, 0.999), (0.0, 0.5)]},
    "Adamax": {"betas": [(0.9, 0.999), (0.5, 0.9)]},
    "NAdam": {"decoupled_weight_decay": [False, True], "momentum_decay": [4e-3, 0.1]},
    "RAdam": {"decoupled_weight_decay": [False, True], "betas": [(0.9, 0.999), (0.5, 0.6)]},
    "RMSprop": {"centered": [False, True], "momentum": [0.0, 0.9], "alpha": [0.99, 0.5]},
    "Adagrad": {"lr_decay": [0.0, 0.1], "initial_accumulator_value": [0.0, 0.5]},
    "Adadelta": {"rho": [0.9, 0.5]},
    "Lion": {"betas": [(0.9, 0.99), (0.5, 0.0)]},
}
COMMON_HYPERS: dict[str, list[Any]] = {
    "lr": [1e-3, 0.1],
    "weight_decay": [0.0, 0.01],
    "l1": [0.0, 1e-3],
    "maximize": [False, True],
}
# Bad group values: (key, value); each class refuses those whose key it has.
BAD_VALUES: list[tuple[str, Any]] = [
    ("lr", -1.0),
    ("lr", float("nan")),
    ("lr", float("inf")),
    ("lr", "0.1"),
    ("lr", None),
    ("weight_decay", -0.5),
    ("weight_decay", float("nan")),
    ("l1", -1.0),
    ("maximize", "no"),
    ("betas", (1.0, 0.9)),
    ("betas", (0.9, -0.1)),
    ("betas", (0.9,)),
    ("betas", (float("nan"), 0.9)),
    ("eps", -1.0),
    ("eps", float("nan")),
    ("momentum", -0.5),
    ("momentum", float("nan")),
    ("amsgrad", "yes"),
    ("alpha", -0.1),
    ("rho", 1.5),
    ("lr_decay", -1.0),
    ("initial_accumulator_value", -1.0),
    ("momentum_decay", -1.0),
    ("centered", "x"),
    ("nesterov", "x"),
]

SMALL_SHAPES = [(), (0,), (1,), (3,), (2, 3), (2, 0), (1, 1, 2), (5,)]
BIG_SHAPE = (70_000,)  # above the engine's 64k-element parallel threshold


@dataclasses.dataclass
class Setup:
    cls: type
    dtype: Any
    shapes: list[tuple[int, ...]]
    layout: str  # "list", "groups", "named" or "arena"
    split: int  # first param of the second group (0: one group)
    hypers: dict[str, Any]
    options: dict[str, Any]
    frozen_group: int | None
    none_grads: frozenset[tuple[int, int]]  # (step, param) pairs given no grad
    nonfinite: frozenset[int]  # steps whose grads hold a NaN (with skip_nonfinite)
    seed: int

    @property
    def names(self) -> list[str]:
        return [f"p{i}" for i in range(len(self.shapes))]

    @property
    def accumulate(self) -> int:
        return int(self.options.get("accumulate", 1))


@st.composite
def options(draw: Any, accumulate: tuple[int, int] = (1, 3)) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if draw(st.booleans()):
        opts["max_grad_norm"] = draw(st.sampled_from([0.5, 2.0]))
        opts["norm_type"] = draw(st.sampled_from([2.0, float("inf")]))
    if draw(st.booleans()):
        opts["clip_value"] = draw(st.sampled_from([0.05, 1.0]))
    opts["skip_nonfinite"] = draw(st.booleans())
    ema = draw(st.sampled_from([None, "decay", "equal"]))
    if ema == "decay":
        opts["ema_decay"] = draw(st.sampled_from([0.5, 0.9]))
    elif ema == "equal":
        opts["ema_equal_weights"] = True
    opts["accumulate"] = draw(st.integers(*accumulate))
    opts["accumulate_mean"] = draw(st.booleans())
    return opts


@st.composite
def setups(
    draw: Any,
    classes: list[type] | None = None,
    layouts: tuple[str, ...] = ("list", "groups", "named", "arena"),
    big: bool = False,
    accumulate: tuple[int, int] = (1, 3),
) -> Setup:
    cls = draw(st.sampled_from(classes or CLASSES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(st.lists(st.sampled_from(SMALL_SHAPES), min_size=1, max_size=4))
    if big and draw(st.booleans()):
        shapes[draw(st.integers(0, len(shapes) - 1))] = BIG_SHAPE
    layout = draw(st.sampled_from(layouts))
    split = 0
    if layout != "list" and len(shapes) > 1:
        split = draw(st.integers(0, len(shapes) - 1))
    table = {**COMMON_HYPERS, **HYPERS[cls.__name__]}
    hypers = {k: draw(st.sampled_from(v)) for k, v in table.items()}
    if hypers.get("nesterov"):  # torch's rule: nesterov needs momentum, no dampening
        hypers.update(momentum=0.9, dampening=0.0)
    frozen_group = draw(st.sampled_from([None, 0, 1])) if split else None
    n = len(shapes)
    pairs = st.tuples(st.integers(0, 11), st.integers(0, n - 1))
    none_grads = frozenset() if layout == "arena" else draw(st.frozensets(pairs, max_size=4))
    opts = draw(options(accumulate))
    nonfinite = frozenset()
    if opts["skip_nonfinite"]:
        nonfinite = draw(st.frozensets(st.integers(0, 11), max_size=2))
    seed = draw(st.integers(0, 2**16))
    return Setup(
        cls, dtype, shapes, layout, split, hypers, opts, frozen_group, none_grads, nonfinite, seed
    )


class Run:
    """One optimizer built from a Setup, and the valid calls it takes."""

    def __init__(
        self, setup: Setup, params: list[np.ndarray] | None = None, reverse_names: bool = False
    ) -> None:
        self.setup = s = setup
        rng = np.random.default_rng(s.seed)
        if params is None:
            params = [rng.standard_normal(shape).astype(s.dtype) for shape in s.shapes]
        self.arena = None
        names = s.names
        cut = s.split or len(params)
        if s.layout == "arena":
            self.arena = fo.ParamArena.from_arrays(dict(zip(names, params)), dtype=s.dtype)
            groups_src: list[Any] = [self.arena.select(names[:cut])]
            if s.split:
                groups_src.append(self.arena.select(names[cut:]))
        elif s.layout == "named":
            pairs = list(zip(names, params))
            first, second = pairs[:cut], pairs[cut:]
            if reverse_names:  # matched by name: the order in a group must not matter
                first, second = first[::-1], second[::-1]
            groups_src = [dict(first)] + ([dict(second)] if s.split else [])
        else:
            groups_src = [params[:cut]] + ([params[cut:]] if s.split else [])
        if s.layout == "list":
            spec: Any = groups_src[0]
        else:
            spec = [{"params": groups_src[0]}]
            if s.split:
                spec.append({"params": groups_src[1], "lr": s.hypers["lr"] / 2})
        self.opt = s.cls(spec, **s.hypers, **s.options)
        if s.frozen_group is not None:
            self.opt.freeze(group=s.frozen_group)
        self.calls = 0

    def param_list(self) -> list[np.ndarray]:
        """The params in the Setup's order (p0, p1, ...), whatever order the optimizer holds."""
        if self.opt.param_names is None:
            return self.opt.params
        by_name = dict(zip(self.opt.param_names, self.opt.params))
        return [by_name[n] for n in self.setup.names]

    def grads(self, call: int) -> list[np.ndarray | None]:
        """The grads of valid call number ``call``, in the Setup's order."""
        s = self.setup
        rng = np.random.default_rng([s.seed, call])
        out: list[np.ndarray | None] = []
        for i, shape in enumerate(s.shapes):
            g = rng.standard_normal(shape).astype(s.dtype)
            if call in s.nonfinite and g.size:
                g.reshape(-1)[0] = np.nan
            out.append(None if (call % 12, i) in s.none_grads else g)
        return out

    def pass_grads(self, grads: list[Any]) -> Any:
        """``step`` with grads given the way this layout takes them."""
        s = self.setup
        if s.layout == "arena":
            assert self.arena is not None
            for name, g in zip(s.names, grads):
                self.arena.grads[name][...] = 0 if g is None else g
            return self.opt.step()
        if s.layout == "named":
            return self.opt.step({n: g for n, g in zip(s.names, grads) if g is not None})
        return self.opt.step(grads)

    def step(self) -> None:
        self.pass_grads(self.grads(self.calls))
        self.calls += 1

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.step()


def bits(x: Any) -> Any:
    """A deep, bitwise snapshot of arrays, dicts, lists and scalars."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: bits(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, *(bits(v) for v in x)]
    if isinstance(x, float):
        return ("float", np.float64(x).tobytes())  # NaN == NaN, -0.0 != 0.0
    return x


def snapshot(run: Run) -> dict[str, Any]:
    """Everything a failed call must leave as it was."""
    opt = run.opt
    return bits(
        {
            "params": [p.copy() for p in run.param_list()],
            "state_dict": opt.state_dict(),
            "step_counts": list(opt.step_counts),
            "skipped_steps": opt.skipped_steps,
            "num_updates": opt.num_updates,
            "last_grad_norm": opt.last_grad_norm,
            "frozen": list(opt.frozen),
            "accumulation_calls": opt._accumulation.calls,
        }
    )

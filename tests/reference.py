"""Pure-NumPy reference optimizers and the shared scenario the parity tests run.

The references are written from the algorithm boxes of the torch.optim docs
(SGD, Adam, AdamW, RMSprop): ``maximize`` negates the grad first, before weight
decay joins it. ``l1`` (which torch lacks) adds ``l1 * sign(p)`` to the grad at
the point coupled weight decay is added; with decoupled decay ``sign`` is taken
of the param before it decays.

Array arithmetic runs in the param's dtype (hyperparameters are rounded to it
once, as torch does with a Python scalar); per-step scalars such as the bias
corrections are computed as Python (float64) floats, then rounded.

Nothing here imports torch: ``test_reference.py`` must run without it.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import ferroptim as fo

F32, F64 = np.float32, np.float64

Grads = list[np.ndarray | None]


# -- small helpers -------------------------------------------------------------


def tolerance(dtype: Any) -> dict[str, float]:
    """assert_allclose tolerances for 100 steps in ``dtype``."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 1e-5, "atol": 1e-6}
    return {"rtol": 1e-10, "atol": 1e-12}


def torch_sign(x: np.ndarray) -> np.ndarray:
    """torch.sign: -1, 0 or 1 in x's dtype (0 for both zeros)."""
    x = np.asarray(x)
    return np.where(x > 0, 1, np.where(x < 0, -1, 0)).astype(x.dtype)


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the option values (itertools.product), as dicts."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def combo_id(combo: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items())


def seed_of(*parts: Any) -> int:
    """A stable seed from any printable parts (hash() is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def initial_params(
    rng: np.random.Generator, shapes: Sequence[tuple[int, ...]], dtype: Any
) -> list[np.ndarray]:
    """Normal params with standard deviation 0.5; every 5th element of each
    param with more than 4 elements is an exact zero, where sign(p) = 0 and the
    l1 term vanishes.

    Params of order 1 keep float32's absolute rounding error (a few ulps of
    the largest value an element passes through) under the 1e-6 atol when an
    element later crosses zero.
    """
    params = []
    for shape in shapes:
        p = np.asarray(rng.standard_normal(shape, dtype=np.float64) * 0.5, dtype=dtype)
        if p.size > 4:
            p.reshape(-1)[::5] = 0
        params.append(p)
    return params


def skips(t: int, i: int) -> bool:
    """Whether param ``i`` gets a None grad on step ``t`` (1-based).

    Param 1 starts late (its state is created at step 5), param 3 sits out
    steps 41..60 (across the reload), and every param skips one step in 7.
    """
    if i == 1 and t <= 4:
        return True
    if i == 3 and 41 <= t <= 60:
        return True
    return (t + 3 * i) % 7 == 0


def first_step(i: int, with_none: bool = True) -> int:
    """The step on which param ``i`` first gets a grad."""
    return next(t for t in itertools.count(1) if not (with_none and skips(t, i)))


def random_grads(
    rng: np.random.Generator,
    shapes: Sequence[tuple[int, ...]],
    dtype: Any,
    t: int,
    with_none: bool = True,
) -> Grads:
    """The grads of step ``t``: standard normal times a per-step scale in
    [0.1, 1], None where :func:`skips` says so (if ``with_none``).

    A param's first grad is ``sign(z) * (1 + |z|)``: at least 1 in size, so the
    regularized grad ``±g + wd·p + l1·sign(p)`` of a first step is never a
    near-cancellation. On a first step Adam and RMSprop divide ``g`` by about
    ``|g| + eps``; for ``|g|`` within a few ulps of zero that turns a one-ulp
    difference in how ``g`` is rounded (torch adds ``wd·p`` with a fused
    multiply-add, ferroptim does not) into a change of order ``lr``.
    """
    scale = 10.0 ** rng.uniform(-1.0, 0.0)
    grads: Grads = []
    for i, shape in enumerate(shapes):
        z = rng.standard_normal(shape, dtype=np.float64)
        if t == first_step(i, with_none):
            g = np.asarray(np.sign(z) * (1.0 + np.abs(z)), dtype=dtype)
        else:
            g = np.asarray(z * scale, dtype=dtype)
        grads.append(None if with_none and skips(t, i) else g)
    return grads


def grad_stream(
    seed: int,
    shapes: Sequence[tuple[int, ...]],
    dtype: Any,
    steps: int,
    with_none: bool = True,
) -> Iterator[tuple[int, Grads]]:
    """``(t, grads)`` for t = 1..steps; the same seed gives the same stream."""
    rng = np.random.default_rng(seed)
    for t in range(1, steps + 1):
        yield t, random_grads(rng, shapes, dtype, t, with_none)


def step_counts(n_params: int, steps: int, with_none: bool = True) -> list[int]:
    """How many real (non-None) steps each param takes in a stream."""
    return [
        sum(1 for t in range(1, steps + 1) if not (with_none and skips(t, i)))
        for i in range(n_params)
    ]


# -- the references ------------------------------------------------------------


class Reference:
    """torch.optim's param-group machinery over NumPy arrays, updated in place.

    ``params`` is a list of arrays or a list of group dicts; ``state`` maps a
    param's index (group after group) to ``{"step": n, slot: array, ...}``.
    """

    defaults: dict[str, Any] = {}

    def __init__(self, params: Any, **hypers: Any) -> None:
        unknown = set(hypers) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown hyperparameters {sorted(unknown)}")
        items = list(params)
        groups = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups = [
            {**self.defaults, **hypers, **g, "params": list(g["params"])} for g in groups
        ]
        self.state: dict[int, dict[str, Any]] = {}

    @property
    def params(self) -> list[np.ndarray]:
        return [p for g in self.param_groups for p in g["params"]]

    def step(self, grads: Grads) -> None:
        k = 0
        for group in self.param_groups:
            for p in group["params"]:
                g = grads[k]
                if g is not None:
                    state = self.state.setdefault(k, {"step": 0})
                    state["step"] += 1
                    new = self.update(p, np.asarray(g, dtype=p.dtype), state, group)
                    assert new.dtype == p.dtype, (new.dtype, p.dtype)
                    p[...] = new
                k += 1

    def state_of(self, k: int) -> dict[str, Any]:
        return self.state.get(k, {})

    def update(
        self, p: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def regularized_grad(p: np.ndarray, grad: np.ndarray, group: dict[str, Any], *, coupled: bool):
        """``±grad (+ wd·p) + l1·sign(p)``: the grad every rule starts from."""
        dt = p.dtype.type
        g = -grad if group["maximize"] else grad
        if coupled and group["weight_decay"] != 0:
            g = g + dt(group["weight_decay"]) * p
        if group["l1"] != 0:
            g = g + dt(group["l1"]) * torch_sign(p)
        return g


class RefSGD(Reference):
    r"""torch.optim.SGD's box, plus l1:

    g ← ±∇ + λθ + λ₁ sign(θ);  b ← g (t = 1) or μb + (1−τ)g;
    g ← g + μb (nesterov) or b (μ ≠ 0);  θ ← θ − γg
    """

    defaults = {
        "lr": 1e-3,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
        "maximize": False,
        "l1": 0.0,
    }

    def update(self, p, grad, state, group):
        dt = p.dtype.type
        g = self.regularized_grad(p, grad, group, coupled=True)
        mu = group["momentum"]
        if mu != 0:
            if "momentum_buffer" not in state:
                b = g.copy()
            else:
                b = dt(mu) * state["momentum_buffer"] + dt(1.0 - group["dampening"]) * g
            state["momentum_buffer"] = np.array(b, dtype=p.dtype)
            g = g + dt(mu) * b if group["nesterov"] else b
        return p - dt(group["lr"]) * g


class RefAdam(Reference):
    r"""torch.optim.Adam's box (decoupled_weight_decay=True is AdamW's), plus l1:

    g ← ±∇ + λθ + λ₁ sign(θ)  (coupled) or  g ← ±∇ + λ₁ sign(θ); θ ← θ(1 − γλ)  (decoupled)
    m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  m̂ = m/(1−β₁ᵗ)
    v̂ = max(v̂_max, v)/(1−β₂ᵗ) (amsgrad) or v/(1−β₂ᵗ);  θ ← θ − γ m̂/(√v̂ + ε)
    """

    defaults = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
        "maximize": False,
        "decoupled_weight_decay": False,
        "l1": 0.0,
    }

    def update(self, p, grad, state, group):
        dt = p.dtype.type
        decoupled = group["decoupled_weight_decay"]
        g = self.regularized_grad(p, grad, group, coupled=not decoupled)
        lr, wd = group["lr"], group["weight_decay"]
        if decoupled and wd != 0:
            p = p * dt(1.0 - lr * wd)
        beta1, beta2 = group["betas"]
        t = state["step"]
        m = state.get("exp_avg", np.zeros_like(p))
        v = state.get("exp_avg_sq", np.zeros_like(p))
        m = dt(beta1) * m + dt(1.0 - beta1) * g
        v = dt(beta2) * v + dt(1.0 - beta2) * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = np.array(m), np.array(v)
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        if group["amsgrad"]:
            vmax = np.maximum(state.get("max_exp_avg_sq", np.zeros_like(p)), v)
            state["max_exp_avg_sq"] = np.array(vmax)
            v = vmax
        m_hat = m / dt(bias_correction1)
        v_hat = v / dt(bias_correction2)
        return p - dt(lr) * m_hat / (np.sqrt(v_hat) + dt(group["eps"]))


class RefAdamW(RefAdam):
    """torch.optim.AdamW: Adam with decoupled weight decay, default 1e-2."""

    defaults = {**RefAdam.defaults, "weight_decay": 1e-2, "decoupled_weight_decay": True}


class RefRMSprop(Reference):
    r"""torch.optim.RMSprop's box, plus l1:

    g ← ±∇ + λθ + λ₁ sign(θ);  v ← αv + (1−α)g²;  ṽ = v
    centered: ḡ ← αḡ + (1−α)g;  ṽ = v − ḡ²
    μ > 0: b ← μb + g/(√ṽ + ε); θ ← θ − γb   else θ ← θ − γ g/(√ṽ + ε)
    """

    defaults = {
        "lr": 1e-2,
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        "maximize": False,
        "l1": 0.0,
    }

    def update(self, p, grad, state, group):
        dt = p.dtype.type
        g = self.regularized_grad(p, grad, group, coupled=True)
        alpha = group["alpha"]
        v = dt(alpha) * state.get("square_avg", np.zeros_like(p)) + dt(1.0 - alpha) * (g * g)
        state["square_avg"] = np.array(v)
        v_tilde = v
        if group["centered"]:
            g_ave = dt(alpha) * state.get("grad_avg", np.zeros_like(p)) + dt(1.0 - alpha) * g
            state["grad_avg"] = np.array(g_ave)
            v_tilde = v - g_ave * g_ave
        direction = g / (np.sqrt(v_tilde) + dt(group["eps"]))
        if group["momentum"] > 0:
            b = dt(group["momentum"]) * state.get("momentum_buffer", np.zeros_like(p)) + direction
            state["momentum_buffer"] = np.array(b)
            direction = b
        return p - dt(group["lr"]) * direction


# -- what the parity tests cover -----------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One optimizer: its ferroptim class, reference, option grid and lrs."""

    name: str
    fo_cls: Callable[..., fo.Optimizer]
    ref_cls: type[Reference]
    lr: float
    combos: list[dict[str, Any]]
    # Group 1's hyperparameters (lr included), given group 0's combo.
    group1: Callable[[dict[str, Any]], dict[str, Any]]


def _sgd_group1(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"lr": 0.01}
    if c["momentum"]:
        out["momentum"] = 0.5
    if c["dampening"]:
        out["dampening"] = 0.1
    if c["weight_decay"]:
        out["weight_decay"] = 0.05
    if c["l1"]:
        out["l1"] = 2 * c["l1"]
    return out


def _adam_group1(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"lr": 0.004, "betas": (0.8, 0.99), "eps": 1e-6}
    if c["weight_decay"]:
        out["weight_decay"] = 2 * c["weight_decay"]
    if c["l1"]:
        out["l1"] = 2 * c["l1"]
    return out


def _rmsprop_group1(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"lr": 0.004, "alpha": 0.9, "eps": 1e-6}
    if c["momentum"]:
        out["momentum"] = 0.5
    if c["weight_decay"]:
        out["weight_decay"] = 2 * c["weight_decay"]
    if c["l1"]:
        out["l1"] = 2 * c["l1"]
    return out


def _valid_sgd(c: dict[str, Any]) -> bool:
    # torch (and ferroptim) reject Nesterov without momentum or with dampening.
    return not c["nesterov"] or (c["momentum"] > 0 and c["dampening"] == 0)


SPECS: dict[str, Spec] = {
    "sgd": Spec(
        "sgd",
        fo.SGD,
        RefSGD,
        0.02,
        [
            c
            for c in grid(
                momentum=[0.0, 0.9],
                dampening=[0.0, 0.3],
                nesterov=[False, True],
                weight_decay=[0.0, 0.1],
                maximize=[False, True],
                l1=[0.0, 0.01],
            )
            if _valid_sgd(c)
        ],
        _sgd_group1,
    ),
    "adam": Spec(
        "adam",
        fo.Adam,
        RefAdam,
        0.01,
        grid(
            amsgrad=[False, True],
            weight_decay=[0.0, 0.1],
            decoupled_weight_decay=[False, True],
            maximize=[False, True],
            l1=[0.0, 0.01],
        ),
        _adam_group1,
    ),
    "adamw": Spec(
        "adamw",
        fo.AdamW,
        RefAdamW,
        0.01,
        grid(
            amsgrad=[False, True],
            weight_decay=[0.0, 0.1],
            maximize=[False, True],
            l1=[0.0, 0.01],
        ),
        _adam_group1,
    ),
    "rmsprop": Spec(
        "rmsprop",
        fo.RMSprop,
        RefRMSprop,
        0.01,
        grid(
            momentum=[0.0, 0.9],
            centered=[False, True],
            weight_decay=[0.0, 0.1],
            maximize=[False, True],
            l1=[0.0, 0.01],
        ),
        _rmsprop_group1,
    ),
}


def cases() -> list[tuple[Spec, dict[str, Any]]]:
    """Every (optimizer, option combination) pair."""
    return [(spec, combo) for spec in SPECS.values() for combo in spec.combos]


# -- the scenario ----------------------------------------------------------------

# Group 0 and group 1; LARGE (> 65536 elements) joins group 0 where asked.
SHAPES_G0: list[tuple[int, ...]] = [(), (7,), (3, 5)]
SHAPES_G1: list[tuple[int, ...]] = [(1,), (33, 17)]
LARGE: tuple[int, ...] = (70001,)
STEPS = 100
LR_CHANGE_AT = 30  # after this step both groups' lr change (before the reload)
RELOAD_AT = 50  # after this step the state moves into a fresh optimizer on copies
LR_CHANGE2_AT = 75  # after this step group 1's lr changes again (after the reload)
CHECK_EVERY = 10


def shapes_for(large: bool) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    return (SHAPES_G0 + [LARGE] if large else list(SHAPES_G0)), list(SHAPES_G1)


class Twin(Protocol):
    """What the scenario drives besides ferroptim: a reference or torch."""

    param_groups: list[dict[str, Any]]

    def step(self, grads: Grads) -> None: ...

    def values(self) -> list[np.ndarray]: ...

    def state_of(self, k: int) -> dict[str, Any]: ...


class RefTwin:
    """A :class:`Reference` as a :class:`Twin`."""

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.param_groups = ref.param_groups

    def step(self, grads: Grads) -> None:
        self.ref.step(grads)

    def values(self) -> list[np.ndarray]:
        return self.ref.params

    def state_of(self, k: int) -> dict[str, Any]:
        return self.ref.state_of(k)


def split_groups(arrays: list[Any], n0: int, group1: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"params": arrays[:n0]}, {"params": arrays[n0:], **group1}]


@dataclass
class Run:
    """How a scenario ended: ferroptim's optimizer and params, the twin's, and
    the elements set aside after a sign split (see :func:`run_scenario`)."""

    opt: fo.Optimizer
    params: list[np.ndarray]
    twin: Twin
    shapes: list[tuple[int, ...]]
    split: list[np.ndarray]


# At most this many elements in a million may split (typically 0 to 3 of the
# run's ~71,000 elements do): more means the runs drift apart.
MAX_SPLIT_PER_MILLION = 100


def l1_of(groups: list[dict[str, Any]]) -> list[float]:
    """Each param's l1, group after group."""
    return [g["l1"] for g in groups for _ in g["params"]]


def run_scenario(
    spec: Spec,
    combo: dict[str, Any],
    dtype: Any,
    make_twin: Callable[[list[dict[str, Any]], dict[str, Any]], Twin],
    *,
    large: bool = False,
    steps: int = STEPS,
) -> Run:
    """Drives ferroptim and a twin through the same ``steps`` steps.

    Two param groups with different hyperparameters, None grads on some steps
    (:func:`skips`), both groups' lr changed after step 30, the state moved
    through ``state_dict`` into a fresh optimizer (built with other
    hyperparameters, over copies of the params) after step 50, group 1's lr
    changed again after step 75. The params are compared every 10 steps.

    ``make_twin(groups, kwargs)`` builds the twin over copies of the initial
    params; ``kwargs`` are the combo's keywords (``l1`` included) plus lr.

    Sign splits: ``l1·sign(p)`` jumps by ``2·l1`` where ``p`` crosses zero. When
    an element of the two runs sits on either side of zero (they agree to
    rounding, which is checked at that moment) the two take different l1
    steps, legitimately, and from then on that element is no longer compared.
    Such elements are counted and capped (:data:`MAX_SPLIT_PER_MILLION`).
    """
    g0, g1 = shapes_for(large)
    shapes = g0 + g1
    n0 = len(g0)
    tol = tolerance(dtype)
    seed = seed_of(spec.name, combo_id(combo), np.dtype(dtype).name, large)
    init = initial_params(np.random.default_rng(seed), shapes, dtype)
    kwargs = {"lr": spec.lr, **combo}
    group1 = spec.group1(combo)

    ours = [p.copy() for p in init]
    opt = spec.fo_cls(split_groups(ours, n0, group1), **kwargs)
    twin = make_twin(split_groups([p.copy() for p in init], n0, group1), kwargs)
    split = [np.zeros(shape, dtype=bool) for shape in shapes]

    for t, grads in grad_stream(seed + 1, shapes, dtype, steps):
        for i, (a, b, l1) in enumerate(zip(ours, twin.values(), l1_of(opt.param_groups))):
            if l1 == 0 or grads[i] is None:
                continue
            new = (torch_sign(a) != torch_sign(b)) & ~split[i]
            if new.any():
                np.testing.assert_allclose(
                    a[new], b[new], **tol, err_msg=f"param {i} before a sign split at step {t}"
                )
                split[i] |= new
        twin.step(grads)
        assert opt.step(grads) is True
        if t == LR_CHANGE_AT:
            for mine, theirs in zip(opt.param_groups, twin.param_groups, strict=True):
                mine["lr"] *= 0.5
                theirs["lr"] *= 0.5
        if t == RELOAD_AT:
            saved = opt.state_dict()
            ours = [p.copy() for p in ours]
            # Built with the defaults: load_state_dict must bring back every
            # hyperparameter (the changed lrs included) and the state.
            opt = spec.fo_cls(split_groups(ours, n0, {}))
            opt.load_state_dict(saved)
            assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in twin.param_groups]
            # The load copied: scribbling on the saved dict must change nothing.
            for entry in saved["state"].values():
                for value in entry.values():
                    if isinstance(value, np.ndarray):
                        value.fill(np.nan)
        if t == LR_CHANGE2_AT:
            opt.param_groups[1]["lr"] *= 3.0
            twin.param_groups[1]["lr"] *= 3.0
        if t % CHECK_EVERY == 0 or t == steps:
            for i, (a, b) in enumerate(zip(ours, twin.values(), strict=True)):
                assert a.shape == shapes[i] and a.dtype == np.dtype(dtype)
                keep = ~split[i]
                np.testing.assert_allclose(
                    a[keep], b[keep], **tol, err_msg=f"param {i} {shapes[i]} after step {t}"
                )
    n_split = sum(int(m.sum()) for m in split)
    n_total = sum(m.size for m in split)
    assert n_split <= MAX_SPLIT_PER_MILLION * n_total / 1e6 + 1, f"{n_split} elements split"
    return Run(opt, ours, twin, shapes, split)


def assert_state_matches(run: Run, dtype: Any, steps: int = STEPS) -> None:
    """ferroptim's final state equals the twin's, slot for slot, and every
    param took the expected number of steps.

    A state slot sums terms: its rounding error scales with the largest of
    them, not with the (possibly cancelled) result, so atol is taken relative
    to the slot's largest value (rtol is unchanged).
    """
    tol = tolerance(dtype)
    assert run.opt.step_counts == step_counts(len(run.shapes), steps)
    state = run.opt.state_dict()["state"]
    for k, shape in enumerate(run.shapes):
        want = {
            name: np.asarray(v)
            for name, v in run.twin.state_of(k).items()
            if name != "step" and v is not None
        }
        got = {name: v for name, v in state.get(k, {}).items() if isinstance(v, np.ndarray)}
        assert set(got) == set(want), f"param {k}: state slots {sorted(got)} != {sorted(want)}"
        keep = ~run.split[k]
        for name, value in got.items():
            assert value.dtype == np.dtype(dtype) and value.shape == shape, (k, name)
            scale = max(1.0, float(np.max(np.abs(want[name]), initial=0.0)))
            np.testing.assert_allclose(
                value[keep],
                want[name][keep],
                rtol=tol["rtol"],
                atol=tol["atol"] * scale,
                err_msg=f"{name} of param {k}",
            )


# -- bitwise comparisons -----------------------------------------------------------


def assert_bitwise_equal(a: Sequence[np.ndarray], b: Sequence[np.ndarray], what: str = "") -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.dtype == y.dtype and x.shape == y.shape, (what, i)
        assert np.array_equal(x, y), f"{what}: array {i} differs"
        # array_equal treats -0.0 == 0.0; the bytes must agree too.
        assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes(), (what, i)


def state_arrays(opt: fo.Optimizer) -> list[np.ndarray]:
    """Every state array of ``opt``, in a fixed order."""
    state = opt.state_dict()["state"]
    return [
        state[key][slot]
        for key in sorted(state, key=str)
        for slot in sorted(state[key])
        if isinstance(state[key][slot], np.ndarray)
    ]

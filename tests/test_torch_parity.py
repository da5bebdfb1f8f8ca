"""ferroptim.torch against torch.optim on torch's own optimizer test inputs.

For every optimizer both have, every config of its ``OptimizerInfo.optim_inputs_func``
in ``torch.testing._internal.common_optimizers.optim_db`` runs in float32 and
float64: two param groups (the second at half the lr) holding a 0-d, a (3,),
a (4, 5), a (7,) and a (2, 3) tensor, ten steps with the (3,) tensor's grad
None on some of them, against torch's single-tensor path (``foreach=False``).
Halfway, ferroptim's ``state_dict`` must equal torch's (same indices, state
names, ``step`` tensors, group keys) and goes through ``torch.save`` into a
fresh optimizer that finishes the run.

torch's error inputs (``optim_error_inputs_func``) that torch refuses at
construction are refused by ferroptim.torch too, with the same exception class
(ferroptim's errors subclass ValueError/TypeError), except the ones in
``ERROR_INPUT_SKIPS``.

Tolerances: rtol 1e-5 / atol 1e-6 (float32), 1e-10 / 1e-12 (float64).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest

torch = pytest.importorskip(
    "torch",
    reason="torch is not installed (CPU build: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)",
)
common = pytest.importorskip(
    "torch.testing._internal.common_optimizers",
    reason="torch's optimizer test inputs need the expecttest package (pip install expecttest)",
)
fot = pytest.importorskip("ferroptim.torch")

from ferroptim.torch.specs import SPECS  # noqa: E402

OURS = {spec.name: getattr(fot, spec.name) for spec in SPECS}
SHAPES = [[(), (3,), (4, 5)], [(7,), (2, 3)]]
STEPS = 10
TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-10, 1e-12)}

# Options of torch's configs that ferroptim.torch lacks: the config is skipped, with why.
UNSUPPORTED = {
    "capturable": "CUDA-graph capture does not apply to ferroptim's in-place NumPy step",
    "differentiable": "there is no autograd through a ferroptim step",
}

# torch's construction-error inputs ferroptim.torch treats otherwise, and why.
ERROR_INPUT_SKIPS = {
    "not supported for capturable=False and foreach=True": "foreach is a no-op in ferroptim: "
    "a Tensor lr or Tensor betas work with it",
    "betas must be either both floats or both Tensors": "ferroptim reads each beta as a number",
    "duplicate parameters": "checked separately: ferroptim refuses a param given twice "
    "(an error, where torch only warns)",
}


def _infos() -> list[Any]:
    return [info for info in common.optim_db if info.optim_cls.__name__ in OURS]


def _configs() -> list[Any]:
    out = []
    for info in _infos():
        name = info.optim_cls.__name__
        for inp in info.optim_inputs_func(device="cpu", dtype=torch.float32):
            flags = [k for k in inp.kwargs if k in UNSUPPORTED and inp.kwargs[k]]
            marks = [pytest.mark.skip(reason=UNSUPPORTED[flags[0]])] if flags else []
            for dtype in (torch.float32, torch.float64):
                cid = f"{name}-{inp.desc}-{str(dtype)[6:]}".replace(" ", "_")
                out.append(pytest.param(info.optim_cls, inp.kwargs, dtype, id=cid, marks=marks))
    return out


def _params(dtype: Any) -> list[list[Any]]:
    gen = torch.Generator().manual_seed(0)
    return [
        [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
        for shapes in SHAPES
    ]


def _groups(params: list[list[Any]], lr: Any) -> list[dict[str, Any]]:
    return [{"params": params[0]}, {"params": params[1], "lr": lr * 0.5}]


def _set_grads(params: list[list[Any]], t: int, dtype: Any) -> None:
    gen = torch.Generator().manual_seed(1000 + t)
    for k, p in enumerate(q for g in params for q in g):
        g = torch.randn(p.shape, generator=gen, dtype=dtype)
        # The (3,) tensor has no grad on some steps: its state must not move.
        p.grad = None if (k == 1 and t % 3 == 2) else g


def _assert_close(a: Any, b: Any, dtype: Any, what: str) -> None:
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _assert_same_state_dict(ours: dict[str, Any], theirs: dict[str, Any], dtype: Any) -> None:
    assert set(ours["state"]) == set(theirs["state"])
    for idx, st in theirs["state"].items():
        assert set(ours["state"][idx]) == set(st), f"state names of param {idx}"
        for key, value in st.items():
            mine = ours["state"][idx][key]
            if key == "step" or key == "mu_product":
                assert isinstance(mine, torch.Tensor) and mine.dtype == value.dtype, key
                _assert_close(mine, value, torch.float64, f"{key} of {idx}")
            else:
                _assert_close(mine, value, dtype, f"{key} of {idx}")
    for g_ours, g_theirs in zip(ours["param_groups"], theirs["param_groups"]):
        assert set(g_ours) == set(g_theirs)
        for key in g_theirs:
            if key not in ("lr", "foreach"):
                assert g_ours[key] == g_theirs[key], key
        assert float(g_ours["lr"]) == float(g_theirs["lr"])


@pytest.mark.parametrize(("torch_cls", "kwargs", "dtype"), _configs())
def test_matches_torch_on_optim_db_inputs(torch_cls: Any, kwargs: dict, dtype: Any) -> None:
    ours_cls = OURS[torch_cls.__name__]
    defaults = dict(ours_cls([torch.zeros(1)]).defaults)
    lr = kwargs.get("lr", defaults["lr"])
    theirs_p, ours_p = _params(dtype), _params(dtype)
    theirs = torch_cls(_groups(theirs_p, lr), **{**kwargs, "foreach": False})
    ours = ours_cls(_groups(ours_p, lr), **kwargs)
    for t in range(STEPS):
        _set_grads(theirs_p, t, dtype)
        _set_grads(ours_p, t, dtype)
        theirs.step()
        ours.step()
        for k, (a, b) in enumerate(zip(sum(ours_p, []), sum(theirs_p, []))):
            _assert_close(a, b, dtype, f"param {k} after step {t + 1}")
        if t == STEPS // 2:
            sd = ours.state_dict()
            _assert_same_state_dict(sd, theirs.state_dict(), dtype)
            buf = io.BytesIO()
            torch.save(sd, buf)
            buf.seek(0)
            fresh = ours_cls(_groups(ours_p, lr), **kwargs)
            fresh.load_state_dict(torch.load(buf))
            ours = fresh


@pytest.mark.parametrize("info", _infos(), ids=lambda i: i.optim_cls.__name__)
def test_refuses_what_torch_refuses(info: Any) -> None:
    ours_cls = OURS[info.optim_cls.__name__]
    checked = 0
    for err in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        if err.error_on != common.OptimizerErrorEnum.CONSTRUCTION_ERROR:
            continue
        if any(key in err.error_regex for key in ERROR_INPUT_SKIPS):
            continue
        inp = err.optimizer_error_input
        params = inp.params if inp.params is not None else [torch.zeros(2, requires_grad=True)]
        with pytest.raises(err.error_type):
            ours_cls(params, **inp.kwargs)
        checked += 1
    assert checked > 0


def test_duplicate_param_is_an_error() -> None:
    p = torch.zeros(3, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own duplicate warning comes first
        with pytest.raises(ValueError, match="given twice"):
            fot.Adam([p, p])

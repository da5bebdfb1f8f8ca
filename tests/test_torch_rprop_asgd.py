"""ferroptim.torch.Rprop and ferroptim.torch.ASGD against torch.optim's.

Every config of their ``optim_inputs_func`` in torch's
``common_optimizers.optim_db`` (plus ASGD with averaging switched on early,
``t0=3``), float32 and float64, two param groups (the second at half the lr),
a (3,) tensor whose grad is None on some steps and a (7,) tensor whose grad is
None until step 7 (its state starts in the ferroptim leg). One run is torch's
throughout; the other goes torch -> ferroptim -> torch through state_dicts
(``torch.save``/``torch.load``) mid-training and must give the same numbers:
Rprop bitwise (its arithmetic is torch's), ASGD to rounding (torch's
vectorized ``p - eta*g`` is a fused multiply-add). At each hand-over the
state_dict's format (names, dtypes, shapes, 0-d ``step``/``eta``/``mu``) is
torch's.

The shared parity suite (test_torch_parity.py) covers these classes too,
through ``SPECS``; here are the round trip through torch and what is special
to them.
"""

from __future__ import annotations

import copy
import inspect
import io
from collections.abc import Iterator
from contextlib import contextmanager
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

from ferroptim.exceptions import StateDictError  # noqa: E402

NAMES = ("Rprop", "ASGD")
SHAPES = [[(), (3,), (4, 5)], [(7,), (2, 3)]]
STEPS = 12
TO_OURS, TO_TORCH = 4, 9  # the steps before which the state changes hands
LATE = 3  # the (7,) tensor: no grad before step TO_OURS + 2
TOL = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-10, 1e-12)}
NUMBERS = ("step", "eta", "mu", "mu_product")  # the per-param 0-d tensors
EXTRA = {"ASGD": [{"t0": 3, "lambd": 0.1}]}  # mu != 1 within the run


@contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """torch with this default dtype: the dtype of step, eta, mu, mu_product."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _configs() -> list[Any]:
    out = []
    for info in common.optim_db:
        name = info.optim_cls.__name__
        if name not in NAMES:
            continue
        inputs = [(i.desc, i.kwargs) for i in info.optim_inputs_func(device="cpu", dtype=None)]
        inputs += [(repr(kw), kw) for kw in EXTRA.get(name, [])]
        for desc, kwargs in inputs:
            for dtype in (torch.float32, torch.float64):
                cid = f"{name}-{desc}-{str(dtype)[6:]}".replace(" ", "_")
                out.append(pytest.param(name, kwargs, dtype, id=cid))
    return out


CONFIGS = _configs()


def _params(dtype: Any) -> list[list[Any]]:
    gen = torch.Generator().manual_seed(0)
    return [
        [torch.randn(s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]
        for shapes in SHAPES
    ]


def _groups(params: list[list[Any]], lr: float) -> list[dict[str, Any]]:
    return [{"params": params[0]}, {"params": params[1], "lr": lr * 0.5}]


def _set_grads(params: list[list[Any]], t: int, dtype: Any) -> None:
    gen = torch.Generator().manual_seed(1000 + t)
    for k, p in enumerate(q for g in params for q in g):
        g = torch.randn(p.shape, generator=gen, dtype=dtype)
        if (k == 1 and t % 3 == 2) or (k == LATE and t < TO_OURS + 2):
            g = None
        p.grad = g


def _through_bytes(sd: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf)


def _assert_same_format(ours: dict[str, Any], theirs: dict[str, Any], tol: Any) -> None:
    """Same indices, names, dtypes and shapes; values equal (tol None) or close."""
    assert ours["state"].keys() == theirs["state"].keys()
    for i, st in theirs["state"].items():
        assert list(ours["state"][i]) == list(st), f"state names of param {i}"
        for key, value in st.items():
            mine = ours["state"][i][key]
            assert isinstance(mine, torch.Tensor), (i, key)
            assert (mine.dtype, mine.shape) == (value.dtype, value.shape), (i, key)
            if tol is None or key in NUMBERS:  # always exact
                assert torch.equal(mine, value), (i, key, mine, value)
            else:
                torch.testing.assert_close(mine, value, rtol=tol[0], atol=tol[1])
    assert len(ours["param_groups"]) == len(theirs["param_groups"])
    for g_ours, g_theirs in zip(ours["param_groups"], theirs["param_groups"]):
        # foreach: the torch runs here pass False, ferroptim keeps the default None.
        assert {**g_ours, "foreach": None} == {**g_theirs, "foreach": None}


@pytest.mark.parametrize(("name", "kwargs", "dtype"), CONFIGS)
def test_torch_to_ferroptim_to_torch_mid_training(name: str, kwargs: dict, dtype: Any) -> None:
    torch_cls, ours_cls = getattr(torch.optim, name), getattr(fot, name)
    lr = kwargs.get("lr", 1e-2)
    tol = (0.0, 0.0) if name == "Rprop" else TOL[dtype]
    ref_p, run_p = _params(dtype), _params(dtype)
    ref = torch_cls(_groups(ref_p, lr), **{**kwargs, "foreach": False})
    opt = torch_cls(_groups(run_p, lr), **{**kwargs, "foreach": False})
    for t in range(STEPS):
        if t == TO_OURS:
            sd = opt.state_dict()
            assert LATE not in sd["state"]  # that tensor's state starts with ferroptim
            opt = ours_cls(_groups(run_p, lr), **kwargs)
            opt.load_state_dict(_through_bytes(sd))
            _assert_same_format(opt.state_dict(), sd, None)  # loaded as it was
        if t == TO_TORCH:
            sd = opt.state_dict()
            _assert_same_format(sd, ref.state_dict(), tol)
            opt = torch_cls(_groups(run_p, lr), **{**kwargs, "foreach": False})
            opt.load_state_dict(_through_bytes(sd))
            # torch casts a loaded eta and mu to the param's dtype: as it does its own.
            own = torch_cls(_groups(_params(dtype), lr), **{**kwargs, "foreach": False})
            own.load_state_dict(ref.state_dict())
            _assert_same_format(opt.state_dict(), own.state_dict(), tol)
        _set_grads(ref_p, t, dtype)
        _set_grads(run_p, t, dtype)
        ref.step()
        opt.step()
        for k, (a, b) in enumerate(zip(sum(run_p, []), sum(ref_p, []))):
            torch.testing.assert_close(
                a, b, rtol=tol[0], atol=tol[1], msg=lambda m, k=k, t=t: f"param {k}, step {t}: {m}"
            )
    assert isinstance(opt, torch_cls)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("name", "kwargs"), [("ASGD", {"t0": 3, "lambd": 0.1}), ("NAdam", {})])
def test_per_param_numbers_follow_a_float64_default_dtype(
    name: str, kwargs: dict, dtype: Any
) -> None:
    # torch keeps eta, mu and mu_product in its default dtype: float64 here,
    # so they must not be rounded to float32 and must come out as float64 tensors.
    with default_dtype(torch.float64):
        ref_p, run_p = _params(dtype), _params(dtype)
        ref = getattr(torch.optim, name)(_groups(ref_p, 0.01), foreach=False, **kwargs)
        ours = getattr(fot, name)(_groups(run_p, 0.01), **kwargs)
        for t in range(8):
            _set_grads(ref_p, t, dtype)
            _set_grads(run_p, t, dtype)
            ref.step()
            ours.step()
        sd, theirs = ours.state_dict(), ref.state_dict()
        _assert_same_format(sd, theirs, TOL[dtype])
        assert sd["state"][0]["step"].dtype == torch.float64
        back = getattr(fot, name)(_groups(run_p, 0.01), **kwargs)
        back.load_state_dict(_through_bytes(theirs))
        _assert_same_format(back.state_dict(), theirs, None)


@pytest.mark.parametrize("name", NAMES)
def test_signature_defaults_and_groups_are_torchs(name: str) -> None:
    ours, theirs = getattr(fot, name), getattr(torch.optim, name)
    mine = inspect.signature(ours.__init__).parameters
    ref = inspect.signature(theirs.__init__).parameters
    # ferroptim's low-precision options (#14) follow torch's, keyword-only.
    lowp = ["state_dtype", "master_weights", "stochastic_rounding", "seed"]
    assert list(mine) == [*ref, *lowp]
    for pname, param in ref.items():
        assert (mine[pname].default, mine[pname].kind) == (param.default, param.kind), pname
    p = [torch.zeros(1, requires_grad=True)]
    assert ours(p).defaults == theirs(p).defaults
    # Rprop's engine takes a weight_decay torch lacks: it stays out of the groups.
    assert ours(p).param_groups[0].keys() == theirs(p).param_groups[0].keys()
    assert name in fot.__all__


def test_asgd_help_words_alpha_as_asgd_does() -> None:
    doc = fot.ASGD.__doc__ or ""
    assert "alpha : float, default 0.75\n    Power of the step-size decay." in doc
    assert "etas : tuple[float, float], default (0.5, 1.2)" in (fot.Rprop.__doc__ or "")


def _trained(name: str, dtype: Any = torch.float32) -> tuple[Any, Any]:
    params = _params(dtype)
    opt = getattr(torch.optim, name)(_groups(params, 0.01), foreach=False)
    for t in range(3):
        _set_grads(params, t, dtype)
        opt.step()
    return params, opt


@pytest.mark.parametrize(("name", "other"), [("Rprop", "ASGD"), ("ASGD", "Rprop")])
def test_the_other_ones_state_dict_is_refused_and_changes_nothing(name: str, other: str) -> None:
    params, _ = _trained(name)
    _, foreign = _trained(other)
    ours = getattr(fot, name)(_groups(params, 0.01))
    _set_grads(params, 0, torch.float32)
    ours.step()
    before = ours.state_dict()
    with pytest.raises(StateDictError, match="missing from the param group"):
        ours.load_state_dict(foreign.state_dict())
    # With our groups, the foreign state itself is refused, naming what it holds.
    mixed = {"state": foreign.state_dict()["state"], "param_groups": before["param_groups"]}
    with pytest.raises(StateDictError, match=r"has '(eta|prev)', which this optimizer does not"):
        ours.load_state_dict(mixed)
    _assert_same_format(ours.state_dict(), before, None)


def test_a_bad_eta_is_refused_by_name() -> None:
    params, t_opt = _trained("ASGD")
    sd = copy.deepcopy(t_opt.state_dict())
    sd["state"][0]["eta"] = torch.ones(2)
    ours = fot.ASGD(_groups(params, 0.01))
    with pytest.raises(StateDictError, match="eta"):
        ours.load_state_dict(sd)
    assert ours.state_dict()["state"] == {}


@pytest.mark.parametrize("name", NAMES)
def test_flattened_model_steps_as_torch_and_its_state_dict_loads_into_torch(name: str) -> None:
    def model() -> Any:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))

    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(32, 6, generator=gen), torch.randn(32, 2, generator=gen)

    def train(m: Any, opt: Any, steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    m_t, m_f = model(), model()
    fot.flatten(m_f)
    t_opt = getattr(torch.optim, name)(m_t.parameters(), foreach=False)
    f_opt = getattr(fot, name)(m_f.parameters())
    assert len(f_opt._entries) == 1  # one arena run
    train(m_t, t_opt, 4)
    train(m_f, f_opt, 4)
    _assert_same_format(f_opt.state_dict(), t_opt.state_dict(), TOL[torch.float32])
    t2 = getattr(torch.optim, name)(m_f.parameters(), foreach=False)
    t2.load_state_dict(f_opt.state_dict())
    train(m_t, t_opt, 3)
    train(m_f, t2, 3)
    for a, b in zip(m_f.parameters(), m_t.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_load_pre_hook_that_changes_eta_is_honoured() -> None:
    params, t_opt = _trained("ASGD", torch.float64)
    sd = t_opt.state_dict()

    def halve_eta(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        state = {i: {**st, "eta": st["eta"] / 2} for i, st in state_dict["state"].items()}
        return {**state_dict, "state": state}

    ours = fot.ASGD(_groups(params, 0.01))
    ours.register_load_state_dict_pre_hook(halve_eta)
    ours.load_state_dict(sd)
    for i, st in ours.state_dict()["state"].items():
        assert float(st["eta"]) == float(sd["state"][i]["eta"]) / 2

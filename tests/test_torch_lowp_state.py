"""ferroptim.torch's state_dict with float16/bfloat16 params and the #14
options: the format (``master_param`` float32, bfloat16 slots, uint8 codes and
``<slot>_absmax`` scales, see ferroptim.torch.lowp), exact round trips, torch's
own bfloat16 AdamW state both ways, refusals, flattened runs, stochastic
rounding resumed. The steps themselves and the parity with torch are in
test_torch_lowp.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ml_dtypes")
fot = pytest.importorskip("ferroptim.torch")

from ferroptim.exceptions import StateDictError  # noqa: E402

F32 = np.float32
LOW = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]


def _param(dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    start = torch.from_numpy(np.random.default_rng(5).standard_normal(shape).astype(F32))
    return torch.nn.Parameter(start.to(dtype))


def _grad(shape: tuple, k: int, dtype: torch.dtype) -> torch.Tensor:
    rng = np.random.default_rng(100 + k)
    return torch.from_numpy(rng.standard_normal(shape).astype(F32)).to(dtype)


def _through_bytes(sd: dict) -> dict:
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf)


STATE = [
    pytest.param("float32", True, id="f32-master"),
    pytest.param("bfloat16", True, id="bf16-master"),
    pytest.param("bfloat16", False, id="bf16-nomaster"),
    pytest.param("int8", True, id="int8-master"),
    pytest.param("int8", False, id="int8-nomaster"),
]


@pytest.mark.parametrize("state_dtype, master", STATE)
@pytest.mark.parametrize("dtype", LOW)
def test_state_dict_format_and_an_exact_round_trip(dtype, state_dtype: str, master: bool) -> None:
    kw = {"lr": 0.01, "state_dtype": state_dtype, "master_weights": master}
    shape = (300,)
    p, q = _param(dtype, shape), _param(dtype, shape)
    o_p = fot.AdamW([p], **kw)
    for k in range(3):
        p.grad = _grad(shape, k, dtype)
        o_p.step()
    st = o_p.state_dict()["state"][0]
    slot_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.uint8}
    assert st["exp_avg"].dtype == slot_dtype[state_dtype] and st["exp_avg"].shape == shape
    assert ("master_param" in st) == master
    if master:
        assert st["master_param"].dtype == torch.float32 and st["master_param"].shape == shape
    if state_dtype == "int8":
        assert st["exp_avg_absmax"].dtype == torch.float32 and st["exp_avg_absmax"].shape == (2,)
    with torch.no_grad():
        q.copy_(p)
    o_q = fot.AdamW([q], **kw)
    o_q.load_state_dict(_through_bytes(o_p.state_dict()))
    for k in range(3, 6):
        p.grad = _grad(shape, k, dtype)
        q.grad = p.grad.clone()
        o_p.step()
        o_q.step()
        assert torch.equal(p, q)
    for key, value in o_p.state[p].items():
        assert torch.equal(value, o_q.state[q][key]), key


def test_torch_bf16_adamw_state_dicts_load_both_ways() -> None:
    shape = (1000,)
    t, u = _param(torch.bfloat16, shape), _param(torch.bfloat16, shape)
    ref = torch.optim.AdamW([t], lr=0.01, fused=True)
    ours = fot.AdamW([u], lr=0.01, state_dtype="bfloat16", master_weights=False)
    for k in range(3):
        t.grad = _grad(shape, k, torch.bfloat16)
        ref.step()
    with torch.no_grad():
        u.copy_(t)
    ours.load_state_dict(_through_bytes(ref.state_dict()))
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(ours.state[u][key], ref.state[t][key])
    back = torch.optim.AdamW([torch.nn.Parameter(u.detach().clone())], lr=0.01, fused=True)
    back.load_state_dict(_through_bytes(ours.state_dict()))
    (bp,) = back.param_groups[0]["params"]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(back.state[bp][key], ref.state[t][key])
    # The default (float32 state, master weights) widens torch's bfloat16 moments.
    wide = fot.AdamW([torch.nn.Parameter(u.detach().clone())], lr=0.01)
    wide.load_state_dict(ref.state_dict())
    (wp,) = wide.param_groups[0]["params"]
    assert wide.state[wp]["exp_avg"].dtype == torch.float32
    assert torch.equal(wide.state[wp]["exp_avg"], ref.state[t]["exp_avg"].float())


@pytest.mark.parametrize("target", ["bfloat16", "int8"])
def test_narrowing_the_state_is_refused_by_name_and_changes_nothing(target: str) -> None:
    p = _param(torch.bfloat16, (300,))
    src = fot.AdamW([p], lr=0.01)
    p.grad = _grad(p.shape, 0, torch.bfloat16)
    src.step()
    dst = fot.AdamW([p], lr=0.02, state_dtype=target)
    p.grad = _grad(p.shape, 1, torch.bfloat16)
    dst.step()
    before = {k: v.clone() for k, v in dst.state[p].items()}
    with pytest.raises(StateDictError, match="exp_avg"):
        dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["lr"] == 0.02
    for key, value in dst.state[p].items():
        assert torch.equal(value, before[key]), key


def test_int8_state_of_a_flattened_model_round_trips_per_tensor() -> None:
    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 7))

    m1, m2 = model(), model()
    fot.flatten(m1)
    o1 = fot.AdamW(m1.parameters(), lr=0.01, state_dtype="int8")
    x = torch.randn(16, 30)
    for _ in range(3):
        o1.zero_grad()
        m1(x).square().mean().backward()
        o1.step()
    sd = o1.state_dict()
    # (600, 20, 140, 7) elements from offset 0: each tensor holds the blocks it overlaps.
    scales = [tuple(s["exp_avg_absmax"].shape) for s in sd["state"].values()]
    assert scales == [(3,), (1,), (1,), (1,)]
    # 600 + 20 + 140: the last three start 88, 108 and 248 elements into a block.
    offsets = [float(s.get("block_offset", 0)) for s in sd["state"].values()]
    assert offsets == [0, 88, 108, 248]
    plain = model()
    with pytest.raises(StateDictError, match="block_offset|starting 88 elements"):
        fot.AdamW(plain.parameters(), lr=0.01, state_dtype="int8").load_state_dict(sd)
    fot.flatten(m2)
    with torch.no_grad():
        for a, b in zip(m1.parameters(), m2.parameters()):
            b.copy_(a)
    o2 = fot.AdamW(m2.parameters(), lr=0.01, state_dtype="int8")
    o2.load_state_dict(_through_bytes(sd))
    for o, m in ((o1, m1), (o2, m2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_stochastic_rounding_is_seeded_and_resumes_the_same_bits() -> None:
    def run(seed: int, resume_at: int | None = None) -> torch.Tensor:
        p = _param(torch.bfloat16, (1000,))
        kw = {"lr": 1e-3, "master_weights": False, "stochastic_rounding": True, "seed": seed}
        opt = fot.AdamW([p], **kw)
        for k in range(6):
            if k == resume_at:
                sd = _through_bytes(opt.state_dict())
                opt = fot.AdamW([p], **kw)
                opt.load_state_dict(sd)
            p.grad = _grad(p.shape, k, torch.bfloat16)
            opt.step()
        return p.detach().clone()

    first = run(1)
    assert torch.equal(first, run(1))
    assert torch.equal(first, run(1, resume_at=3))
    assert not torch.equal(first, run(2))


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("dtype", [torch.float32, *LOW])
def test_adagrad_state_before_a_step_reloads_into_compressed_state(dtype, state_dtype: str) -> None:
    # torch's Adagrad has state before any step: exported as torch makes it, taken back as fresh.
    p = _param(dtype, (300,))
    kw = {"lr": 0.1, "initial_accumulator_value": 0.1, "state_dtype": state_dtype}
    first = fot.Adagrad([p], **kw)
    assert float(first.state[p]["sum"][0]) == pytest.approx(0.1, rel=1e-2)
    again = fot.Adagrad([p], **kw)
    again.load_state_dict(first.state_dict())
    again.state[p] = again.state[p]
    q = _param(dtype, (300,))
    fresh = fot.Adagrad([q], **kw)
    p.grad, q.grad = _grad((300,), 0, dtype), _grad((300,), 0, dtype)
    again.step()
    fresh.step()
    assert torch.equal(p, q)

"""The Rust engine under bad input and faults: out of memory, lax
conversions, unnamed options, many groups, NAdam's float32 mu_product."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.exceptions import HyperparameterError, ParamError, StateDictError

# -- out of memory ------------------------------------------------------------

_OOM_SCRIPT = textwrap.dedent(
    """
    import resource
    import numpy as np
    import ferroptim as fo

    n = 32 * 1024 * 1024  # 128 MiB of float32
    w = np.ones(n, np.float32)
    g = np.full(n, 0.5, np.float32)
    opt = fo.{cls}([w], lr=0.1, {options})

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    # Room for one state slot of the param's size, not two.
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + int(1.5 * 4 * n), hard))
    try:
        opt.step([g])
    except MemoryError as err:
        print("MemoryError", err)
    else:
        raise SystemExit("no MemoryError")
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert opt.step_counts == [0], opt.step_counts
    assert opt.state_dict()["state"] == {{}}
    assert (w == 1.0).all()
    assert opt.step([g])
    assert opt.step_counts == [1]
    print("OK")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
@pytest.mark.parametrize(
    ("cls", "options"), [("Adam", ""), ("SGD", "momentum=0.9, ema_decay=0.99")]
)
def test_out_of_memory_is_a_memory_error_and_changes_nothing(cls: str, options: str) -> None:
    """Allocating state past the address-space limit used to abort the process."""
    script = _OOM_SCRIPT.format(cls=cls, options=options)
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr[-2000:])
    assert "MemoryError out of memory allocating" in run.stdout
    assert run.stdout.strip().endswith("OK")


# -- lax conversion of state --------------------------------------------------


def _stepped_adam() -> tuple[fo.Adam, np.ndarray, dict]:
    w = np.linspace(-1, 1, 6)
    opt = fo.Adam([w], lr=0.1)
    opt.step([np.ones(6)])
    return opt, w, opt.state_dict()


@pytest.mark.parametrize(
    ("slot_value", "words"),
    [
        (np.ones(6, np.complex128) * (1 + 2j), "real numbers"),
        (np.array(["1.5"] * 6), "real numbers"),
        (np.array([1.0] * 6, dtype=object), "real numbers"),
        (np.ones(6, bool), "real numbers"),
    ],
    ids=["complex", "strings", "objects", "bools"],
)
def test_state_arrays_that_are_not_real_numbers_are_refused(slot_value, words) -> None:
    opt, w, sd = _stepped_adam()
    before = opt.state_dict()
    bad = {**sd, "state": {0: {**sd["state"][0], "exp_avg": slot_value}}}
    with pytest.raises(StateDictError, match=words) as info:
        opt.load_state_dict(bad)
    assert "exp_avg" in str(info.value)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


@pytest.mark.parametrize("flag", [True, np.True_], ids=["bool", "numpy_bool"])
def test_a_bool_step_count_is_refused(flag) -> None:
    opt, _, sd = _stepped_adam()
    bad = {**sd, "state": {0: {**sd["state"][0], "step": flag}}}
    with pytest.raises(StateDictError, match="step of param #0 must be a (whole|real) number"):
        opt.load_state_dict(bad)
    assert opt.step_counts == [1]


def test_integer_state_arrays_still_load() -> None:
    opt, _, sd = _stepped_adam()
    ok = {**sd, "state": {0: {**sd["state"][0], "exp_avg": np.arange(6)}}}
    opt.load_state_dict(ok)
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], np.arange(6.0))


# -- options and settings name themselves -------------------------------------


@pytest.mark.parametrize("option", ["max_grad_norm", "clip_value", "ema_decay", "norm_type"])
@pytest.mark.parametrize("value", ["x", True, [1.0]], ids=["str", "bool", "list"])
def test_a_non_numeric_option_is_named(option: str, value) -> None:
    with pytest.raises(HyperparameterError, match=f"^{option}: must be a number"):
        fo.AdamW([np.zeros(3, np.float32)], **{option: value})


@pytest.mark.parametrize("n", [2**70, -(2**70), 0, True, 1.5, "2"])
def test_set_num_threads_refuses_with_a_value_error(n) -> None:
    before = fo.get_num_threads()
    with pytest.raises(ValueError, match="the number of threads must be in 1..="):
        fo.set_num_threads(n)
    assert fo.get_num_threads() == before


# -- many groups: the overlap index ----------------------------------------------


def test_overlap_is_found_across_many_groups() -> None:
    """Params are checked against every earlier group, whatever their order."""
    base = np.zeros(4000)
    views = [base[i * 4 : i * 4 + 4] for i in range(1000)]
    opt = fo.SGD([{"params": [v]} for v in views[::-1]], lr=0.1)
    assert len(opt.param_groups) == 1000
    for bad in (base[6:10], base[3:5], base[0:4], base[3996:4000]):
        with pytest.raises(ParamError, match="share memory|same array"):
            opt.add_param_group({"params": [bad]})
    assert len(opt.param_groups) == 1000
    # Adjacent memory is not overlap; steps still see every group.
    opt.add_param_group({"params": [np.zeros(2)]})
    grads = [np.ones(4)] * 1000 + [np.ones(2)]
    opt.step(grads)
    np.testing.assert_array_equal(base, -0.1)


def test_a_grad_overlapping_a_param_added_later_is_refused() -> None:
    a, b = np.zeros(4), np.zeros(8)
    opt = fo.SGD([a], lr=0.1)
    opt.step([np.ones(4)])
    opt.add_param_group({"params": [b]})
    from ferroptim.exceptions import GradError

    with pytest.raises(GradError, match="shares memory"):
        opt.step([np.ones(4), b[:8]])
    with pytest.raises(GradError, match="shares memory"):
        opt.step([b[:4], np.ones(8)])


# -- NAdam: mu_product in torch's default dtype ---------------------------------


def _nadam_run(dtype, steps: int, mu_product_dtype: str | None) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(7).astype(dtype)
    group = {"params": [w]}
    if mu_product_dtype is not None:
        group["mu_product_dtype"] = mu_product_dtype
    opt = fo.NAdam([group], lr=0.01)
    for _ in range(steps):
        opt.step([rng.standard_normal(7).astype(dtype)])
    return w, opt.state_dict()["state"][0]["mu_product"]


def test_nadam_mu_product_is_rounded_to_float32_by_default() -> None:
    _, mu_default = _nadam_run(np.float64, 50, None)
    _, mu32 = _nadam_run(np.float64, 50, "float32")
    _, mu64 = _nadam_run(np.float64, 50, "float64")
    assert mu_default == mu32
    assert float(np.float32(mu32)) == mu32
    assert mu32 != mu64


def test_nadam_bad_mu_product_dtype_is_named() -> None:
    with pytest.raises(HyperparameterError, match="mu_product_dtype: must be one of"):
        fo.NAdam([{"params": [np.zeros(2)], "mu_product_dtype": "float16"}])


@pytest.mark.parametrize("torch_default", ["float32", "float64"])
def test_nadam_float64_matches_torch_under_its_default_dtype(torch_default: str) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, torch_default))
    try:
        rng = np.random.default_rng(1)
        w = rng.standard_normal(33)
        grads = [rng.standard_normal(33) for _ in range(300)]
        tw = torch.tensor(w.copy(), dtype=torch.float64, requires_grad=True)
        topt = torch.optim.NAdam([tw], lr=0.01, foreach=False)
        opt = fo.NAdam([w], lr=0.01, mu_product_dtype=torch_default)
        for g in grads:
            tw.grad = torch.tensor(g)
            topt.step()
            opt.step([g.copy()])
        assert opt.state_dict()["state"][0]["mu_product"] == topt.state[tw]["mu_product"].item()
        np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-13, atol=1e-15)
    finally:
        torch.set_default_dtype(before)

"""`ferroptim bench` on the smallest case: rows, ratios and the printed table.

Timings themselves are never asserted: speed claims come from the benchmark
run, not from tests.
"""

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import bench


def test_numpy_reference_matches_ferroptim():
    """The NumPy baseline computes the same update as ferroptim (else its timing means nothing)."""
    case = bench.Case("1 x 1000", [(1000,)])
    for opt in ("sgd", "adam", "adamw", "rmsprop"):
        np_params, np_grads = bench._data(case)
        step_np = bench.numpy_impl(opt, case, (np_params, np_grads))
        params, grads = bench._data(case)
        o = getattr(fo, bench.FO_CLASS[opt])(params, **bench.HYPER[opt])
        for _ in range(3):
            step_np()
            o.step(grads)
        assert not np.array_equal(params[0], bench._data(case)[0][0])  # it moved
        np.testing.assert_allclose(np_params[0], params[0], rtol=1e-5, atol=1e-6, err_msg=opt)


def test_measure_counts_bursts_without_the_first_step():
    calls = []
    times = bench.measure({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 0.0)
    # Five rounds; each burst runs one uncounted step before the counted ones.
    assert len(times["a"]) >= 5 and len(times["b"]) >= 5
    assert calls.count("a") == len(times["a"]) + 5 + 2  # + 2 warm-up calls
    assert all(t >= 0 for t in times["a"] + times["b"])


def test_run_and_table_on_the_smallest_case(capsys):
    rows = bench.run(
        optimizers=["adam"],
        budget=0.0,
        case_names=["1 x 100 f32"],
        impls=["ferroptim", "ferroptim arena", "numpy"],
        quiet=True,
    )
    assert [r.impl for r in rows] == ["ferroptim", "ferroptim arena", "numpy"]
    for r in rows:
        assert r.median_s > 0 and r.roofline > 0 and r.numel == 100 and r.bytes_per_param == 28
    text = bench.table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| case | optimizer | implementation | median µs")
    assert len(lines) == 2 + len(rows)
    # The NumPy row is its own baseline.
    assert lines[-1].endswith("| 1.0x |")


def test_float64_case_counts_double_bytes():
    case = next(c for c in bench.cases(full=False) if c.dtype == np.float64)
    rows = bench.run(
        optimizers=["sgd"], budget=0.0, case_names=[case.name], impls=["ferroptim"], quiet=True
    )
    assert rows[0].bytes_per_param == 2 * bench.BYTES_PER_PARAM["sgd"]


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "rmsprop"])
def test_numpy_byte_counts_exceed_the_fused_ones(opt):
    assert bench.NUMPY_BYTES_PER_PARAM[opt] > bench.BYTES_PER_PARAM[opt]

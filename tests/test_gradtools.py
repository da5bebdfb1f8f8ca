"""fo.grad_norm, clip_grad_norm, clip_grad_value and all_finite against
torch.nn.utils and NumPy: values, mixed dtypes, accuracy on 10M elements,
determinism across thread counts and SIMD levels, NaN/Inf, and errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import exceptions

F32, F64 = np.float32, np.float64
INF = float("inf")
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]
NORMS = [pytest.param(2.0, id="l2"), pytest.param(INF, id="linf")]
# Around the 8-lane leaf, the 256-element pairwise leaf and the 32768-element block.
SIZES = [(), (1,), (7,), (9,), (33, 17), (255,), (257,), (32767,), (32769,), (70001,)]


def tol(dtype: Any) -> dict[str, float]:
    return {"rtol": 2e-6, "atol": 0.0} if dtype == F32 else {"rtol": 1e-12, "atol": 0.0}


def make_grads(dtype: Any, seed: int = 0, scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(s) * scale, dtype=dtype) for s in SIZES]


def np_norm(grads: list[np.ndarray], norm_type: float) -> float:
    flat = np.concatenate([g.astype(F64).reshape(-1) for g in grads])
    if norm_type == INF:
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    return float(np.sqrt(np.sum(flat * flat)))


def to_torch(grads: list[np.ndarray]) -> list[Any]:
    """Tensors whose .grad is a copy of each array (clip_grad_* read .grad)."""
    import torch  # only torch tests call this, after their `torch` fixture

    out = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.from_numpy(g.copy()).dtype)
        t.grad = torch.from_numpy(g.copy())
        out.append(t)
    return out


def snapshot(grads: list[np.ndarray]) -> list[bytes]:
    return [g.tobytes() for g in grads]


@pytest.fixture
def restore_runtime() -> Iterator[None]:
    """Thread count and SIMD level are process-wide: put them back."""
    threads, level = fo.get_num_threads(), fo.simd_level()
    try:
        yield
    finally:
        fo.set_num_threads(threads)
        fo.set_simd_level(level)
        assert fo.simd_level() == level


# -- values against torch and NumPy -------------------------------------------------


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_matches_torch_and_numpy(dtype: Any, norm_type: float, torch: Any) -> None:
    grads = make_grads(dtype, seed=1, scale=3.0)
    before = snapshot(grads)
    norm = fo.grad_norm(grads, norm_type)
    assert isinstance(norm, float)
    assert snapshot(grads) == before  # read only
    np.testing.assert_allclose(norm, np_norm(grads, norm_type), rtol=1e-13)
    # torch sums float32 grads in float32: agree to float32 accuracy.
    expected = torch.nn.utils.clip_grad_norm_(to_torch(grads), INF, norm_type, foreach=False)
    np.testing.assert_allclose(norm, float(expected), **tol(dtype))


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 7.0, 1e6])
def test_clip_grad_norm_matches_torch(
    dtype: Any, norm_type: float, max_norm: float, torch: Any
) -> None:
    grads = make_grads(dtype, seed=2)
    original = [g.copy() for g in grads]
    tensors = to_torch(grads)
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type, foreach=False)
    norm = fo.clip_grad_norm(grads, max_norm, norm_type)
    assert isinstance(norm, float)
    np.testing.assert_allclose(norm, float(expected_norm), **tol(dtype))
    np.testing.assert_allclose(norm, np_norm(original, norm_type), rtol=1e-13)
    for g, t in zip(grads, tensors):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t.grad.numpy(), **tol(dtype))
    true_norm = np_norm(original, norm_type)
    if max_norm >= true_norm:
        # Nothing to clip: the coefficient is clamped to exactly 1.
        assert snapshot(grads) == snapshot(original)
    else:
        np.testing.assert_allclose(np_norm(grads, norm_type), max_norm, rtol=1e-5)
        # One coefficient for all: every element scaled by the same factor.
        coef = dtype(max_norm / (norm + 1e-6))
        for g, o in zip(grads, original):
            np.testing.assert_array_equal(g, np.asarray(o * coef, dtype=dtype))


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_per_tensor(dtype: Any, norm_type: float, torch: Any) -> None:
    grads = make_grads(dtype, seed=3)
    # Some tensors below the threshold, some above.
    grads[4] *= dtype(0.001)
    grads[8] *= dtype(0.0001)
    original = [g.copy() for g in grads]
    max_norm = 2.0
    norms = fo.clip_grad_norm(grads, max_norm, norm_type, per_tensor=True)
    assert isinstance(norms, list) and len(norms) == len(grads)
    for g, o, n in zip(grads, original, norms):
        t = to_torch([o])
        tn = torch.nn.utils.clip_grad_norm_(t, max_norm, norm_type, foreach=False)
        np.testing.assert_allclose(n, np_norm([o], norm_type), rtol=1e-13)
        np.testing.assert_allclose(n, float(tn), **tol(dtype))
        np.testing.assert_allclose(g, t[0].grad.numpy(), **tol(dtype))
        if n <= max_norm:
            assert g.tobytes() == o.tobytes()
        else:
            np.testing.assert_allclose(np_norm([g], norm_type), max_norm, rtol=1e-5)
    assert any(n <= max_norm for n in norms) and any(n > max_norm for n in norms)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_torch_bitwise(dtype: Any, torch: Any) -> None:
    grads = make_grads(dtype, seed=4, scale=2.0)
    grads[2][3] = np.nan
    grads[3][0] = -np.inf
    grads[3][1] = np.inf
    tensors = to_torch(grads)
    torch.nn.utils.clip_grad_value_(tensors, 0.75, foreach=False)
    assert fo.clip_grad_value(grads, 0.75) is None
    for g, t in zip(grads, tensors):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, t.grad.numpy())  # NaN where NaN
    assert np.isnan(grads[2][3])
    assert grads[3][0] == -0.75 and grads[3][1] == 0.75
    assert max(float(np.nanmax(np.abs(g))) for g in grads) == pytest.approx(0.75)


def test_mixed_dtypes() -> None:
    f32, f64 = make_grads(F32, seed=5), make_grads(F64, seed=6, scale=0.5)
    mixed = [g for pair in zip(f32, f64) for g in pair]
    for norm_type in (2.0, INF):
        np.testing.assert_allclose(
            fo.grad_norm(mixed, norm_type), np_norm(mixed, norm_type), rtol=1e-13
        )
    original = [g.copy() for g in mixed]
    norm = fo.clip_grad_norm(mixed, 1.0)
    np.testing.assert_allclose(norm, np_norm(original, 2.0), rtol=1e-13)
    coef = 1.0 / (norm + 1e-6)
    for g, o in zip(mixed, original):
        assert g.dtype == o.dtype
        # Each array scaled by the one global coefficient, rounded to its dtype.
        np.testing.assert_array_equal(g, np.asarray(o * o.dtype.type(coef), dtype=o.dtype))
    np.testing.assert_allclose(np_norm(mixed, 2.0), 1.0, rtol=1e-5)

    original = [g.copy() for g in mixed]
    norms = fo.clip_grad_norm(mixed, 0.1, per_tensor=True)
    assert len(norms) == len(mixed)
    for g, o, n in zip(mixed, original, norms):
        assert g.dtype == o.dtype
        np.testing.assert_allclose(n, np_norm([o], 2.0), rtol=1e-13)
        coef = min(1.0, 0.1 / (n + 1e-6))
        np.testing.assert_array_equal(g, np.asarray(o * o.dtype.type(coef), dtype=o.dtype))

    fo.clip_grad_value(mixed, 1e-3)
    assert all(np.abs(g).max() <= g.dtype.type(1e-3) for g in mixed if g.size)
    assert fo.all_finite(mixed)
    mixed[7][0] = np.nan  # a float64 array
    assert not fo.all_finite(mixed)
    assert math.isnan(fo.grad_norm(mixed))


def test_containers_and_none() -> None:
    a, b = np.full(3, 3.0, F32), np.full((2, 2), 2.0, F64)
    assert fo.grad_norm(a) == pytest.approx(math.sqrt(27))
    assert fo.grad_norm({"a": a, "skip": None, "b": b}) == pytest.approx(math.sqrt(43))
    assert fo.grad_norm([a, None, b], INF) == 3.0
    assert fo.grad_norm([]) == 0.0
    assert fo.all_finite([]) is True
    norm = fo.clip_grad_norm({"a": a, "skip": None}, 1.0)
    assert norm == pytest.approx(math.sqrt(27))
    assert np.linalg.norm(a) == pytest.approx(1.0, rel=1e-5)


# -- accuracy and determinism ------------------------------------------------------


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    """10M float64 values spread over 16 orders of magnitude, both signs."""
    rng = np.random.default_rng(2024)
    x = rng.standard_normal(10_000_000)
    x *= 10.0 ** rng.uniform(-8, 8, x.size)
    return x


def exact_norm(x: np.ndarray) -> float:
    """sqrt of the exactly rounded sum of squares: each square split into
    a head and an exact tail (Dekker's product), both summed with fsum."""
    head = x * x
    c = 134217729.0 * x  # 2**27 + 1: Veltkamp's split
    hi = c - (c - x)
    lo = x - hi
    tail = ((hi * hi - head) + 2.0 * hi * lo) + lo * lo
    total = math.fsum(head.tolist()) + math.fsum(tail.tolist())
    return math.sqrt(total)


def test_global_norm_of_10m_float64_is_accurate(big: np.ndarray) -> None:
    norm = fo.grad_norm([big])
    exact = exact_norm(big)
    np.testing.assert_allclose(norm, exact, rtol=1e-14)
    # np.linalg.norm (a BLAS dot) is itself ~6e-14 off the exact value on this
    # data, so it can only be held to a looser bound.
    np.testing.assert_allclose(np.linalg.norm(big), exact, rtol=2e-13)
    np.testing.assert_allclose(norm, np.linalg.norm(big), rtol=2e-13)
    # Cut into many tensors the answer is the same number, to rounding.
    parts = np.array_split(big, 37)
    np.testing.assert_allclose(fo.grad_norm(parts), exact_norm(big), rtol=1e-14)
    assert fo.grad_norm([big], INF) == np.max(np.abs(big))


def test_deterministic_across_thread_counts(big: np.ndarray, restore_runtime: None) -> None:
    parts = np.array_split(big[:3_000_000], 11)
    small = [p.astype(F32) for p in np.array_split(big[:1_000_000], 5)]
    results = []
    for threads in (1, 2, 1, 2):
        fo.set_num_threads(threads)
        assert fo.get_num_threads() == threads
        grads = [p.copy() for p in parts]
        norms = fo.clip_grad_norm(grads, 1.0, per_tensor=True)
        results.append(
            (
                fo.grad_norm([big]).hex(),
                fo.grad_norm(parts).hex(),
                fo.grad_norm(small).hex(),
                fo.grad_norm(parts, INF).hex(),
                [n.hex() for n in norms],
                snapshot(grads),
            )
        )
    assert all(r == results[0] for r in results[1:])


def test_deterministic_across_simd_levels(big: np.ndarray, restore_runtime: None) -> None:
    parts = np.array_split(big[:2_000_000], 7)
    small = [p.astype(F32) for p in np.array_split(big[:500_003], 5)]
    results = {}
    for level in ("baseline", "avx2", "avx512"):
        used = fo.set_simd_level(level)
        grads = [p.copy() for p in small]
        norm = fo.clip_grad_norm(grads, 1.0)
        clamped = [p.copy() for p in small]
        fo.clip_grad_value(clamped, 0.5)
        results[used] = (
            fo.grad_norm([big]).hex(),
            fo.grad_norm(parts).hex(),
            fo.grad_norm(small).hex(),
            fo.grad_norm(small, INF).hex(),
            norm.hex(),
            snapshot(grads),
            snapshot(clamped),
            fo.all_finite(small),
        )
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), list(results)


# -- NaN and Inf --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 8, 9, 300, 32768, 70001])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_nan_and_inf(dtype: Any, size: int, where: str) -> None:
    pos = {"first": 0, "middle": size // 2, "last": size - 1}[where]
    clean = [np.ones(5, dtype), np.linspace(-1, 1, size).astype(dtype)]
    assert fo.all_finite(clean)
    for bad, expected in ((np.nan, math.nan), (np.inf, INF), (-np.inf, INF)):
        grads = [g.copy() for g in clean]
        grads[1][pos] = bad
        assert fo.all_finite(grads) is False
        for norm_type in (2.0, INF):
            norm = fo.grad_norm(grads, norm_type)
            if math.isnan(expected):
                assert math.isnan(norm), (norm_type, norm)
            else:
                assert norm == expected, (norm_type, norm)
    # NaN wins over Inf.
    grads = [g.copy() for g in clean]
    grads[1][pos] = np.nan
    grads[0][0] = np.inf
    assert math.isnan(fo.grad_norm(grads)) and math.isnan(fo.grad_norm(grads, INF))


def test_huge_finite_values_are_finite() -> None:
    # Their squares overflow float64, yet every element is finite.
    grads = [np.full(10, 1e200), np.full(3, 1e38, F32)]
    assert fo.all_finite(grads) is True
    assert fo.grad_norm(grads, INF) == 1e200


@pytest.mark.parametrize("per_tensor", [False, True], ids=["global", "per_tensor"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_clip_grad_norm_of_nonfinite_grads_matches_torch(
    bad: float, per_tensor: bool, torch: Any
) -> None:
    """A NaN norm makes torch's coefficient NaN, so every clipped grad becomes
    NaN; an infinite norm makes it 0 (and inf·0 = NaN)."""
    grads = [np.array([1.0, bad, 2.0], F32), np.array([3.0, 4.0], F32)]
    tensors = to_torch(grads)
    if per_tensor:
        expected_norms = [
            float(torch.nn.utils.clip_grad_norm_([t], 1.0, foreach=False)) for t in tensors
        ]
        norms = fo.clip_grad_norm(grads, 1.0, per_tensor=True)
        np.testing.assert_array_equal(norms, expected_norms)
    else:
        expected = float(torch.nn.utils.clip_grad_norm_(tensors, 1.0, foreach=False))
        norm = fo.clip_grad_norm(grads, 1.0)
        np.testing.assert_array_equal(norm, expected)
    for g, t in zip(grads, tensors):
        np.testing.assert_array_equal(g, t.grad.numpy())
    assert not fo.all_finite(grads)


# -- errors ----------------------------------------------------------------------------


def writable_pair() -> list[np.ndarray]:
    return [np.full(4, 3.0, F32), np.full(5, -4.0, F64)]


def read_only() -> np.ndarray:
    a = np.full(6, 9.0, F32)
    a.flags.writeable = False
    return a


def strided() -> np.ndarray:
    return np.full(12, 9.0, F64)[::2]


BAD_ITEMS: dict[str, tuple[Callable[[], Any], type[Exception]]] = {
    "list": (lambda: [1.0, 2.0], TypeError),
    "string": (lambda: "grad", TypeError),
    "int": (lambda: np.arange(4), TypeError),
    "float16": (lambda: np.ones(4, np.float16), TypeError),
    "complex": (lambda: np.ones(4, np.complex128), TypeError),
}
IN_PLACE_ONLY: dict[str, tuple[Callable[[], Any], type[Exception]]] = {
    "read_only": (read_only, ValueError),
    "non_contiguous": (strided, ValueError),
}

CALLS: dict[str, Callable[[list[Any]], Any]] = {
    "grad_norm": lambda g: fo.grad_norm(g),
    "all_finite": lambda g: fo.all_finite(g),
    "clip_grad_norm": lambda g: fo.clip_grad_norm(g, 1.0),
    "clip_grad_norm_per_tensor": lambda g: fo.clip_grad_norm(g, 1.0, per_tensor=True),
    "clip_grad_value": lambda g: fo.clip_grad_value(g, 1.0),
}
IN_PLACE = ["clip_grad_norm", "clip_grad_norm_per_tensor", "clip_grad_value"]


def assert_raises_and_changes_nothing(
    call: Callable[[list[Any]], Any], bad: Any, error: type[Exception]
) -> None:
    grads = [*writable_pair(), bad]
    before = snapshot(grads[:2])
    bad_before = bad.tobytes() if isinstance(bad, np.ndarray) else None
    with pytest.raises(error):
        call(grads)
    assert snapshot(grads[:2]) == before
    if bad_before is not None:
        assert bad.tobytes() == bad_before


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("bad", list(BAD_ITEMS))
def test_bad_items_raise(call: str, bad: str) -> None:
    make, error = BAD_ITEMS[bad]
    assert_raises_and_changes_nothing(CALLS[call], make(), error)


@pytest.mark.parametrize("call", IN_PLACE)
@pytest.mark.parametrize("bad", list(IN_PLACE_ONLY))
def test_in_place_needs_writable_contiguous(call: str, bad: str) -> None:
    make, error = IN_PLACE_ONLY[bad]
    assert_raises_and_changes_nothing(CALLS[call], make(), error)


def test_error_types_are_ferroptim_errors() -> None:
    with pytest.raises(exceptions.DtypeError):
        fo.grad_norm([np.arange(3)])
    with pytest.raises(exceptions.DtypeError):
        fo.clip_grad_value([[1.0]], 1.0)
    assert issubclass(exceptions.DtypeError, TypeError)
    assert issubclass(exceptions.GradError, ValueError)
    with pytest.raises(exceptions.GradError):
        fo.clip_grad_value([read_only()], 1.0)


@pytest.mark.parametrize("norm_type", [1.0, 3.0, 0.0, -INF, math.nan, -2.0])
def test_bad_norm_type(norm_type: float) -> None:
    grads = writable_pair()
    before = snapshot(grads)
    with pytest.raises(ValueError, match="norm_type"):
        fo.grad_norm(grads, norm_type)
    with pytest.raises(ValueError, match="norm_type"):
        fo.clip_grad_norm(grads, 1.0, norm_type)
    with pytest.raises(ValueError, match="norm_type"):
        fo.clip_grad_norm(grads, 1.0, norm_type, per_tensor=True)
    assert snapshot(grads) == before


@pytest.mark.parametrize("value", [0.0, -1.0, -INF, INF, math.nan])
def test_bad_max_norm_and_clip_value(value: float) -> None:
    grads = writable_pair()
    before = snapshot(grads)
    with pytest.raises(ValueError, match="max_norm"):
        fo.clip_grad_norm(grads, value)
    with pytest.raises(ValueError, match="max_norm"):
        fo.clip_grad_norm(grads, value, per_tensor=True)
    with pytest.raises(ValueError, match="clip_value"):
        fo.clip_grad_value(grads, value)
    assert snapshot(grads) == before

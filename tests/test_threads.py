"""Threads: results independent of the thread count, the env var, concurrent
steps on one optimizer, and the GIL released during a big step."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import ferroptim as fo

F32, F64 = np.float32, np.float64

FACTORIES: dict[str, Callable[[Any], fo.Optimizer]] = {
    "sgd": lambda p: fo.SGD(p, lr=0.01),
    "sgd_momentum": lambda p: fo.SGD(p, lr=0.01, momentum=0.9, weight_decay=1e-3, l1=1e-4),
    "sgd_nesterov": lambda p: fo.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    "adam": lambda p: fo.Adam(p, lr=1e-3, weight_decay=1e-2),
    "adam_amsgrad": lambda p: fo.Adam(p, lr=1e-3, amsgrad=True, maximize=True),
    "adamw": lambda p: fo.AdamW(p, lr=1e-3, l1=1e-4),
    "rmsprop": lambda p: fo.RMSprop(p, lr=1e-3),
    "rmsprop_centered": lambda p: fo.RMSprop(p, lr=1e-3, momentum=0.9, centered=True),
}


@pytest.fixture
def restore_threads() -> Iterator[int]:
    before = fo.get_num_threads()
    yield before
    fo.set_num_threads(before)


def _run(kind: str, threads: int, dtype: Any, steps: int = 3) -> list[np.ndarray]:
    fo.set_num_threads(threads)
    assert fo.get_num_threads() == threads
    rng = np.random.default_rng(42)
    # One big odd-sized tensor, plus small ones the chunks must span.
    sizes = [2_000_003, 777, 1, 65_537]
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    opt = FACTORIES[kind](params)
    for _ in range(steps):
        opt.step([rng.standard_normal(n).astype(dtype) for n in sizes])
    return params + [
        v for e in opt.state_dict()["state"].values() for v in e.values() if hasattr(v, "shape")
    ]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", list(FACTORIES))
def test_one_and_two_threads_bitwise_identical(kind: str, dtype: Any, restore_threads: int) -> None:
    one = _run(kind, 1, dtype)
    two = _run(kind, 2, dtype)
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b)


def test_thread_count_does_not_change_results_vs_reference(restore_threads: int) -> None:
    """Plain SGD on many threads equals NumPy's p - lr * g, element for element."""
    fo.set_num_threads(2)
    rng = np.random.default_rng(0)
    p = rng.standard_normal(1_000_001)
    want = p - 0.5 * (g := rng.standard_normal(p.size))
    fo.SGD([p], lr=0.5).step([g])
    assert np.array_equal(p, want)


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_set_num_threads_rejects_non_positive(bad: int, restore_threads: int) -> None:
    before = fo.get_num_threads()
    with pytest.raises(ValueError, match="n"):
        fo.set_num_threads(bad)
    assert fo.get_num_threads() == before


@pytest.mark.parametrize("bad", [1.5, "2", None])
def test_set_num_threads_rejects_non_integers(bad: Any, restore_threads: int) -> None:
    before = fo.get_num_threads()
    with pytest.raises((TypeError, ValueError)):
        fo.set_num_threads(bad)
    assert fo.get_num_threads() == before


def test_set_num_threads_roundtrip(restore_threads: int) -> None:
    for n in (1, 3, 2):
        fo.set_num_threads(n)
        assert fo.get_num_threads() == n


def _python_with_env(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "FERROPTIM_NUM_THREADS"}
    full.update(env)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("value", ["1", "3", " 2 "])
def test_env_var_sets_thread_count(value: str) -> None:
    code = "import ferroptim as fo; print(fo.get_num_threads())"
    assert _python_with_env(code, FERROPTIM_NUM_THREADS=value) == value.strip()


def test_env_var_is_used_by_steps_and_overridable() -> None:
    code = (
        "import numpy as np, ferroptim as fo\n"
        "p = np.zeros(100_000, np.float32)\n"
        "fo.SGD([p], lr=1.0).step([np.ones_like(p)])\n"
        "a = fo.get_num_threads()\n"
        "fo.set_num_threads(2)\n"
        "print(a, fo.get_num_threads(), float(p.sum()))\n"
    )
    assert _python_with_env(code, FERROPTIM_NUM_THREADS="1") == "1 2 -100000.0"


@pytest.mark.parametrize("value", ["0", "-3", "many", ""])
def test_bad_env_var_falls_back_to_a_working_default(value: str) -> None:
    code = (
        "import numpy as np, ferroptim as fo\n"
        "p = np.zeros(100_000)\n"
        "fo.SGD([p], lr=1.0).step([np.ones_like(p)])\n"
        "print(fo.get_num_threads() >= 1, p.sum())\n"
    )
    assert _python_with_env(code, FERROPTIM_NUM_THREADS=value) == "True -100000.0"


# -- concurrent steps on one optimizer ---------------------------------------

CONCURRENT = {
    "adam": lambda p: fo.Adam(p, lr=1e-3, amsgrad=True),
    "sgd_momentum": lambda p: fo.SGD(p, lr=1e-3, momentum=0.9),
    "rmsprop": lambda p: fo.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("kind", list(CONCURRENT))
def test_two_threads_stepping_one_optimizer(kind: str, restore_threads: int) -> None:
    """With the same constant grads every step, any interleaving of 2 x 50 whole
    steps is the same sequence as 100 steps in a row: the result must be exact."""
    fo.set_num_threads(2)
    rng = np.random.default_rng(8)
    init = [rng.standard_normal(1_000_003).astype(F32), rng.standard_normal(5000)]
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in init]
    shared = [p.copy() for p in init]
    opt = CONCURRENT[kind](shared)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(50):
                opt.step(grads)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert opt.step_counts == [100, 100]

    sequential = [p.copy() for p in init]
    ref = CONCURRENT[kind](sequential)
    for _ in range(100):
        ref.step(grads)
    for a, b in zip(shared, sequential, strict=True):
        assert np.array_equal(a, b)
    sd, sd_ref = opt.state_dict(), ref.state_dict()
    for key in sd_ref["state"]:
        for slot, value in sd_ref["state"][key].items():
            assert np.array_equal(sd["state"][key][slot], value), (key, slot)


def test_state_dict_during_concurrent_steps_is_never_torn(restore_threads: int) -> None:
    """state_dict() taken while another thread steps sees whole steps only: with the
    same grad on every element, every element of a consistent snapshot is equal."""
    fo.set_num_threads(2)
    n = 2_000_000
    p = np.zeros(n, F32)
    opt = fo.Adam([p], lr=1e-3)
    g = np.ones(n, F32)
    done = threading.Event()
    errors: list[BaseException] = []

    def stepper() -> None:
        try:
            for _ in range(30):
                opt.step([g])
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    t = threading.Thread(target=stepper)
    t.start()
    snapshots = 0
    while not done.is_set():
        sd = opt.state_dict()
        entry = sd["state"].get(0)
        if entry is not None:
            for slot in ("exp_avg", "exp_avg_sq"):
                values = entry[slot]
                assert values.min() == values.max(), (entry["step"], slot)
            snapshots += 1
    t.join()
    assert not errors
    assert opt.step_counts == [30]
    assert snapshots >= 1
    assert p.min() == p.max()


def test_set_num_threads_while_another_thread_steps(restore_threads: int) -> None:
    """Replacing the pool under a running step neither crashes nor changes the numbers."""
    rng = np.random.default_rng(5)
    init = rng.standard_normal(1_500_000).astype(F32)
    g = rng.standard_normal(init.size).astype(F32)
    p = init.copy()
    opt = fo.Adam([p], lr=1e-3)
    done = threading.Event()
    errors: list[BaseException] = []

    def stepper() -> None:
        try:
            for _ in range(40):
                opt.step([g])
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    t = threading.Thread(target=stepper)
    t.start()
    flips = 0
    while not done.is_set():
        fo.set_num_threads(1 + flips % 2)
        flips += 1
    t.join()
    assert not errors
    assert flips >= 1
    q = init.copy()
    ref = fo.Adam([q], lr=1e-3)
    for _ in range(40):
        ref.step([g])
    assert np.array_equal(p, q)


# -- the GIL is released during a step ----------------------------------------


def test_gil_released_during_big_step(restore_threads: int) -> None:
    """A Python thread makes progress *while* a big step runs.

    The switch interval is raised to 1 s, so a thread that holds the GIL is not
    asked to drop it during the test; the counter thread sleeps briefly after
    every increment, so it never keeps the GIL from the main thread. The counter
    can then only advance inside a step if the step releases the GIL. We count
    the steps during which it advanced.
    """
    fo.set_num_threads(2)
    n = 8_000_000
    p = np.zeros(n, F32)
    g = np.full(n, 0.5, F32)
    opt = fo.Adam([p], lr=1e-3, amsgrad=True)
    opt.step([g])  # allocate the state before measuring

    counter = [0]
    stop = threading.Event()
    started = threading.Event()

    def count() -> None:
        started.set()
        while not stop.is_set():
            counter[0] += 1
            stop.wait(0.0001)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    t = threading.Thread(target=count, daemon=True)
    try:
        t.start()
        started.wait()
        advanced = 0
        total = 0
        for _ in range(20):
            before = counter[0]
            opt.step([g])
            after = counter[0]
            total += after - before
            advanced += after > before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old_interval)
    assert opt.step_counts == [21]
    # Each step of 8M elements takes milliseconds; with the GIL released the
    # counter ticks during (nearly) every one of them.
    assert advanced >= 10, (advanced, total)
    assert total > 20, (advanced, total)

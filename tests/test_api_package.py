"""The package surface: reprs, the version, everything in __all__, the
exception classes, SIMD levels (distinct, bitwise equal), imports that a CPU
step must not pull in, and the public arena property.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from _api_helpers import F32, FACTORIES, KINDS, assert_params_equal, grad_stream, make_params
from ferroptim import exceptions

# -- repr, version, exports -------------------------------------------------


def test_repr_contains_group_info() -> None:
    opt = fo.Adam(
        [{"params": [np.ones(2)], "lr": 0.125}, {"params": [np.ones(3)], "weight_decay": 0.5}],
        lr=0.25,
    )
    text = repr(opt)
    assert text.startswith("Adam")
    assert "Parameter Group 0" in text and "Parameter Group 1" in text
    assert "lr: 0.125" in text and "lr: 0.25" in text
    assert "weight_decay: 0.5" in text
    assert "betas: (0.9, 0.999)" in text
    opt.param_groups[0]["lr"] = 0.0625
    assert "lr: 0.0625" in repr(opt)
    assert "array" not in text  # params are not dumped
    assert repr(fo.RMSprop([np.ones(1)])).startswith("RMSprop")
    assert repr(fo.AdamW([np.ones(1)])).startswith("AdamW")
    assert repr(fo.SGD([np.ones(1)])).startswith("SGD")


def test_version_is_a_string() -> None:
    assert isinstance(fo.__version__, str)
    assert fo.__version__
    assert fo.__version__[0].isdigit()


def test_everything_in_all_is_importable() -> None:
    assert len(fo.__all__) == len(set(fo.__all__))
    for name in fo.__all__:
        assert hasattr(fo, name), name
        obj = getattr(fo, name)
        assert obj is not None, name
    ns: dict[str, Any] = {}
    exec("from ferroptim import *", ns)
    for name in fo.__all__:
        assert name in ns
    for name in ["SGD", "Adam", "AdamW", "RMSprop"]:
        cls = getattr(fo, name)
        assert inspect.isclass(cls) and issubclass(cls, fo.Optimizer)
    for name in exceptions.__all__:
        assert inspect.isclass(getattr(exceptions, name))


def test_exceptions_subclass_builtin_errors() -> None:
    assert issubclass(exceptions.HyperparameterError, ValueError)
    assert issubclass(exceptions.ParamError, ValueError)
    assert issubclass(exceptions.GradError, ValueError)
    assert issubclass(exceptions.StateDictError, ValueError)
    assert issubclass(exceptions.DtypeError, TypeError)
    assert set(exceptions.__all__) == {
        "HyperparameterError",
        "ParamError",
        "GradError",
        "DtypeError",
        "StateDictError",
    }
    # Raised ones are catchable as the builtin base.
    with pytest.raises(ValueError):
        fo.SGD([np.ones(2)], lr=-1)
    with pytest.raises(TypeError):
        fo.SGD([np.ones(2, np.int64)])


def test_simd_level_roundtrip() -> None:
    level = fo.simd_level()
    assert level in {"avx512", "avx2", "sse2", "neon", "scalar"}
    try:
        assert fo.set_simd_level("baseline") in {"sse2", "neon", "scalar"}
        assert fo.simd_level() in {"sse2", "neon", "scalar"}
        with pytest.raises(ValueError, match="level"):
            fo.set_simd_level("avx9000")
    finally:
        fo.set_simd_level(level)
    assert fo.simd_level() == level


def available_simd_levels(set_level: Callable[[str], str] = fo.set_simd_level) -> list[str]:
    """The distinct instruction sets this CPU runs: ``set_simd_level`` caps at the
    wanted level and returns the one in use, so asking for a level the CPU lacks
    gives a lower one again (comparing it would compare a level with itself)."""
    level = fo.simd_level()
    seen: list[str] = []
    try:
        for wanted in ["baseline", "avx2", "avx512"]:
            used = set_level(wanted)
            if used not in seen:
                seen.append(used)
    finally:
        fo.set_simd_level(level)
    return seen


def test_available_simd_levels_are_distinct() -> None:
    """On a CPU without AVX-512, asking for it gives avx2: listed once, not twice."""
    capped = {"baseline": "sse2", "avx2": "avx2", "avx512": "avx2"}
    assert available_simd_levels(capped.__getitem__) == ["sse2", "avx2"]
    assert len(set(available_simd_levels())) == len(available_simd_levels())


@pytest.mark.parametrize("kind", KINDS)
def test_simd_levels_agree_bitwise(kind: str) -> None:
    """Every instruction set this CPU has gives the same bits (no FMA contraction)."""
    levels = available_simd_levels()
    if len(levels) < 2:
        pytest.skip(f"only one SIMD level available here ({levels[0]}): nothing to compare")
    level = fo.simd_level()
    results = []
    try:
        for wanted in levels:
            assert fo.set_simd_level(wanted) == wanted
            params = make_params()
            opt = FACTORIES[kind](params, weight_decay=0.01)
            for g in grad_stream(params, 3):
                opt.step(g)
            results.append(params)
    finally:
        fo.set_simd_level(level)
    for other in results[1:]:
        assert_params_equal(other, results[0])


def test_cpu_step_does_not_import_the_cuda_package() -> None:
    """Asking whether grads are GPU arrays must not load ferroptim.cuda (fresh process:
    other tests here may have imported it)."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
import ferroptim as fo
w = np.zeros(3, np.float32)
for params, grads in (([w], [np.ones(3, np.float32)]), ({"w": w}, {"w": np.ones(3, np.float32)})):
    opt = fo.AdamW(params, accumulate=2, max_grad_norm=1.0)
    opt.step(grads)
    opt.step(grads)
    opt.state_dict()
arena = fo.ParamArena({"a": (2, 3)})
arena.grad[:] = 1
fo.SGD(arena, lr=0.1).step()
print(sorted(m for m in sys.modules if m.startswith("ferroptim.cuda")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cuda_device_does_not_import_emulate() -> None:
    """device.py is the lower layer; emulate.py builds on it (no import circle)."""
    import ast
    from pathlib import Path

    import ferroptim.cuda.device as device

    tree = ast.parse(Path(device.__file__).read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "ferroptim.cuda.emulate" not in imported and "emulate" not in names


def test_arena_property_is_public_and_read_only() -> None:
    arena = fo.ParamArena({"w": (2, 2)})
    opt = fo.AdamW(arena)
    assert opt.arena is arena
    assert fo.SGD([np.zeros(3, F32)]).arena is None
    with pytest.raises(AttributeError):
        opt.arena = None  # type: ignore[misc]


def test_trainer_checks_the_public_arena() -> None:
    """The Trainer asks ``optimizer.arena``, so a wrapper exposing only the public
    property is accepted."""
    from ferroptim.train import Trainer
    from ferroptim.train.models import logistic_regression

    model = logistic_regression(4, 3, seed=0)
    inner = fo.AdamW(model.arena)

    class Wrapper:
        arena = property(lambda self: inner.arena)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_arena"):
                raise AttributeError(name)
            return getattr(inner, name)

    trainer = Trainer(model, Wrapper(), loss="cross_entropy", verbose=0)
    assert trainer.optimizer.arena is model.arena


def test_plateau_callback_has_its_own_name() -> None:
    """The schedule and the callback no longer share a name; the old callback name warns."""
    from ferroptim import train
    from ferroptim.schedules import ReduceLROnPlateau as Schedule

    assert fo.ReduceLROnPlateau is Schedule
    assert issubclass(train.ReduceLROnPlateauCallback, train.Callback)
    assert "ReduceLROnPlateauCallback" in train.__all__
    with pytest.warns(DeprecationWarning, match="ReduceLROnPlateauCallback"):
        old = train.ReduceLROnPlateau("val_loss", patience=1)
    assert isinstance(old, train.ReduceLROnPlateauCallback)

"""ferroptim.registry: one table of optimizers, read by train, tune and bench."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim import registry


def exported_optimizers() -> list[type]:
    return [
        obj
        for name in fo.__all__
        if isinstance(obj := getattr(fo, name), type)
        and issubclass(obj, fo.Optimizer)
        and obj is not fo.Optimizer
    ]


def test_every_exported_optimizer_is_registered() -> None:
    classes = exported_optimizers()
    assert len(classes) >= 10
    assert {info.cls for info in registry.optimizers().values()} == set(classes)
    for cls in classes:
        assert registry.get(cls.__name__.lower()).cls is cls
        assert registry.get(cls.__name__).cls is cls  # case-insensitive


def test_hyperparameters_come_from_the_signature() -> None:
    for info in registry.optimizers().values():
        sig = inspect.signature(info.cls.__init__).parameters
        for name, hp in info.hyperparameters.items():
            assert sig[name].default == hp.default, (info.name, name)
        # The options every optimizer shares are not a class's hyperparameters.
        assert "max_grad_norm" not in info.hyperparameters
        assert "params" not in info.hyperparameters
    adam = registry.get("adam").hyperparameters
    assert adam["betas"].type is tuple and adam["betas"].searchable
    assert adam["amsgrad"].type is bool and not adam["amsgrad"].searchable
    assert registry.get("nadam").hyperparameters["mu_product_dtype"].type is str
    assert registry.takers("momentum") == ("sgd", "rmsprop")


def test_default_lr_is_the_tuned_one_or_the_signature_default() -> None:
    assert registry.get("sgd").default_lr == 0.05
    for info in registry.optimizers().values():
        sig_lr = inspect.signature(info.cls.__init__).parameters["lr"].default
        assert info.default_lr == registry.TRAIN_LR.get(info.name, sig_lr)


def test_unknown_name_is_a_value_error_listing_the_known() -> None:
    with pytest.raises(ValueError, match="choose from sgd"):
        registry.get("adamz")


def test_every_registered_optimizer_reaches_train_tune_and_bench() -> None:
    """The three tools take their optimizers from the registry: each registered one
    is accepted by train's config checks, tune's space and bench's implementations."""
    pytest.importorskip("sklearn", reason="train's data sets need scikit-learn")
    from ferroptim import bench
    from ferroptim.train.build import TrainConfig, build, check_config
    from ferroptim.tune.space import PARAMS, load_space

    names = list(registry.names())
    assert load_space({"optimizer": {"type": "categorical", "choices": names}})
    case = bench.Case("1 x 8", [(8,)])
    for name in names:
        config = TrainConfig(dataset="iris", hidden="4", optimizer=name, epochs=1)
        check_config(config)
        setup = build(config)
        assert type(setup.optimizer) is registry.get(name).cls
        assert setup.optimizer.param_groups[0]["initial_lr"] == registry.get(name).default_lr
        bench.fo_list(name, case)()
        assert bench.fused_bytes_per_param(name) >= 12
        for hp in registry.get(name).hyperparameters.values():
            if hp.searchable:
                parts = ("beta1", "beta2") if hp.name == "betas" else (hp.name,)
                for part in parts:
                    takers = PARAMS[part][1]
                    assert takers is None or name in takers, (name, part)


def test_a_new_optimizer_needs_no_table_edits(monkeypatch: Any) -> None:
    """An Optimizer subclass exported from ferroptim is picked up by the registry (and
    so by the tools) with its signature's defaults; no other table is edited."""

    class Sgd2(fo.SGD):
        def __init__(self, params: Any, lr: float = 0.02, momentum: float = 0.0) -> None:
            super().__init__(params, lr=lr, momentum=momentum)

    monkeypatch.setattr(fo, "Sgd2", Sgd2, raising=False)
    monkeypatch.setattr(fo, "__all__", [*fo.__all__, "Sgd2"])
    registry._table.cache_clear()
    try:
        info = registry.get("sgd2")
        assert info.default_lr == 0.02
        assert list(info.hyperparameters) == ["lr", "momentum"]
        assert "sgd2" in registry.takers("momentum")
        from ferroptim.train.build import TrainConfig, optimizer_kwargs

        kwargs = optimizer_kwargs(TrainConfig(optimizer="sgd2", momentum=0.9))
        assert kwargs == {"lr": 0.02, "momentum": 0.9}
        w = np.zeros(2, np.float32)
        info.cls([w], **kwargs).step([np.ones(2, np.float32)])
        assert w[0] == pytest.approx(-0.02)
    finally:
        registry._table.cache_clear()


def test_package_description_is_not_a_stale_list() -> None:
    """pyproject's description names registered optimizers only, and either all of them
    or says there are more (it once said four while ten shipped)."""
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    line = re.search(r'^description = "(.*)"$', pyproject.read_text(), re.M)
    assert line is not None
    description = line.group(1)
    classes = {info.cls.__name__ for info in registry.optimizers().values()}
    listed = re.search(r"\(([^)]*)\)", description)  # the list of optimizers
    named = set(re.findall(r"\b[A-Z][A-Za-z]+\b", listed.group(1) if listed else ""))
    assert named <= classes, named - classes
    assert named == classes or "more" in description

"""`ferroptim tune`: search spaces, input checks, samplers and pruners (on
iris, a few epochs). Workers, resuming, stale-trial recovery, the command
line and the shared build are in test_tune_workers.py.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip("sklearn", reason="the iris data set needs scikit-learn")

from optuna.trial import TrialState  # noqa: E402

from _tune_helpers import DIVERGES, SPACE, check_outputs, config, finished  # noqa: E402
from _tune_helpers import work as work  # noqa: E402 (a fixture: pytest finds it here)
from ferroptim.tune import Spec, TuneConfig, TuneError, check, load_space, run  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


# --- search spaces -----------------------------------------------------------------------


def test_load_space_from_dict_json_and_yaml(work):
    yaml = pytest.importorskip("yaml")
    json_file = work / "space.json"
    json_file.write_text(json.dumps(SPACE))
    yaml_file = work / "space.yaml"
    yaml_file.write_text(yaml.safe_dump(SPACE))
    yml_file = work / "space.yml"
    yml_file.write_text(
        "optimizer: {type: categorical, choices: [adam, sgd]}\n"
        "lr: {type: float, low: 0.001, high: 0.1, log: true}\n"
        "momentum: {type: float, low: 0.5, high: 0.99}\n"
        "hidden: {type: categorical, choices: ['16']}\n"
    )
    expected = {
        "optimizer": Spec("optimizer", "categorical", choices=["adam", "sgd"]),
        "lr": Spec("lr", "float", 1e-3, 0.1, True),
        "momentum": Spec("momentum", "float", 0.5, 0.99),
        "hidden": Spec("hidden", "categorical", choices=["16"]),
    }
    for source in (SPACE, json_file, str(yaml_file), yml_file):
        assert load_space(source) == expected, source
    ints = load_space({"warmup": {"type": "int", "low": 0, "high": 10, "step": 2}})
    assert ints["warmup"].grid_values() == [0, 2, 4, 6, 8, 10]
    assert set(load_space(None)) >= {"optimizer", "lr", "momentum"}  # the default space


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"optimizer": {"type": "categorical", "choices": ["adam", "adamz"]}}, "adamz"),
        ({"learning_rate": {"type": "float", "low": 0.1, "high": 1}}, "learning_rate"),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.1}}, "empty or inverted"),
        ({"lr": {"type": "float", "low": 0.5, "high": 0.1}}, "empty or inverted"),
        ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "must be > 0"),
        ({"lr": {"type": "float", "low": -1.0, "high": 0.1, "log": True}}, "must be > 0"),
        ({"lr": {"type": "uniform", "low": 0.1, "high": 1}}, "'type'"),
        ({"lr": {"type": "float", "low": 0.1}}, "numeric 'low' and 'high'"),
        ({"schedule": {"type": "categorical", "choices": ["cosine", "wavy"]}}, "wavy"),
        ({}, "non-empty"),
    ],
)
def test_bad_space_is_rejected_before_any_trial(work, space, message):
    with pytest.raises(TuneError, match=message):
        load_space(space)
    cfg = config(work, space=space)
    with pytest.raises(ValueError, match=message):  # TuneError is a ValueError
        run(cfg)
    assert not (Path(cfg.out) / "study.db").exists()


def test_bad_space_files(work):
    with pytest.raises(TuneError, match="no such file"):
        load_space(work / "missing.json")
    broken = work / "broken.yaml"
    broken.write_text("lr: {type: float, low: [\n")
    with pytest.raises(TuneError, match="cannot parse"):
        load_space(broken)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sampler": "bayes"}, "--sampler: unknown 'bayes'"),
        ({"pruner": "early"}, "--pruner: unknown 'early'"),
        ({"trials": 0}, "--trials must be >= 1"),
        ({"workers": 0}, "--workers must be >= 1"),
        ({"metric": "accuracy"}, "--metric"),
        ({"dataset": "no-such-data"}, "--dataset"),
        ({"sampler": "grid"}, "grid sampler needs 'choices', a 'grid' list or a 'step' for 'lr'"),
        # warmup up to 50 steps, but 2 epochs of iris (102 training rows) at the
        # default batch size 32 are 8 steps
        (
            {"space": {"warmup": {"type": "int", "low": 0, "high": 50}, **SPACE}},
            "'warmup' reaches 50 steps, but a trial of 2 epochs at batch size 32 has only 8",
        ),
        (
            {"space": {"batch_size": {"type": "float", "low": 8, "high": 64}, **SPACE}},
            'space: \'batch_size\' takes whole numbers; make it "type": "int"',
        ),
    ],
)
def test_bad_config_is_rejected_before_any_trial(work, overrides, message):
    cfg = config(work, **overrides)
    with pytest.raises(TuneError, match=message):
        run(cfg)
    assert not (Path(cfg.out) / "study.db").exists()


def test_int_ranges_pass_the_checks(work):
    # An int range (warmup, like the default space's) must probe as an int flag.
    space = {**SPACE, "warmup": {"type": "int", "low": 0, "high": 3}}
    assert check(config(work, space=space))["warmup"].type == "int"
    # The default space, with the default 15 epochs of digits.
    assert check(TuneConfig(out=str(work / "run")))["warmup"].type == "int"
    # (trials with an int range: test_hyperband_gets_one_report_per_epoch)


def test_a_configuration_train_rejects_fails_only_its_trial(work, monkeypatch, capsys):
    # A configuration `ferroptim train` refuses at build time (every choice
    # passes the up-front checks; this one is refused when the trial builds it):
    # those trials fail with the reason in trials.csv, the study goes on.
    from ferroptim.train import build as train_build

    build = train_build.build

    def picky(config):
        if config.hidden == "32":
            raise train_build.UsageError("--hidden: 32 is refused here")
        return build(config)

    monkeypatch.setattr(train_build, "build", picky)
    space = {**SPACE, "hidden": {"type": "categorical", "choices": ["16", "32"]}}
    study = run(config(work, space=space, trials=6, verbose=1))
    states = {t.params["hidden"]: set() for t in study.trials}
    for t in study.trials:
        states[t.params["hidden"]].add(t.state)
    assert states == {"16": {TrialState.COMPLETE}, "32": {TrialState.FAIL}}
    assert (Path(work / "run" / "best.json")).is_file()
    with (work / "run" / "trials.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "FAIL"]
    assert rows and all("32 is refused here" in r["error"] for r in rows)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"ferroptim tune: trial {rows[0]['number']} failed: " in err


def test_unreachable_storage_fails_fast_before_any_trial(work):
    cfg = config(work, storage="postgresql+psycopg2://nobody@127.0.0.1:1/x")
    start = time.perf_counter()
    with pytest.raises(TuneError, match=r"--storage: cannot open 'postgresql\+psycopg2://"):
        run(cfg)
    assert time.perf_counter() - start < 30
    assert not (Path(cfg.out) / "study.db").exists()


def test_unwritable_sqlite_location_is_a_clear_error(work):
    blocker = work / "a-file"
    blocker.write_text("not a folder")
    cfg = config(work, storage=f"sqlite:///{blocker}/sub/study.db")
    with pytest.raises(TuneError, match="--storage: cannot open 'sqlite:///"):
        run(cfg)
    assert not (Path(cfg.out) / "study.db").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = work / "locked"
        locked.mkdir(mode=0o500)
        cfg = config(work, storage=f"sqlite:///{locked}/study.db")
        with pytest.raises(TuneError, match="--storage"):
            run(cfg)


# --- search --------------------------------------------------------------------------------


def test_conditional_params_follow_the_optimizer(work):
    cfg = config(work, sampler="random", trials=8)
    study = run(cfg)
    check_outputs(Path(cfg.out), study, 8)
    by_optimizer: dict[str, list] = {"adam": [], "sgd": []}
    for t in finished(study):
        by_optimizer[t.params["optimizer"]].append(t)
    assert by_optimizer["adam"] and by_optimizer["sgd"], "the seed should sample both"
    assert all("momentum" not in t.params for t in by_optimizer["adam"])
    assert all(0.5 <= t.params["momentum"] <= 0.99 for t in by_optimizer["sgd"])


# (random: test_conditional_params_follow_the_optimizer)
@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes"])
def test_each_sampler_finishes_n_trials_and_writes_outputs(work, sampler):
    if sampler == "gp":
        missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"--sampler gp needs {' and '.join(missing)}, not installed")
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        with pytest.raises(TuneError, match="cmaes"):
            run(config(work, sampler="cmaes"))
        pytest.skip("--sampler cmaes needs the 'cmaes' package, not installed")
    cfg = config(work, sampler=sampler, trials=5)
    study = run(cfg)
    check_outputs(Path(cfg.out), study, 5)


def test_grid_sampler_covers_a_small_grid(work):
    space = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.02},
        "hidden": {"type": "categorical", "choices": ["16"]},
    }
    cfg = config(work, sampler="grid", space=space, trials=4)
    study = run(cfg)
    check_outputs(Path(cfg.out), study, 4)
    seen = {(t.params["optimizer"], round(t.params["lr"], 6)) for t in study.trials}
    assert seen == {("adam", 0.01), ("adam", 0.03), ("sgd", 0.01), ("sgd", 0.03)}


@DIVERGES
def test_median_pruner_prunes_a_bad_lr_region(work):
    # sgd with lr up to 1e3 diverges; the median pruner (5 startup trials,
    # pruning from the third epoch) stops some of those trials. Seeded.
    space = {
        "optimizer": {"type": "categorical", "choices": ["sgd"]},
        "lr": {"type": "float", "low": 1e-3, "high": 1e3, "log": True},
        "hidden": {"type": "categorical", "choices": ["16"]},
    }
    cfg = config(work, sampler="tpe", pruner="median", space=space, trials=12, epochs=3)
    study = run(cfg)
    assert len(finished(study)) == 12
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and complete
    assert all(t.number >= 5 for t in pruned)  # not during the startup trials
    for t in pruned:  # pruned by the median rule at the first step it applies
        assert sorted(t.intermediate_values) == [0, 1, 2]
        assert t.value == t.intermediate_values[2]
    for t in complete:  # one report per epoch
        assert sorted(t.intermediate_values) == [0, 1, 2]
        assert t.value == max(t.intermediate_values.values())
    with (Path(cfg.out) / "trials.csv").open() as f:
        states = [r["state"] for r in csv.DictReader(f)]
    assert states.count("PRUNED") == len(pruned)


def test_hyperband_gets_one_report_per_epoch(work):
    space = {**SPACE, "warmup": {"type": "int", "low": 0, "high": 3}}
    cfg = config(work, pruner="hyperband", space=space, trials=3, epochs=3)
    study = run(cfg)
    assert len(finished(study)) == 3
    for t in study.trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(len(steps))) and steps
        if t.state == TrialState.COMPLETE:
            assert steps == [0, 1, 2]
        assert isinstance(t.params["warmup"], int) and 0 <= t.params["warmup"] <= 3


def test_val_loss_is_minimized(work):
    cfg = config(work, metric="val_loss", trials=3)
    study = run(cfg)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    values = [t.value for t in finished(study)]
    assert json.loads((Path(cfg.out) / "best.json").read_text())["value"] == min(values)

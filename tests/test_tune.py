"""`ferroptim tune`: search spaces, input checks, samplers, pruners, workers,
resuming, stale-trial recovery and the command line (on iris, a few epochs)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip("sklearn", reason="the iris data set needs scikit-learn")

from optuna.storages import RetryHeartbeatStaleTrialCallback  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from ferroptim.tune import (  # noqa: E402
    Spec,
    TuneConfig,
    TuneError,
    check,
    load_space,
    run,
)
from ferroptim.tune import main as tune_main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
# NumPy's overflow warnings of deliberately diverging trials
DIVERGES = pytest.mark.filterwarnings(
    "ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning"
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PNG = b"\x89PNG\r\n\x1a\n"
# Small and fast: one tiny hidden layer; momentum only applies to sgd.
SPACE = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
    "hidden": {"type": "categorical", "choices": ["16"]},
}


@pytest.fixture
def work(tmp_path):
    """A scratch folder on tmpfs when there is one: every trial commits to
    SQLite several times, and on a disk each fsync costs milliseconds."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="ferroptim-tune-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def config(folder: Path, **overrides) -> TuneConfig:
    base = {
        "dataset": "iris",
        "epochs": 2,
        "trials": 4,
        "sampler": "random",
        "pruner": "none",
        "out": str(folder / "run"),
        "space": SPACE,
        "verbose": 0,
    }
    return TuneConfig(**{**base, **overrides})


def finished(study) -> list:
    return study.get_trials(deepcopy=False, states=FINISHED)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg"}


def tune_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ferroptim", "tune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


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


def check_outputs(out: Path, study, n: int) -> None:
    """best.json, trials.csv and the three plots (every space here has >= 2 params)."""
    assert len(study.trials) == n
    assert len(finished(study)) == n
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == pytest.approx(study.best_value)
    assert best["params"] == study.best_params
    assert best["trial"] == study.best_trial.number
    assert best["metric"] == "val_accuracy"
    command = best["train_command"].split()
    assert command[:2] == ["ferroptim", "train"]
    # The command is a valid `ferroptim train` command with the best params.
    from ferroptim.train.cli import build_parser, optimizer_kwargs

    args = build_parser().parse_args(command[2:])
    assert args.optimizer == best["params"].get("optimizer", "adamw")
    assert args.lr == pytest.approx(best["params"]["lr"])
    optimizer_kwargs(args)
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    assert sorted(int(r["number"]) for r in rows) == list(range(n))
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    for name in ("history.png", "parallel_coordinate.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == PNG, name


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


# --- workers, resuming, stale trials -------------------------------------------------------


def test_two_workers_share_the_sqlite_study(work):
    # synthetic data: the spawned workers need not import scikit-learn
    cfg = config(work, workers=2, trials=6, dataset="synthetic-classification")
    study = run(cfg)
    trials = study.trials
    assert len(trials) == 6
    assert all(t.state in FINISHED for t in trials)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(6))
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids  # both spawned workers ran trials
    # Each worker has its own sampler seed: no configuration is tried twice.
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == 6, configs
    check_outputs(Path(cfg.out), study, 6)


def test_resume_continues_the_study(work):
    first = run(config(work, trials=3))
    before = [(t.number, t.params, t.value, t.datetime_start) for t in first.trials]
    again = run(config(work, trials=5))
    assert len(again.trials) == 5
    assert [(t.number, t.params, t.value, t.datetime_start) for t in again.trials[:3]] == before
    assert [t.number for t in again.trials] == list(range(5))
    with (Path(work / "run" / "trials.csv")).open() as f:
        assert len(list(csv.DictReader(f))) == 5
    done = run(config(work, trials=5))  # already there: no new trial
    assert len(done.trials) == 5


def _training_trial(db: Path) -> int | None:
    """The number of a RUNNING trial that has its heartbeat and has reported
    an epoch (so its parameters are stored: it is mid-training), else None."""
    if not db.exists():
        return None
    con = sqlite3.connect(db, timeout=5)
    try:
        row = con.execute(
            "SELECT t.number FROM trials t"
            " JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
            " JOIN trial_intermediate_values v ON v.trial_id = t.trial_id"
            " WHERE t.state = 'RUNNING'"
        ).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    finally:
        con.close()
    return None if row is None else row[0]


def test_killed_worker_trial_fails_and_is_retried(work):
    # A worker whose first trial would train for a very long time, killed -9
    # mid-trial: its heartbeat stops, so the next run fails it and re-queues it.
    data = "synthetic-classification"
    slow = config(work, trials=3, epochs=100_000, heartbeat=1, grace=2, dataset=data)
    log = (work / "worker.log").open("w")
    code = "import json, sys; from ferroptim.tune import TuneConfig, run; "
    code += "run(TuneConfig(**json.loads(sys.argv[1])))"
    cfg_json = json.dumps({**slow.__dict__})
    worker = subprocess.Popen(
        [sys.executable, "-c", code, cfg_json], stdout=log, stderr=log, env=env()
    )
    try:
        deadline = time.monotonic() + 60
        stale = None
        while stale is None and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
            stale = _training_trial(Path(slow.out) / "study.db")
        assert stale is not None, (work / "worker.log").read_text()[-2000:]
    finally:
        worker.kill()  # SIGKILL: no cleanup, the trial stays RUNNING
        worker.wait()
        log.close()
    assert worker.returncode == -signal.SIGKILL
    time.sleep(3.5)  # past the grace period (heartbeats are stored to the second)

    study = run(config(work, trials=3, heartbeat=1, grace=2, dataset=data))
    trials = {t.number: t for t in study.trials}
    summary = [(t.number, t.state.name, t.system_attrs) for t in study.trials]
    assert trials[stale].state == TrialState.FAIL, summary
    retries = [
        t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == stale
    ]
    assert len(retries) == 1, summary
    retry = retries[0]
    assert retry.state in FINISHED
    assert retry.params == trials[stale].params != {}
    assert retry.user_attrs["pid"] == os.getpid()  # rerun here, not by the dead worker
    assert len(finished(study)) == 3
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


# --- command line --------------------------------------------------------------------------


def test_cli_runs_prints_best_and_retrains(work):
    space = work / "space.json"
    space.write_text(json.dumps(SPACE))
    out = work / "cli"
    proc = tune_cli(
        *("--dataset", "synthetic-classification", "--epochs", "2", "--trials", "3"),
        *("--sampler", "random", "--workers", "2"),  # spawned from `python -m ferroptim`
        *("--space", str(space), "--out", str(out), "--verbose", "0", "--retrain-best"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("best val_accuracy: ") for line in lines), proc.stdout
    assert "Traceback" not in proc.stderr
    best = json.loads((out / "best.json").read_text())
    assert f"{best['value']:.4f}" in proc.stdout
    assert (out / "best-model" / "last.npz").is_file()
    with (out / "trials.csv").open() as f:
        assert [r["state"] for r in csv.DictReader(f)] == ["COMPLETE"] * 3
    assert (out / "best-model" / "history.csv").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be >= 1"),
        (["--sampler", "bayes"], "--sampler: unknown 'bayes'"),
        (["--trials", "many"], "--trials"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--space", "missing.yaml"], "--space: no such file missing.yaml"),
        (["--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/x"], "--storage: cannot open"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(work, args, message):
    out = work / "cli"
    space = work / "space.json"
    space.write_text(json.dumps(SPACE))
    common = ["--dataset", "synthetic-classification", "--epochs", "2", "--space", str(space)]
    proc = tune_cli(*common, "--out", str(out), *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ferroptim tune: error: ")
    assert message in lines[0]
    assert not (out / "study.db").exists()


@DIVERGES
def test_all_trials_pruned_is_an_error_not_a_traceback(work, capsys):
    # sgd at lr 1e6 diverges: every val_loss is NaN, so every trial is pruned.
    space = work / "space.json"
    space.write_text(
        json.dumps(
            {
                "optimizer": {"type": "categorical", "choices": ["sgd"]},
                "lr": {"type": "float", "low": 1e6, "high": 1e8, "log": True},
                "hidden": {"type": "categorical", "choices": ["16"]},
            }
        )
    )
    out = work / "cli"
    code = tune_main(
        [
            *("--dataset", "iris", "--epochs", "2", "--trials", "2", "--metric", "val_loss"),
            *("--space", str(space), "--out", str(out), "--verbose", "0", "--retrain-best"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1, captured
    assert captured.err.strip().splitlines()[-1] == (
        f"ferroptim tune: no trial completed (all pruned or failed); see {out}/trials.csv"
    )
    assert "error" not in captured.err and "best" not in captured.out
    with (out / "trials.csv").open() as f:
        assert [r["state"] for r in csv.DictReader(f)] == ["PRUNED", "PRUNED"]
    assert not (out / "best-model").exists()


# --- the registry and the shared build -------------------------------------------------------


def test_trials_build_through_train_config_not_command_lines(work, monkeypatch):
    """A trial is a TrainConfig built by ferroptim.train.build, never an argv re-parsed
    by the train CLI (its parser is broken here; tune must not notice)."""
    from ferroptim.train import cli as train_cli

    def no_parsing(*args, **kwargs):
        raise AssertionError("tune parsed a train command line")

    monkeypatch.setattr(train_cli, "build_parser", no_parsing)
    study = run(config(work, trials=2, retrain_best=True))
    assert len(finished(study)) == 2
    assert (work / "run" / "best-model" / "last.npz").is_file()


def test_a_registry_hyperparameter_without_a_flag_is_searchable(work):
    """Hyperparameters come from the registry: RMSprop's alpha (no train flag of its own)
    can be searched and is passed as --opt alpha=VALUE in the best train command."""
    from ferroptim.train.cli import build_parser, optimizer_kwargs

    space = {
        "optimizer": {"type": "categorical", "choices": ["rmsprop"]},
        "alpha": {"type": "float", "low": 0.8, "high": 0.95},
        "hidden": {"type": "categorical", "choices": ["16"]},
    }
    study = run(config(work, space=space, trials=2))
    best = json.loads((work / "run" / "best.json").read_text())
    assert 0.8 <= best["params"]["alpha"] <= 0.95
    args = build_parser().parse_args(best["train_command"].split()[2:])
    assert optimizer_kwargs(args)["alpha"] == pytest.approx(study.best_params["alpha"])
    with pytest.raises(TuneError, match="alpha"):  # outside RMSprop's alpha range
        load_space({"alpha": {"type": "float", "low": 0.5, "high": 1.5}})

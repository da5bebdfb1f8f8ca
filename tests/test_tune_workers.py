"""`ferroptim tune`: workers sharing a study, resuming, stale-trial recovery,
the command line, and trials built through the registry's shared build (on
iris, a few epochs).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip("sklearn", reason="the iris data set needs scikit-learn")

from optuna.storages import RetryHeartbeatStaleTrialCallback  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from _tune_helpers import DIVERGES, FINISHED, SPACE, check_outputs, config, finished  # noqa: E402
from _tune_helpers import work as work  # noqa: E402 (a fixture: pytest finds it here)
from ferroptim.tune import TuneError, load_space, run  # noqa: E402
from ferroptim.tune import main as tune_main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


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

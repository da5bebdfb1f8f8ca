"""`ferroptim tune` workers sharing one study through a real PostgreSQL server.

The server is started here (tests/pg.py: initdb into a scratch folder, 127.0.0.1
on a free port, trust auth) and stopped when the module's tests end. Without
the server binaries (``apt-get install -y postgresql``) or psycopg2 the tests
skip, saying what is missing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip(
    "psycopg2", reason="PostgreSQL storage needs psycopg2 (pip install psycopg2-binary)"
)

from optuna.trial import TrialState  # noqa: E402

from ferroptim.tune import TuneConfig, TuneError, run  # noqa: E402
from pg import PgUnavailable, start_postgres  # noqa: E402

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPACE = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
    "hidden": {"type": "categorical", "choices": ["16"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        pg = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PgUnavailable as err:
        pytest.skip(f"cannot start a PostgreSQL server: {err}")
    try:
        yield pg
    finally:
        pg.stop()


def config(tmp_path: Path, storage: str, **overrides) -> TuneConfig:
    base = {
        "dataset": "synthetic-classification",  # the workers need no scikit-learn
        "epochs": 2,
        "trials": 8,
        "sampler": "tpe",
        "pruner": "median",
        "out": str(tmp_path / "run"),
        "storage": storage,
        "space": SPACE,
        "verbose": 0,
    }
    return TuneConfig(**{**base, **overrides})


def test_two_workers_share_a_postgres_study(server, tmp_path):
    cfg = config(tmp_path, server.url(), workers=2, study="two-workers")
    study = run(cfg)
    assert not (tmp_path / "run" / "study.db").exists()  # the study lives in PostgreSQL

    # Read the study back from the server with a fresh connection.
    stored = optuna.load_study(study_name="two-workers", storage=server.url())
    trials = stored.get_trials(deepcopy=False)
    assert len(trials) == 8
    assert [t.state for t in trials if t.state not in FINISHED] == []  # none RUNNING/WAITING
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(8))  # unique, none lost
    assert len({t._trial_id for t in trials}) == 8
    pids = {t.user_attrs.get("pid") for t in trials}
    assert len(pids) == 2 and None not in pids and os.getpid() not in pids
    for t in trials:
        assert t.params["optimizer"] in ("adam", "sgd")
        assert 1e-3 <= t.params["lr"] <= 0.1
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
        assert t.value is not None and 0.0 <= t.value <= 1.0
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
        assert t.intermediate_values, t.number  # reported once per epoch
        assert t.datetime_start is not None and t.datetime_complete is not None
    # No configuration ran twice (each worker samples with its own seed).
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == 8
    assert stored.best_value == study.best_value
    assert (tmp_path / "run" / "best.json").is_file()


def test_resuming_a_postgres_study_adds_trials(server, tmp_path):
    storage = server.url()
    run(config(tmp_path, storage, trials=2, study="resume", pruner="none"))
    study = run(config(tmp_path, storage, trials=3, study="resume", pruner="none"))
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("where", ["closed port", "missing database"])
def test_unreachable_postgres_fails_before_any_trial(server, tmp_path, where):
    url = server.url(database="no_such_db")
    if where == "closed port":
        url = "postgresql+psycopg2://nobody@127.0.0.1:1/x"
    cfg = config(tmp_path, url)
    start = time.perf_counter()
    with pytest.raises(TuneError, match="--storage: cannot open") as info:
        run(cfg)
    assert time.perf_counter() - start < 30
    if where == "missing database":
        assert "no_such_db" in str(info.value)
    assert not (tmp_path / "run" / "study.db").exists()
    assert not (tmp_path / "run" / "best.json").exists()


def test_two_overlapping_invocations_end_with_exactly_n_trials(server, tmp_path):
    # Two processes on one PostgreSQL study, released together: before, each ran
    # up to 6 trials (11 or 12 in all); now the study ends with exactly 6.
    import json
    import subprocess
    import sys

    cfg = config(tmp_path, server.url(), trials=6, study="overlap", sampler="random")
    cfg.pruner = "none"
    run(config(tmp_path, server.url(), trials=1, study="overlap", pruner="none"))
    go, ready = tmp_path / "go", tmp_path / "ready"
    ready.mkdir()
    code = "import json, os, sys, time, optuna; from ferroptim.tune import TuneConfig, run\n"
    code += "open(os.path.join(sys.argv[3], str(os.getpid())), 'w').close()\n"
    code += "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
    code += "run(TuneConfig(**json.loads(sys.argv[1])))"
    argv = [sys.executable, "-c", code, json.dumps(cfg.__dict__), str(go), str(ready)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    deadline = time.monotonic() + 120
    while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # until both have imported everything
    go.touch()
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    stored = optuna.load_study(study_name="overlap", storage=server.url())
    states = [t.state for t in stored.get_trials(deepcopy=False)]
    assert sum(s in FINISHED for s in states) == 6, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states

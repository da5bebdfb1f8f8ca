"""The scratch folder, the search space and run helpers of the test_tune*.py modules."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip("sklearn", reason="the iris data set needs scikit-learn")

from optuna.trial import TrialState  # noqa: E402

from ferroptim.tune import TuneConfig  # noqa: E402

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

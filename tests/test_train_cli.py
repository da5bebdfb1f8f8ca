"""`ferroptim train` (python -m ferroptim train), run as a real subprocess:
every data set kind, model, optimizer and schedule.

Runs are kept small (2-5 epochs, small hidden layers, --verbose 0); only
``--out`` runs pay for matplotlib. What a flag should do is checked in what
the run writes (last.npz holds the model config, the layout, the optimizer
class and state, and the per-step history), not only in the exit code.
The other flags, bad input and the typed config are in test_train_cli_flags.py.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from _train_cli_helpers import QUICK, SMALL, result, train
from ferroptim.train import checkpoint as ckpt

FAST_LR = ("--lr", "0.02", "--schedule", "constant")  # few epochs: no decay to zero


# -- data sets -----------------------------------------------------------------------


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 5)) + 3.0 * np.eye(5)[y]
    return X, y


@pytest.fixture
def npz_file(tmp_path):
    X, y = _blobs()
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=y)
    return path


@pytest.fixture
def csv_file(tmp_path):
    # Float labels: a regression task, linear in the features.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 4))
    y = X @ np.array([1.5, -2.0, 0.5, 1.0]) + 0.05 * rng.standard_normal(300)
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "c", "d", "target"])
        writer.writerows(np.column_stack([X, y]).tolist())
    return path


@pytest.mark.parametrize(
    ("dataset", "extra", "metric", "minimum"),
    [
        ("digits", ("--epochs", "3", "--hidden", "64"), "accuracy", 0.8),
        ("iris", ("--epochs", "20", *FAST_LR), "accuracy", 0.85),
        ("synthetic-classification", ("--epochs", "3", *FAST_LR), "accuracy", 0.85),
        ("synthetic-regression", ("--epochs", "5", "--model", "linear", *FAST_LR), "r2", 0.95),
        ("NPZ", ("--epochs", "5", *FAST_LR), "accuracy", 0.9),
        (
            "CSV",
            ("--epochs", "5", "--model", "linear", "--lr", "0.1", "--schedule", "constant"),
            "r2",
            0.95,
        ),
    ],
)
def test_every_dataset_kind(tmp_path, npz_file, csv_file, dataset, extra, metric, minimum):
    dataset = {"NPZ": str(npz_file), "CSV": str(csv_file)}.get(dataset, dataset)
    proc = train(tmp_path, "--dataset", dataset, *QUICK, *extra)
    name, value, loss, epochs = result(proc)
    assert name == metric  # the task was recognized
    assert value >= minimum, proc.stdout
    assert math.isfinite(loss)
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("model", "dataset", "layout"),
    [
        ("linear", "synthetic-regression", {"head.W": [20, 1], "head.b": [1]}),
        ("logistic", SMALL, {"head.W": [10, 3], "head.b": [3]}),
        (
            "mlp",
            SMALL,
            {"hidden1.W": [10, 16], "hidden1.b": [16], "head.W": [16, 3], "head.b": [3]},
        ),
    ],
)
def test_every_model(tmp_path, model, dataset, layout):
    proc = train(
        tmp_path, "--dataset", dataset, "--model", model, "--epochs", "3", *QUICK, "--out", "run"
    )
    name, value, _, epochs = result(proc)
    assert name == ("r2" if dataset == "synthetic-regression" else "accuracy")
    assert epochs == 3
    state = ckpt.load(tmp_path / "run" / "last.npz")
    assert state["layout"] == layout
    expected = {"linear": "linear_regression", "logistic": "logistic_regression", "mlp": "mlp"}
    assert state["config"]["model"]["type"] == expected[model]


OPTIMIZERS = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "NAdam",
    "radam": "RAdam",
    "lion": "Lion",
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_every_optimizer_trains(tmp_path, optimizer):
    proc = train(
        tmp_path,
        "--dataset",
        SMALL,
        "--optimizer",
        optimizer,
        "--schedule",
        "constant",
        "--epochs",
        "3",
        *QUICK,
        "--out",
        "run",
    )
    result(proc)
    state = ckpt.load(tmp_path / "run" / "last.npz")
    assert state["optimizer_class"] == OPTIMIZERS[optimizer]
    losses = [e["loss"] for e in state["history"]["epochs"]]
    val = [e["val_loss"] for e in state["history"]["epochs"]]
    assert losses[0] > losses[1] > losses[2], losses
    assert val[0] > val[2], val
    assert state["optimizer"]["state"], "the optimizer never stepped"


def test_optimizer_hyperparameter_flags(tmp_path):
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--optimizer",
        "sgd",
        "--lr",
        "0.2",
        "--momentum",
        "0.8",
        "--nesterov",
        "--weight-decay",
        "0.001",
        "--epochs",
        "2",
        "--schedule",
        "constant",
        *QUICK,
        "--out",
        "sgd",
    )
    groups = ckpt.load(tmp_path / "sgd" / "last.npz")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.2, 0.2]
    assert [g["momentum"] for g in groups] == [0.8, 0.8]
    assert [g["nesterov"] for g in groups] == [True, True]
    # The biases are kept out of weight decay.
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.001]
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--optimizer",
        "adam",
        "--betas",
        "0.8,0.9",
        "--eps",
        "1e-6",
        "--opt",
        "amsgrad=true",
        "--epochs",
        "2",
        *QUICK,
        "--out",
        "adam",
    )
    group = ckpt.load(tmp_path / "adam" / "last.npz")["optimizer"]["param_groups"][0]
    assert group["betas"] == (0.8, 0.9)
    assert group["eps"] == 1e-6 and group["amsgrad"] is True


# -- schedules -----------------------------------------------------------------------


def _lrs(run_dir: Path) -> np.ndarray:
    steps = ckpt.load(run_dir / "last.npz")["history"]["steps"]
    return np.array([s["lr"] for s in steps]) / 3e-3  # factors of adamw's default lr


@pytest.mark.parametrize(
    "schedule", ["constant", "step", "exponential", "inverse-time", "cosine", "onecycle", "linear"]
)
def test_every_schedule_with_warmup(tmp_path, schedule):
    warmup = 5
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--schedule",
        schedule,
        "--warmup",
        str(warmup),
        "--epochs",
        "2",
        "--batch-size",
        "128",
        *QUICK,
        "--out",
        "run",
    )
    lrs = _lrs(tmp_path / "run")
    assert len(lrs) == 2 * 17  # 2100 training rows in batches of 128
    assert np.all(np.isfinite(lrs)) and np.all(lrs >= 0)
    head, tail = lrs[: warmup - 1], lrs[warmup + 1 :]
    # Warmup: a linear ramp up to the peak.
    assert np.all(np.diff(head) > 0) and head[-1] < 1.0
    np.testing.assert_allclose(np.diff(head), np.diff(head)[0], rtol=1e-9)
    assert lrs.max() == pytest.approx(1.0, rel=0.05)
    if schedule == "constant":
        np.testing.assert_allclose(tail, 1.0)
    elif schedule == "step":
        assert np.all(np.diff(tail) <= 0)
        factors = np.log10(tail)
        np.testing.assert_allclose(factors, np.round(factors), atol=1e-9)  # powers of 10
        assert tail[-1] <= 0.01
    elif schedule == "exponential":
        ratios = tail[1:] / tail[:-1]
        np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
        assert tail[-1] == pytest.approx(0.01, rel=0.6)
    elif schedule == "inverse-time":
        assert np.all(np.diff(tail) < 0)
        np.testing.assert_allclose(1 / tail[1:] - 1 / tail[:-1], 1 / tail[1] - 1 / tail[0])
    elif schedule in ("cosine", "linear"):
        assert np.all(np.diff(tail) < 0)
        assert tail[-1] < 0.1
        if schedule == "linear":
            np.testing.assert_allclose(np.diff(tail), np.diff(tail)[0], rtol=1e-9)
    elif schedule == "onecycle":
        peak = int(np.argmax(tail))
        assert 0 < peak < len(tail) - 1
        assert np.all(np.diff(tail[: peak + 1]) > 0) and np.all(np.diff(tail[peak:]) <= 0)
        assert tail[-1] < 0.01

"""`ferroptim train` (python -m ferroptim train), run as a real subprocess.

Runs are kept small (2-5 epochs, small hidden layers, --verbose 0); only
``--out`` runs pay for matplotlib. What a flag should do is checked in what
the run writes (last.npz holds the model config, the layout, the optimizer
class and state, and the per-step history), not only in the exit code.
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import build_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAST_LINE = re.compile(
    r"^test (accuracy|r2): (-?\d+\.\d+) \(loss (\d+\.\d+)\) after (\d+) epochs in [\d.]+ s"
)
ERROR_PREFIX = "ferroptim train: error:"


def train(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ferroptim", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def result(proc: subprocess.CompletedProcess) -> tuple[str, float, float, int]:
    """(metric, value, test loss, epochs) from the last stdout line."""
    last = proc.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    return match[1], float(match[2]), float(match[3]), int(match[4])


QUICK = ("--hidden", "16", "--verbose", "0")
# No scikit-learn import (about 1 s a run): the default for runs that test flags.
SMALL = "synthetic-classification"
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


# -- the other flags -------------------------------------------------------------------


def test_hidden_dropout_ema_and_activation_flags(tmp_path):
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--hidden",
        "12,6",
        "--dropout",
        "0.3",
        "--activation",
        "tanh",
        "--ema-decay",
        "0.9",
        "--epochs",
        "2",
        "--verbose",
        "0",
        "--out",
        "run",
    )
    state = ckpt.load(tmp_path / "run" / "last.npz")
    model = state["config"]["model"]
    assert model["hidden"] == [12, 6] and model["dropout"] == 0.3
    assert model["activation"] == "tanh"
    # Layers: Dense, Tanh, Dropout, Dense, Tanh, Dropout, Dense.
    assert state["layout"] == {
        "hidden1.W": [10, 12],
        "hidden1.b": [12],
        "hidden2.W": [12, 6],
        "hidden2.b": [6],
        "head.W": [6, 3],
        "head.b": [3],
    }
    slots = {slot for st in state["optimizer"]["state"].values() for slot in st}
    assert "averaged_param" in slots  # the EMA is kept
    # Without --ema-decay there is none.
    train(tmp_path, "--dataset", SMALL, *QUICK, "--epochs", "2", "--out", "plain")
    plain = ckpt.load(tmp_path / "plain" / "last.npz")
    assert not {s for st in plain["optimizer"]["state"].values() for s in st} & {"averaged_param"}


def test_max_grad_norm_bounds_every_step(tmp_path):
    # Plain SGD at lr 0.5 with grads clipped to norm 1e-3: each step moves the
    # params by at most 5e-4, so the run ends within steps * 5e-4 of the init.
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--optimizer",
        "sgd",
        "--lr",
        "0.5",
        "--schedule",
        "constant",
        "--max-grad-norm",
        "1e-3",
        "--epochs",
        "3",
        *QUICK,
        "--out",
        "clipped",
    )
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--optimizer",
        "sgd",
        "--lr",
        "0.5",
        "--schedule",
        "constant",
        "--epochs",
        "3",
        *QUICK,
        "--out",
        "free",
    )
    clipped = ckpt.load(tmp_path / "clipped" / "last.npz")
    free = ckpt.load(tmp_path / "free" / "last.npz")
    init = build_model(clipped["config"]["model"]).arena.data
    steps = clipped["step"]
    moved = np.linalg.norm(clipped["params"].astype(np.float64) - init)
    assert 0 < moved <= steps * 0.5e-3 * 1.001
    assert np.linalg.norm(free["params"].astype(np.float64) - init) > 10 * moved


def test_out_writes_history_curves_and_checkpoints(tmp_path):
    proc = train(tmp_path, "--dataset", SMALL, "--epochs", "4", *QUICK, "--out", "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.npz",
        "curves.png",
        "history.csv",
        "last.npz",
    ]
    assert proc.stdout.strip().splitlines()[-1].endswith("wrote run")
    with (run / "history.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "batch_size", "time"):
        assert key in rows[0]
    png = (run / "curves.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 20_000
    last = ckpt.load(run / "last.npz")
    best = ckpt.load(run / "best.npz")
    assert last["epoch"] == 4
    val = [float(r["val_loss"]) for r in rows]
    assert best["epoch"] == 1 + int(np.argmin(val))
    assert last["config"]["argv"][:2] == ["--dataset", SMALL]
    assert [e["val_loss"] for e in last["history"]["epochs"]] == val


def test_default_run_reaches_97_percent(tmp_path):
    # The default run (an MLP on digits, 60 epochs) takes about 5-10 s on a
    # small machine: this is a quality check of the defaults, not a timing one.
    proc = train(tmp_path, "--verbose", "0")
    metric, value, loss, epochs = result(proc)
    assert metric == "accuracy" and epochs == 60
    assert value >= 0.97, proc.stdout


def test_resume_with_other_verbosity(tmp_path):
    # Progress bars are display only: a run started with the default
    # --verbose 1 must resume under --verbose 0 (e.g. in a batch job).
    train(
        tmp_path,
        "--dataset",
        SMALL,
        "--hidden",
        "8",
        "--epochs",
        "4",
        "--stop-after",
        "2",
        "--out",
        "run",
    )
    proc = train(tmp_path, "--resume", "run", "--verbose", "0", check=False)
    assert proc.returncode == 0, proc.stderr
    assert result(proc)[3] == 4


# -- bad input ---------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "garbage.csv").write_text("a,b,label\n1,2,x\n3,4,y\n")
    (tmp_path / "garbage.npz").write_bytes(np.random.default_rng(0).bytes(2000))
    np.savez(tmp_path / "no_xy.npz", features=np.ones((20, 2)))
    (tmp_path / "binary.csv").write_bytes(np.random.default_rng(1).bytes(2000))
    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "last.npz").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    good = ckpt.save(tmp_path / "good.npz", {"params": np.arange(500.0)})
    (truncated / "last.npz").write_bytes(good.read_bytes()[:300])
    foreign = tmp_path / "foreign"  # a valid checkpoint, not written by ferroptim train
    ckpt.save(foreign / "last.npz", {"epoch": 1, "params": np.ones(3)})


BAD = {
    "unknown flag": (["--bogus"], "unrecognized arguments"),
    "missing value": (["--epochs"], "--epochs"),
    "unknown optimizer": (["--optimizer", "adamm"], "--optimizer"),
    "unknown model": (["--model", "cnn"], "--model"),
    "unknown schedule": (["--schedule", "warm"], "--schedule"),
    "momentum with adam": (["--optimizer", "adam", "--momentum", "0.9"], "--momentum"),
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "three betas": (["--betas", "1,2,3"], "--betas"),
    "not a number": (["--lr", "fast"], "--lr"),
    "negative lr": (["--lr", "-1"], "lr"),
    "dropout 1": (["--dropout", "1"], "--dropout"),
    "warmup too long": (["--warmup", "100000", "--epochs", "1"], "--warmup"),
    "unknown hyperparameter": (["--opt", "gamma=2"], "gamma"),
    "logistic on regression": (
        ["--dataset", "synthetic-regression", "--model", "logistic"],
        "regression",
    ),
    "unknown activation": (["--activation", "gelu"], "activation"),
    "zero width": (["--hidden", "16,0"], "hidden"),
    "unknown dataset": (["--dataset", "mnist"], "--dataset"),
    "missing file": (["--dataset", "nowhere.csv"], "nowhere.csv"),
    "garbage csv": (["--dataset", "garbage.csv"], "garbage.csv"),
    "binary csv": (["--dataset", "binary.csv"], "--dataset"),
    "garbage npz": (["--dataset", "garbage.npz"], "--dataset"),
    "npz without X, y": (["--dataset", "no_xy.npz"], "'X' and 'y'"),
    "resume without checkpoint": (["--resume", "empty"], "no checkpoint"),
    "resume missing folder": (["--resume", "nowhere"], "no checkpoint"),
    "corrupt checkpoint": (["--resume", "corrupt"], "corrupt"),
    "truncated checkpoint": (["--resume", "truncated"], "truncated"),
    "foreign checkpoint": (["--resume", "foreign"], "--resume"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, case):
    _bad_inputs(tmp_path)
    args, words = BAD[case]
    # The case's flags come last, so they win over the common ones.
    common = ["--dataset", SMALL, "--hidden", "8", "--verbose", "0"]
    proc = train(tmp_path, *common, *args, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    assert words in lines[0], lines[0]
    assert proc.stdout == ""


def test_resume_with_other_callbacks_is_a_usage_error(tmp_path):
    train(
        tmp_path, "--dataset", SMALL, "--epochs", "4", "--stop-after", "1", *QUICK, "--out", "run"
    )
    before = (tmp_path / "run" / "last.npz").read_bytes()
    proc = train(tmp_path, "--resume", "run", "--patience", "3", "--verbose", "0", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # One rule for every flag on --resume: a value other than the saved one is refused.
    assert proc.stderr.startswith(
        f"{ERROR_PREFIX} --resume: --patience 3 differs from the saved run's (not set)"
    )
    assert (tmp_path / "run" / "last.npz").read_bytes() == before


# -- the typed config and the shared build (in process) ---------------------------------------


def test_train_config_defaults_are_the_flags_defaults():
    from dataclasses import fields

    from ferroptim.train.build import TrainConfig
    from ferroptim.train.cli import build_parser

    args = build_parser().parse_args([])
    config = TrainConfig.from_args(args)
    assert config == TrainConfig()
    assert {f.name for f in fields(TrainConfig)} <= set(vars(args))


def test_build_trainer_is_public_and_uses_the_registry():
    from ferroptim import registry
    from ferroptim.train import TrainConfig, Trainer, build_trainer
    from ferroptim.train.build import UsageError

    config = TrainConfig(dataset=SMALL, hidden=(8,), optimizer="lion", epochs=1, verbose=0)
    trainer, data = build_trainer(config)
    assert isinstance(trainer, Trainer)
    assert type(trainer.optimizer) is registry.get("lion").cls
    assert trainer.optimizer.param_groups[0]["initial_lr"] == registry.get("lion").default_lr
    trainer.fit(data.X_train, data.y_train, epochs=1)
    assert trainer.epoch == 1
    with pytest.raises(UsageError, match="--momentum does not apply to adam"):
        build_trainer(TrainConfig(dataset=SMALL, optimizer="adam", momentum=0.9))
    with pytest.raises(UsageError, match="--optimizer: unknown 'adamz'"):
        build_trainer(TrainConfig(dataset=SMALL, optimizer="adamz"))


def test_old_train_tables_are_read_from_the_registry():
    from ferroptim import registry
    from ferroptim.train import cli

    assert cli.OPTIMIZERS == {n: i.cls for n, i in registry.optimizers().items()}
    assert cli.DEFAULT_LR["sgd"] == registry.get("sgd").default_lr == 0.05


def test_checkpoint_uses_contextlib_suppress():
    assert not hasattr(ckpt, "_suppress")

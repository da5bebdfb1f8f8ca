"""`ferroptim train`, run as a real subprocess: the other flags (dropout, EMA,
activation, clipping, --out, --resume), bad input (one line, exit code 2),
and the typed config and the shared build (in process).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from _train_cli_helpers import QUICK, SMALL, result, train
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import build_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


ERROR_PREFIX = "ferroptim train: error:"


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

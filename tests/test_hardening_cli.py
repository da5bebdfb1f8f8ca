"""`ferroptim train` hardening: one rule for flags on --resume, up-front checks,
history.csv after a kill, progress in logs and at 80 columns, the curves figure
and --help (issues 11.6, 11.11, 11.13, 12.3, 12.4, 12.5, 12.7)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ferroptim.train import checkpoint as ckpt

ERROR_PREFIX = "ferroptim train: error:"
SMALL = ("--dataset", "synthetic-classification", "--hidden", "8")


def train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ferroptim", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def usage_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The one error line of a refused invocation (exit 2, nothing on stdout)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


def epochs_of(run: Path) -> list[int]:
    with (run / "history.csv").open(newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


# -- 11.6: one rule for flags given again on --resume ----------------------------------


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """A 4-epoch run stopped after 2 epochs."""
    cwd = tmp_path_factory.mktemp("resume")
    ok(train(cwd, *SMALL, "--epochs", "4", "--stop-after", "2", "--verbose", "0", "--out", "run"))
    return cwd


CHANGED = [
    ("--lr", "0.5"),
    ("--schedule", "constant"),
    ("--optimizer", "sgd"),
    ("--batch-size", "64"),
    ("--seed", "3"),
    ("--dtype", "float64"),
    ("--hidden", "16"),
    ("--dataset", "iris"),
    ("--warmup", "3"),
    ("--weight-decay", "0.1"),
    ("--patience", "2"),
    ("--opt", "amsgrad=true"),
]


@pytest.mark.parametrize(("flag", "value"), CHANGED)
def test_resume_refuses_a_flag_that_changes_the_run(half_run, flag, value):
    before = (half_run / "run" / "last.npz").read_bytes()
    line = usage_error(
        train(half_run, "--resume", "run", flag, value, "--verbose", "0"),
        "--resume",
        flag,
        "differs from the saved run",
    )
    assert "--epochs" in line  # says what may change
    assert (half_run / "run" / "last.npz").read_bytes() == before


def test_resume_takes_the_saved_values_given_again(tmp_path):
    ok(
        train(
            tmp_path, *SMALL, "--epochs", "3", "--stop-after", "1", "--verbose", "0", "--out", "r"
        )
    )
    # The same flags again (--lr spelled out at adamw's default, --hidden with a space).
    proc = ok(
        train(
            tmp_path,
            "--resume",
            "r",
            "--dataset",
            "synthetic-classification",
            "--hidden",
            "8, ",
            "--lr",
            "0.003",
            "--verbose",
            "0",
        )
    )
    assert " after 3 epochs " in proc.stdout
    assert ckpt.load(tmp_path / "r" / "last.npz")["epoch"] == 3


def test_resume_epochs_extends_the_run_and_is_saved(tmp_path):
    ok(
        train(
            tmp_path, *SMALL, "--epochs", "4", "--stop-after", "2", "--verbose", "0", "--out", "r"
        )
    )
    ok(train(tmp_path, "--resume", "r", "--epochs", "8", "--stop-after", "2", "--verbose", "0"))
    assert ckpt.load(tmp_path / "r" / "last.npz")["epoch"] == 4
    # No --epochs now: the run goes on to the 8 epochs it was given last time.
    proc = ok(train(tmp_path, "--resume", "r", "--verbose", "0"))
    assert " after 8 epochs " in proc.stdout
    state = ckpt.load(tmp_path / "r" / "last.npz")
    assert state["epoch"] == 8 and state["config"]["epochs"] == 8
    assert epochs_of(tmp_path / "r") == list(range(1, 9))
    # The schedule spans the new length: the lr is still above zero before epoch 8.
    lrs = [s["lr"] for s in state["history"]["steps"]]
    assert lrs[len(lrs) * 6 // 8] > 0


def test_resume_refuses_epochs_below_the_completed_ones(tmp_path):
    ok(
        train(
            tmp_path, *SMALL, "--epochs", "4", "--stop-after", "3", "--verbose", "0", "--out", "r"
        )
    )
    usage_error(train(tmp_path, "--resume", "r", "--epochs", "2"), "--epochs 2", "completed 3")


# -- 11.11: up-front checks ------------------------------------------------------------


def _files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    np.savez(tmp_path / "strings.npz", X=X, y=np.array(["cat", "dog"] * 50))
    np.savez(tmp_path / "nan.npz", X=np.full((100, 3), np.nan), y=np.arange(100) % 2)
    np.savez(tmp_path / "inf_y.npz", X=X, y=np.where(np.arange(100) == 5, np.inf, 1.5))
    np.savez(tmp_path / "complex.npz", X=X + 1j, y=np.arange(100) % 2)
    (tmp_path / "nan.csv").write_text("a,b,y\n" + "nan,1,0\n1,2,1\n" * 20)
    (tmp_path / "a_file").write_text("not a folder")


UP_FRONT = {
    "hidden nan": (["--hidden", "nan"], "--hidden"),
    "hidden inf": (["--hidden", "inf"], "--hidden"),
    "hidden 1e12": (["--hidden", "1e12"], "--hidden"),
    "hidden too many params": (["--hidden", "100000,100000"], "--hidden"),
    "patience -1": (["--patience", "-1"], "--patience"),
    "seed -1": (["--seed", "-1"], "--seed"),
    "warmup -1": (["--warmup", "-1"], "--warmup"),
    "stop-after 0": (["--stop-after", "0"], "--stop-after"),
    "string labels": (["--dataset", "strings.npz"], "real numbers"),
    "complex X": (["--dataset", "complex.npz"], "real numbers"),
    "all-NaN X": (["--dataset", "nan.npz"], "non-finite"),
    "inf label": (["--dataset", "inf_y.npz"], "non-finite"),
    "NaN in a csv": (["--dataset", "nan.csv"], "non-finite"),
    "out on a file": (["--out", "a_file"], "--out"),
    "out under a file": (["--out", "a_file/run"], "--out"),
}


@pytest.mark.parametrize("case", sorted(UP_FRONT))
def test_bad_flag_or_data_is_refused_before_training(tmp_path, case):
    _files(tmp_path)
    args, words = UP_FRONT[case]
    proc = train(tmp_path, *SMALL, "--epochs", "2", "--verbose", "1", *args)
    line = usage_error(proc, words)
    assert "--dataset" not in line or "--dataset" in args  # the flag at fault is named
    assert (tmp_path / "a_file").read_text() == "not a folder"
    assert not (tmp_path / "run").exists()


# -- 11.13: history.csv after a kill between its row and last.npz ------------------------


def test_resume_after_a_row_without_its_checkpoint_has_no_duplicate_rows(tmp_path):
    ok(
        train(
            tmp_path, *SMALL, "--epochs", "4", "--stop-after", "2", "--verbose", "0", "--out", "r"
        )
    )
    path = tmp_path / "r" / "history.csv"
    rows = path.read_text().splitlines()
    # As if killed after writing epoch 3's row, before writing epoch 3's last.npz.
    path.write_text("\n".join([*rows, "3" + rows[-1][1:]]) + "\n")
    assert epochs_of(tmp_path / "r") == [1, 2, 3]
    ok(train(tmp_path, "--resume", "r", "--verbose", "0"))
    assert epochs_of(tmp_path / "r") == [1, 2, 3, 4]


def test_resume_into_a_new_folder_writes_the_whole_history(tmp_path):
    ok(
        train(
            tmp_path, *SMALL, "--epochs", "4", "--stop-after", "2", "--verbose", "0", "--out", "r"
        )
    )
    ok(train(tmp_path, "--resume", "r", "--out", "r2", "--verbose", "0"))
    assert epochs_of(tmp_path / "r2") == [1, 2, 3, 4]
    assert epochs_of(tmp_path / "r") == [1, 2]
    with (tmp_path / "r" / "history.csv").open(newline="") as a:
        with (tmp_path / "r2" / "history.csv").open(newline="") as b:
            assert list(csv.DictReader(a)) == list(csv.DictReader(b))[:2]


def test_new_run_in_an_old_folder_starts_a_new_history(tmp_path):
    ok(train(tmp_path, *SMALL, "--epochs", "3", "--verbose", "0", "--out", "r"))
    ok(train(tmp_path, *SMALL, "--epochs", "2", "--verbose", "0", "--out", "r"))
    assert epochs_of(tmp_path / "r") == [1, 2]


# -- 12.3: progress in a log, and at 80 columns -----------------------------------------


def test_one_flushed_line_per_epoch_when_stderr_is_not_a_terminal(tmp_path):
    proc = ok(train(tmp_path, *SMALL, "--epochs", "3"))  # stderr is a pipe here
    lines = proc.stderr.splitlines()
    assert len(lines) == 3, proc.stderr
    for i, line in enumerate(lines, 1):
        assert re.match(rf"^epoch {i}/3 [\d.]+s loss=\d\.\d{{3}} acc=\d\.\d{{3}} ", line), line
        assert re.search(r" val_loss=\d\.\d{3} val_acc=\d\.\d{3} lr=", line), line
    assert "\r" not in proc.stderr
    assert ok(train(tmp_path, *SMALL, "--epochs", "2", "--verbose", "0")).stderr == ""


def _small_trainer(callbacks):
    import ferroptim as fo
    from ferroptim.train.models import mlp
    from ferroptim.train.trainer import Trainer

    model = mlp(4, hidden=(8,), n_outputs=3, seed=0)
    return Trainer(
        model, fo.AdamW(model.arena), metrics=["accuracy"], callbacks=callbacks, verbose=0
    )


def test_bar_shows_the_metrics_at_80_columns():
    pytest.importorskip("tqdm")
    from ferroptim.train.callbacks import ProgressBar

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 4)), rng.integers(0, 3, 200)
    out = io.StringIO()
    trainer = _small_trainer([ProgressBar(force=True, file=out, ncols=80)])
    trainer.fit(X, y, epochs=3, validation_data=(X[:50], y[:50]))
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.getvalue())  # cursor moves
    frames = [f for f in re.split(r"[\r\n]", text) if f.strip()]
    assert all(len(f.rstrip()) <= 80 for f in frames), max(frames, key=len)
    last = [f for f in frames if f.startswith("epoch 3/3")][-1]
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert re.search(rf"(^| ){key}=\d\.\d{{3}}( |$)", last.rstrip()), last


# -- 12.4, 12.5: the curves ------------------------------------------------------------


def _history(batch_sizes=(32, 32, 32)):
    from ferroptim.train.trainer import History

    h = History(["accuracy"])
    for i, size in enumerate(batch_sizes):
        h.epochs.append(
            {
                "epoch": i + 1,
                "loss": 1.0 / (i + 1),
                "accuracy": 0.5 + 0.1 * i,
                "val_loss": [0.9, 0.5, 0.7][i],
                "val_accuracy": 0.5 + 0.1 * i,
                "lr": 0.1,
                "batch_size": size,
                "time": 0.1,
            }
        )
        for k in range(4):
            h.steps.append({"step": 4 * i + k + 1, "loss": 1.0, "lr": 0.1 - 0.01 * k})
    return h


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_figure_title_best_epoch_epoch_axes_and_no_flat_batch_size_panel():
    pytest.importorskip("matplotlib")
    from ferroptim.train.plot import history_figure

    fig = history_figure(_history(), title="digits, MLP 64, AdamW lr 0.003: test accuracy 0.97")
    assert fig.get_suptitle() == "digits, MLP 64, AdamW lr 0.003: test accuracy 0.97"
    assert not any("batch size" in t for t in _titles(fig))  # constant: no panel
    assert len(fig.axes) == 3
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)  # lr included
    lr_ax = next(ax for ax in fig.axes if ax.get_title().startswith("learning rate"))
    xs = lr_ax.get_lines()[0].get_xdata()
    assert max(xs) == pytest.approx(3.0)  # 12 steps of a 3-epoch run end at epoch 3
    for ax in fig.axes:  # best epoch: the lowest val_loss, epoch 2
        marks = [line for line in ax.get_lines() if line.get_label().startswith("best epoch")]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2]

    varying = history_figure(_history((32, 64, 128)))
    assert "batch size" in _titles(varying) and len(varying.axes) == 4


def test_plot_history_takes_a_dict_of_lists(tmp_path):
    pytest.importorskip("matplotlib")
    from ferroptim.train.plot import history_figure, plot_history

    logs = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.7], "accuracy": [0.5, 0.7, 0.8]}
    path = plot_history(logs, tmp_path / "sub" / "c.png", title="keras")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = history_figure(logs)
    assert "accuracy" in _titles(fig)
    with pytest.raises(ValueError, match="loss"):
        history_figure({"val_loss": [1.0]})
    with pytest.raises(ValueError, match="accuracy"):
        history_figure({"loss": [1.0, 2.0], "accuracy": [0.5]})
    with pytest.raises(TypeError, match="loss"):
        history_figure({"loss": ["a"]})


def test_cli_curves_have_a_title_with_the_test_score(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from ferroptim.train import cli, plot

    figures = []
    real = plot.history_figure

    def spy(history, **kwargs):
        figures.append(real(history, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plot, "history_figure", spy)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*SMALL, "--epochs", "2", "--verbose", "0", "--out", "run"]) == 0
    title = figures[-1].get_suptitle()
    for word in ("synthetic-classification", "MLP 8", "AdamW", "cosine", "test accuracy 0."):
        assert word in title, title
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


# -- 12.7: --help ------------------------------------------------------------------------


def test_help_shows_defaults_and_no_rst():
    from ferroptim.train.cli import _HelpFormatter, build_parser

    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert "(default: 60)" in text and "(default: cosine)" in text
    assert "(default: 256,128)" in text
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            shown = _HelpFormatter("ferroptim train")._get_help_string(action)
            assert "default" in shown, action.option_strings
    # The resume rule is in the help.
    assert "--resume DIR continues" in text and "Only these may" in text

"""`ferroptim tune` under misuse and faults (issue 11 items 3, 7, 9, 10; issue 12
items 5, 6, 7): a study keeps its metric, the study ends with exactly --trials
finished trials across processes, a killed worker leaves usable outputs, bad
input fails in one line before any trial, small runs work with the default
space, and the plots and help read well."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="ferroptim tune needs optuna (the test extra)")
pytest.importorskip("sklearn", reason="the iris data set needs scikit-learn")

from optuna.trial import TrialState  # noqa: E402

from ferroptim.tune import TuneConfig, TuneError, check, load_space, run  # noqa: E402
from ferroptim.tune import main as tune_main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SPACE = {
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
    "hidden": {"type": "categorical", "choices": ["16"]},
}
CODE = "import json, sys; from ferroptim.tune import TuneConfig, run; "


def config(folder: Path, **overrides) -> TuneConfig:
    base = {
        "dataset": "iris",
        "epochs": 2,
        "trials": 2,
        "sampler": "random",
        "pruner": "none",
        "out": str(folder / "run"),
        "space": SPACE,
        "verbose": 0,
    }
    return TuneConfig(**{**base, **overrides})


def env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg"}


def finished(study) -> list:
    return study.get_trials(deepcopy=False, states=FINISHED)


def db_states(db: Path) -> list[str]:
    con = sqlite3.connect(db, timeout=10)
    try:
        return [r[0] for r in con.execute("SELECT state FROM trials ORDER BY number")]
    finally:
        con.close()


# --- 11.3: a study keeps its metric and direction ----------------------------------------


def test_a_study_refuses_another_metric(tmp_path, capsys):
    first = run(config(tmp_path))
    assert first.user_attrs["metric"] == "val_accuracy"
    for metric in ("val_loss", "val_r2"):  # other direction; same direction, other metric
        dataset = "iris" if metric == "val_loss" else "synthetic-regression"
        cfg = config(tmp_path, metric=metric, dataset=dataset, trials=4)
        with pytest.raises(TuneError, match="made for val_accuracy") as info:
            run(cfg)
        assert metric in str(info.value) and "--study" in str(info.value)
    study = optuna.load_study(study_name="ferroptim", storage=config(tmp_path).storage_url())
    assert len(study.trials) == 2  # nothing was added
    code = tune_main(
        ["--dataset", "iris", "--metric", "val_loss", "--out", str(tmp_path / "run")]
        + ["--trials", "4", "--epochs", "2", "--verbose", "0"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "val_loss (minimize)" in err[0], err


# --- 11.7: exactly --trials finished trials ----------------------------------------------


def test_trials_running_elsewhere_count_toward_the_total(tmp_path):
    # Two trials finished and one running in another process: a run asked for
    # 3 trials starts none (before: it started one more, ending with 4).
    cfg = config(tmp_path, trials=2)
    run(cfg)
    study = optuna.load_study(study_name="ferroptim", storage=cfg.storage_url())
    elsewhere = study.ask()
    elsewhere.set_user_attr("pid", -1)
    again = run(config(tmp_path, trials=3))
    assert [t.state for t in again.trials] == [*[TrialState.COMPLETE] * 2, TrialState.RUNNING]
    study.tell(elsewhere, 0.5)
    assert len(finished(study)) == 3


def test_the_gate_admits_one_of_two_racing_trials(tmp_path):
    from ferroptim.tune.study import SKIPPED, _gated, _Skip

    cfg = config(tmp_path, trials=1)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/gate.db", direction="maximize")
    first, second = study.ask(), study.ask()  # both passed the "fewer than 1" check
    specs = load_space(SPACE)
    with pytest.raises(_Skip):
        _gated(second, cfg, specs)
    assert 0 <= _gated(first, cfg, specs) <= 1  # the earlier number runs
    assert study.trials[1].user_attrs[SKIPPED] is True


def start_together(folder: Path, cfg: TuneConfig, n: int) -> list[subprocess.Popen]:
    """``n`` processes calling run(cfg), released at once when all have imported."""
    go, ready = folder / "go", folder / "ready"
    ready.mkdir()
    code = "import json, os, sys, time, optuna; from ferroptim.tune import TuneConfig, run\n"
    code += "open(os.path.join(sys.argv[3], str(os.getpid())), 'w').close()\n"
    code += "while not os.path.exists(sys.argv[2]): time.sleep(0.01)\n"
    code += "run(TuneConfig(**json.loads(sys.argv[1])))"
    args = [sys.executable, "-c", code, json.dumps(cfg.__dict__), str(go), str(ready)]
    procs = [subprocess.Popen(args, env=env(), stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + 120
    while len(list(ready.iterdir())) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    return procs


def test_two_overlapping_invocations_end_with_exactly_n(tmp_path):
    # Two processes on one SQLite study, started together (both wait for a
    # file): before, each ran up to 6 trials and the study ended with 11 or 12.
    cfg = config(tmp_path, trials=6, dataset="synthetic-classification")
    run(config(tmp_path, trials=1, dataset="synthetic-classification"))  # the study exists
    procs = start_together(tmp_path, cfg, 2)
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    states = db_states(tmp_path / "run" / "study.db")
    assert states.count("COMPLETE") + states.count("PRUNED") == 6, states
    assert "RUNNING" not in states and "WAITING" not in states
    with (tmp_path / "run" / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows].count("COMPLETE") == 6


# --- 11.9: a killed worker ---------------------------------------------------------------


def _running_in_worker(db: Path, parent: int) -> tuple[int, int] | None:
    """(trial number, worker pid) of a trial training in a worker, else None."""
    if not db.exists():
        return None
    con = sqlite3.connect(db, timeout=5)
    try:
        row = con.execute(
            "SELECT t.number, a.value_json FROM trials t"
            " JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'pid'"
            " JOIN trial_intermediate_values v ON v.trial_id = t.trial_id"
            " WHERE t.state = 'RUNNING'"
        ).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    finally:
        con.close()
    if row is None or int(row[1]) == parent:
        return None
    return row[0], int(row[1])


def test_a_killed_worker_leaves_outputs_and_no_running_trial(tmp_path):
    out = tmp_path / "run"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    parent = subprocess.Popen(
        [sys.executable, "-m", "ferroptim", "tune", "--dataset", "synthetic-classification"]
        + ["--epochs", "60", "--trials", "4", "--workers", "2", "--sampler", "random"]
        + ["--pruner", "none", "--space", str(space), "--out", str(out), "--verbose", "0"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
            victim = _running_in_worker(out / "study.db", parent.pid)
        assert victim is not None, parent.communicate(timeout=120)
        os.kill(victim[1], signal.SIGKILL)
        stdout, stderr = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 1, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ferroptim tune: error: worker ")
    assert f"(pid {victim[1]}) was killed by SIGKILL" in last
    assert f"its trial {victim[0]} is marked FAIL" in last
    assert "run the same command again" in last
    states = db_states(out / "study.db")
    assert states[victim[0]] == "FAIL" and "RUNNING" not in states, states
    with (out / "trials.csv").open() as f:
        rows = {int(r["number"]): r for r in csv.DictReader(f)}
    assert rows[victim[0]]["state"] == "FAIL"
    assert "killed by SIGKILL" in rows[victim[0]]["error"]
    assert sum(r["state"] == "COMPLETE" for r in rows.values()) >= 1
    assert json.loads((out / "best.json").read_text())["metric"] == "val_accuracy"


def test_a_dead_trial_in_the_last_slot_is_failed_and_rerun(tmp_path):
    # Two trials finished and one left RUNNING by a process that died (its
    # heartbeat stopped). Running trials count toward --trials (11.7), but a
    # dead one must not: it is failed, re-queued and run again here.
    run(config(tmp_path, trials=2, heartbeat=1, grace=1))
    cfg = config(tmp_path, trials=3, heartbeat=1, grace=1)
    study = optuna.load_study(study_name="ferroptim", storage=cfg.storage_url())
    dead = study.ask()
    dead.suggest_categorical("optimizer", ["adam", "sgd"])
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # past the grace period (heartbeats are stored to the second)
    again = run(cfg)
    states = {t.number: t.state for t in again.trials}
    assert states[dead.number] == TrialState.FAIL, states
    assert len(finished(again)) == 3
    assert TrialState.RUNNING not in states.values()


# --- 11.10: up-front checks --------------------------------------------------------------


def _bad_space(**entry) -> dict:
    return {**SPACE, **entry}


@pytest.mark.parametrize(
    ("args", "space", "message"),
    [
        (["--metric", "val_r2"], None, "--metric: iris is a classification task"),
        (
            [],
            _bad_space(lr={"type": "float", "low": -0.1, "high": 0.1}),
            "space: 'lr' must be > 0, got low -0.1",
        ),
        (
            [],
            _bad_space(dropout={"type": "float", "low": 0.0, "high": 2.0}),
            "space: 'dropout' must be in [0, 1), got high 2.0",
        ),
        (
            [],
            _bad_space(hidden={"type": "categorical", "choices": ["16", "x"]}),
            "space: 'hidden' choices are layer widths",
        ),
        (
            [],
            _bad_space(activation={"type": "categorical", "choices": ["relu", "gelu"]}),
            "space: unknown activation 'gelu'",
        ),
        (
            [],
            _bad_space(batch_size={"type": "categorical", "choices": [16, 0]}),
            "space: 'batch_size' must be >= 1, got choice 0",
        ),
        (
            [],
            _bad_space(momentum={"type": "categorical", "choices": [0.9, "fast"]}),
            "space: 'momentum' takes numbers, got choice 'fast'",
        ),
        (
            ["--storage", "sqlite:///:memory:", "--workers", "2"],
            None,
            "--storage: 'sqlite:///:memory:' is private to one connection",
        ),
        (["--storage", "sqlite://"], None, "--storage: 'sqlite://' is private to one connection"),
        (["--seed", "-1"], None, "--seed must be >= 0, got -1"),
        (
            [],
            _bad_space(hidden={"type": "categorical", "choices": ["16", "1e3"]}),
            "space: hidden '1e3' with adam: --hidden: widths must be whole numbers",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_before_any_trial(tmp_path, capsys, args, space, message):
    out = tmp_path / "run"
    flags = ["--dataset", "iris", "--epochs", "2", "--trials", "2", "--out", str(out)]
    (tmp_path / "space.json").write_text(json.dumps(SPACE if space is None else space))
    flags += ["--space", str(tmp_path / "space.json")]
    code = tune_main([*flags, "--verbose", "0", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("ferroptim tune: error: "), err
    assert message in err[0]
    assert not out.exists()  # nothing created, no trial ran


def test_out_on_a_file_or_under_one_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, message in (
        (blocker, f"--out: {blocker} exists and is not a folder"),
        (blocker / "sub", f"--out: cannot create {blocker}/sub: {blocker} is not a folder"),
    ):
        with pytest.raises(TuneError) as info:
            check(config(tmp_path, out=str(out)))
        assert str(info.value) == message
        code = tune_main(["--dataset", "iris", "--out", str(out), "--verbose", "0"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [f"ferroptim tune: error: {message}"]
    assert blocker.read_text() == "not a folder"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(TuneError, match="--out: cannot write in"):
            check(config(tmp_path, out=str(locked / "run")))


def test_train_command_is_shell_quoted(tmp_path):
    # A data file in a folder whose name has a space and a quote.
    folder = tmp_path / "my 'data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    np.savez(folder / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    cfg = config(tmp_path, dataset=str(folder / "d.npz"))
    run(cfg)
    best = json.loads((Path(cfg.out) / "best.json").read_text())
    argv = shlex.split(best["train_command"])
    assert argv[:2] == ["ferroptim", "train"]
    assert argv[argv.index("--dataset") + 1] == str(folder / "d.npz")
    from ferroptim.train.cli import build_parser

    args = build_parser().parse_args(argv[2:])
    assert args.lr == pytest.approx(best["params"]["lr"])


# --- 12.5, 12.6, 12.7: small runs, plots, help ---------------------------------------------


@pytest.fixture(scope="module")
def default_study(tmp_path_factory):
    """The default space on 2 epochs of iris (2 optimizer steps at batch size 128)."""
    folder = tmp_path_factory.mktemp("default-space")
    cfg = TuneConfig(
        dataset="iris",
        epochs=2,
        trials=6,
        sampler="random",
        pruner="none",
        out=str(folder / "run"),
        verbose=0,
    )
    return run(cfg), cfg


def test_the_default_space_fits_any_epoch_count(tmp_path, default_study):
    study, _ = default_study
    assert len(finished(study)) == 6
    for dataset, epochs in (("iris", 1), ("iris", 5), ("digits", 5), ("digits", 15)):
        cfg = TuneConfig(dataset=dataset, epochs=epochs, out=str(tmp_path / "run"))
        specs = check(cfg)
        n_train = 102 if dataset == "iris" else 1259
        steps = epochs * -(-n_train // 128)
        if "warmup" in specs:
            assert 1 <= specs["warmup"].high <= min(50, steps // 5), (dataset, epochs)
            assert max(specs["warmup"].grid) == specs["warmup"].high
        else:
            assert steps // 5 < 1, (dataset, epochs)
    assert not (tmp_path / "run").exists()


def test_grid_search_works_on_the_default_space(tmp_path):
    cfg = TuneConfig(dataset="iris", epochs=2, trials=3, sampler="grid", out=str(tmp_path))
    cfg.pruner, cfg.verbose = "none", 0
    specs = check(cfg)
    study = run(cfg)
    assert len(finished(study)) == 3
    for t in study.trials:
        for name, value in t.params.items():
            assert value in specs[name].grid_values(), (name, value)


def test_grid_search_stops_when_the_grid_is_done(tmp_path):
    # Two grid points and --trials 5: two trials, not three repeats.
    space = {**SPACE, "lr": {"type": "float", "low": 1e-3, "high": 0.1, "grid": [0.01]}}
    study = run(config(tmp_path, sampler="grid", space=space, trials=5))
    assert sorted(t.params["optimizer"] for t in study.trials) == ["adam", "sgd"]


def _label_boxes(fig) -> list:
    """(text, window extent) of every tick label drawn, major and minor."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                if not low - 1e-12 <= tick.get_loc() <= high + 1e-12:
                    continue
                for label in (tick.label1, tick.label2):
                    if label.get_visible() and label.get_text():
                        boxes.append((label.get_text(), label.get_window_extent(renderer)))
    return boxes


def test_plots_name_the_metric_and_their_labels_do_not_overlap(default_study):
    import matplotlib
    from matplotlib.text import Text

    from ferroptim.tune import figures

    study, cfg = default_study
    style = dict(matplotlib.rcParams)
    figs = dict(figures(study, cfg))
    assert set(figs) == {"history.png", "parallel_coordinate.png", "importances.png"}
    assert dict(matplotlib.rcParams) == style  # Optuna's style did not leak out
    assert figs["history.png"].axes[0].get_ylabel() == "val_accuracy"
    parallel = figs["parallel_coordinate.png"]
    names = [t.get_text() for t in parallel.axes[0].get_xticklabels()]
    assert names[0] == "val_accuracy" and len(names) >= 8  # every hyperparameter
    assert "val_accuracy" in [ax.get_ylabel() for ax in parallel.axes]  # the colour bar
    for name, fig in figs.items():
        texts = [t.get_text() for t in fig.findobj(Text)]
        assert not any("Objective Value" in t for t in texts), name
        assert any("val_accuracy" in t for t in texts), name
        boxes = _label_boxes(fig)
        clashes = [
            (a, b)
            for i, (a, box) in enumerate(boxes)
            for b, other in boxes[i + 1 :]
            if box.overlaps(other)
        ]
        assert not clashes, (name, clashes)


def test_a_small_cli_run_prints_best_then_retrains_and_no_warnings(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ferroptim", "tune", "--dataset", "iris", "--trials", "3"]
        + ["--epochs", "2", "--retrain-best", "--verbose", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in env().items() if k != "PYTHONWARNINGS"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no Optuna or matplotlib warnings
    lines = proc.stdout.splitlines()
    best = [i for i, line in enumerate(lines) if line.startswith("best val_accuracy: ")]
    test = [i for i, line in enumerate(lines) if line.startswith("test accuracy: ")]
    assert best and test and best[0] < test[0], lines
    assert (out / "best-model" / "last.npz").is_file()


def test_help_shows_defaults_and_no_rst(capsys):
    from ferroptim.tune import build_parser

    text = build_parser().format_help()
    for default in ("(default: 40)", "(default: tpe)", "(default: median)", "(default: 15)"):
        assert default in text, default
    for raw in ("``", ".. ", ":func:", ":data:", "(default: None)"):
        assert raw not in text, raw
    with pytest.raises(SystemExit) as info:
        tune_main(["--help"])
    assert info.value.code == 0
    assert "(default: val_accuracy)" in capsys.readouterr().out

"""The outputs of a run: best.json, trials.csv and the plots."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ferroptim.tune.config import TuneConfig
from ferroptim.tune.space import train_argv

__all__ = ["figures", "train_command", "write_outputs"]


def train_command(params: dict[str, Any], cfg: TuneConfig) -> str:
    """The shell command that retrains ``params`` (quoted: paste it as is)."""
    return shlex.join(["ferroptim", "train", *train_argv(params, cfg)])


def _ran(study: Any) -> list[Any]:
    """The trials, less those skipped because the study had reached --trials."""
    from ferroptim.tune.study import SKIPPED

    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SKIPPED)]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (where the OS has one) while writing outputs."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; each file is still replaced whole
        yield
        return
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(study: Any, out: Path, cfg: TuneConfig) -> None:
    """Writes best.json (when a trial completed), trials.csv and the plots into ``out``."""
    # Invocations sharing a study and a folder end at different times: under
    # the lock each reads the study afresh, so the last to write has the
    # newest view, and no reader sees a half-written file.
    with _locked(out / ".tune.lock"):
        _write_outputs(study, out, cfg)


def _write_outputs(study: Any, out: Path, cfg: TuneConfig) -> None:
    from optuna.trial import TrialState

    trials = _ran(study)
    names = sorted({k for t in trials for k in t.params})
    with io.StringIO(newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "value", "duration_s", *names, "error"])
        for t in trials:
            dur = (
                (t.datetime_complete - t.datetime_start).total_seconds()
                if (t.datetime_complete and t.datetime_start)
                else ""
            )
            row = [t.number, t.state.name, t.value, dur, *[t.params.get(n, "") for n in names]]
            w.writerow([*row, t.user_attrs.get("error", "")])
        _replace(out / "trials.csv", f.getvalue())
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return
    best = study.best_trial
    summary = {
        "value": best.value,
        "metric": cfg.metric,
        "params": best.params,
        "trial": best.number,
        "train_command": train_command(best.params, cfg),
    }
    _replace(out / "best.json", json.dumps(summary, indent=2))
    import matplotlib.pyplot as plt

    for filename, fig in figures(study, cfg):
        fig.savefig(out / filename, dpi=100)
        plt.close(fig)


def figures(study: Any, cfg: TuneConfig) -> list[tuple[str, Any]]:
    """The plots as (file name, matplotlib Figure), the metric named on their axes."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed; an already chosen backend stays
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = {k for t in complete for k in t.params}
    plots = [
        ("history.png", vis.plot_optimization_history),
        ("parallel_coordinate.png", vis.plot_parallel_coordinate),
    ]
    if len(complete) >= 2 and len(names) >= 2:
        plots.append(("importances.png", vis.plot_param_importances))
    made = []
    for filename, fn in plots:
        try:
            # Optuna's and matplotlib's remarks (experimental API, few trials,
            # a constant axis) are not the user's business here.
            # rc_context: Optuna switches matplotlib to its style for good.
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")
                ax = fn(study, target_name=cfg.metric)
                fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                if filename == "parallel_coordinate.png":
                    _spread_parallel(fig, ax, len(names))
                else:
                    fig.set_size_inches(10, 6)
                ax.set_title(f"{ax.get_title().strip()}: {cfg.metric} on {cfg.dataset}")
                fig.tight_layout()
        except (ValueError, RuntimeError) as err:  # e.g. importances with constant values
            print(f"ferroptim tune: skipped {filename}: {err}", file=sys.stderr)
            continue
        made.append((filename, fig))
    return made


def _spread_parallel(fig: Any, ax: Any, n_params: int) -> None:
    """Room for every axis of a parallel-coordinate plot: width per axis, small
    slanted names, and few ticks, so neighbouring labels do not overlap."""
    from matplotlib.ticker import (
        FixedLocator,
        LogFormatterSciNotation,
        LogLocator,
        MaxNLocator,
        NullFormatter,
    )

    fig.set_size_inches(max(10.0, 1.4 * (n_params + 1) + 2), 6)
    for label in ax.get_xticklabels():
        label.set_rotation(25)
        label.set_horizontalalignment("right")
        label.set_fontsize(9)
    for other in fig.axes:
        if other is ax or other.get_label() == "<colorbar>":
            continue
        if isinstance(other.yaxis.get_major_locator(), FixedLocator):
            pass  # categorical: Optuna placed one tick per choice
        elif other.get_yscale() == "log":
            low, high = other.get_ylim()
            subs = (1.0,) if math.log10(high / low) > 3 else (1.0, 3.0)
            other.yaxis.set_major_locator(LogLocator(subs=subs))
            other.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
            other.yaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks crowd
        else:
            other.yaxis.set_major_locator(MaxNLocator(4))
        other.tick_params(axis="y", which="both", labelsize=8)
    ax.tick_params(axis="y", labelsize=8)

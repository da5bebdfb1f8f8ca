"""The ``ferroptim tune`` command line."""

from __future__ import annotations

import argparse
import sys

from ferroptim.tune.config import PRUNERS, SAMPLERS, TuneConfig, TuneError, WorkerError

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "Hyperparameter search on Optuna over ferroptim train. Trials are ferroptim train "
    "runs whose validation metric is reported after every epoch (so pruners can stop bad "
    "ones early). The run folder gets best.json (with the train command of the best "
    "trial), trials.csv and plots."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump (exit code 2)
        from ferroptim.train.build import UsageError

        raise UsageError(message)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default; says nothing for flags without one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ferroptim tune", description=DESCRIPTION, formatter_class=_Formatter)
    d = TuneConfig()
    p.add_argument("--dataset", default=d.dataset, help="as for ferroptim train")
    p.add_argument(
        "--trials",
        type=int,
        default=d.trials,
        help="finished trials the study ends with (over all workers and invocations)",
    )
    p.add_argument("--sampler", default=d.sampler, help=" | ".join(SAMPLERS))
    p.add_argument("--pruner", default=d.pruner, help=" | ".join(PRUNERS))
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes")
    p.add_argument("--out", default=d.out, help="run folder")
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL (default: sqlite file OUT/study.db)"
    )
    p.add_argument("--study", default=d.study, help="study name in the storage")
    p.add_argument(
        "--space",
        default=None,
        help="search space file (.json, .yaml; default: ferroptim.tune.DEFAULT_SPACE)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per trial")
    p.add_argument("--seed", type=int, default=d.seed, help="data split, init and sampler seed")
    p.add_argument(
        "--metric",
        default=d.metric,
        help="val_accuracy | val_r2 (maximized) | val_loss (minimized)",
    )
    p.add_argument(
        "--retrain-best",
        action="store_true",
        help="retrain the best configuration into OUT/best-model",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=d.heartbeat,
        help="seconds between a running trial's heartbeats",
    )
    p.add_argument(
        "--grace",
        type=int,
        default=d.grace,
        help="seconds without a heartbeat after which a trial counts as dead and is re-run",
    )
    p.add_argument("--verbose", type=int, default=d.verbose, help="0: quiet, 1: progress bar")
    return p


def retrain(study, cfg: TuneConfig) -> None:
    """Trains the best configuration again, into OUT/best-model (resumable with
    ``ferroptim train --resume``: its command line is kept in the checkpoints)."""
    from dataclasses import replace
    from pathlib import Path

    from ferroptim.train.build import UsageError
    from ferroptim.train.cli import train
    from ferroptim.tune.space import train_argv, train_config

    out = str(Path(cfg.out) / "best-model")
    config = replace(train_config(study.best_params, cfg), out=out, verbose=cfg.verbose)
    argv = train_argv(study.best_params, cfg)
    argv[argv.index("--verbose") + 1] = str(cfg.verbose)
    try:
        train(config, {"argv": [*argv, "--out", out], "epochs": config.epochs})
    except UsageError as err:
        print(f"ferroptim tune: error: retraining the best trial: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs ``ferroptim tune``; the exit status (2: bad input, 1: no result or a dead worker)."""
    from ferroptim.train.build import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = build_parser().parse_args(argv)
        cfg = TuneConfig(**{k: v for k, v in vars(a).items()})
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise TuneError("ferroptim tune needs Optuna: pip install 'ferroptim[tune]'") from None
        from ferroptim.tune.report import _ran
        from ferroptim.tune.study import search

        study = search(cfg)
    except (UsageError, TuneError) as err:
        print(f"ferroptim tune: error: {err}", file=sys.stderr)
        return 2
    except WorkerError as err:
        print(f"ferroptim tune: error: {err}", file=sys.stderr)
        return 1
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in _ran(study)):
        print(
            f"ferroptim tune: no trial completed (all pruned or failed); see {cfg.out}/trials.csv",
            file=sys.stderr,
        )
        return 1
    best = study.best_trial
    print(f"best {cfg.metric}: {best.value:.4f} (trial {best.number}) with {best.params}")
    print(f"wrote {cfg.out}/best.json, trials.csv and plots")
    sys.stdout.flush()  # before the retraining's own output
    if cfg.retrain_best:
        retrain(study, cfg)
    return 0

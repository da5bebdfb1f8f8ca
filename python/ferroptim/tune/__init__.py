"""`ferroptim tune`: hyperparameter search on Optuna over the trainer.

Optuna is the engine: its samplers (grid, random, TPE, GP, CMA-ES), its
pruners (median, successive halving, Hyperband) fed once per epoch, and its
storages. Workers are processes that share one study through storage: a
SQLite file in the run folder by default, or any Optuna storage URL (for
example postgresql://user@host/db) to spread workers over machines. The
study ends with exactly ``trials`` finished (complete or pruned) trials, also
when several invocations work on it at once. A trial whose worker dies is
marked failed: by the parent at once, or by Optuna's heartbeat check (which
also re-queues it) when the whole invocation died.

A search space is a dict (or a JSON / YAML file) name -> spec, for example::

    {"optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
     "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": true,
            "grid": [1e-3, 1e-2]},
     "momentum": {"type": "float", "low": 0.5, "high": 0.99},
     "hidden": {"type": "categorical", "choices": ["64", "128,64"]}}

Names are the trainer's settings (optimizer, batch_size, schedule, warmup,
hidden, dropout, activation, max_grad_norm) and the numeric hyperparameters of
the optimizers in :mod:`ferroptim.registry` (lr, weight_decay, momentum, beta1
and beta2 for betas, eps, alpha, rho, ...; the full list: ``PARAMS``). A
hyperparameter the sampled optimizer does not take (momentum for Adam) is not
sampled in that trial. Each trial is a :class:`ferroptim.train.TrainConfig`
built by :func:`ferroptim.train.build_trainer`, as ``ferroptim train`` builds. "grid" (or "step")
gives a range the values the grid sampler tries. A study remembers its
metric: reusing it for another metric or direction is refused.
"""

from ferroptim.tune.cli import build_parser, main
from ferroptim.tune.config import (
    METRICS,
    PRUNERS,
    SAMPLERS,
    TuneConfig,
    TuneError,
    WorkerError,
    check,
)
from ferroptim.tune.report import figures, train_command, write_outputs
from ferroptim.tune.space import (
    DEFAULT_SPACE,
    PARAMS,
    Spec,
    load_space,
    suggest,
    train_argv,
    train_config,
)
from ferroptim.tune.study import make_pruner, make_sampler, make_storage, objective, search

__all__ = [
    "DEFAULT_SPACE",
    "METRICS",
    "PARAMS",
    "PRUNERS",
    "SAMPLERS",
    "Spec",
    "TuneConfig",
    "TuneError",
    "WorkerError",
    "build_parser",
    "check",
    "figures",
    "load_space",
    "main",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "objective",
    "run",
    "search",
    "suggest",
    "train_argv",
    "train_command",
    "train_config",
    "write_outputs",
]


def run(cfg: TuneConfig):
    """Runs the study to ``cfg.trials`` finished trials, writes the outputs and,
    with ``cfg.retrain_best``, retrains the best configuration.

    Parameters
    ----------
    cfg : TuneConfig
        The run's settings; everything is checked before anything is created.

    Returns
    -------
    optuna.Study
        The study (see :func:`search` for the errors).
    """
    from optuna.trial import TrialState

    from ferroptim.tune.cli import retrain

    study = search(cfg)
    if cfg.retrain_best and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        retrain(study, cfg)
    return study

"""Running a study: storage, sampler, pruner, the trial loop of each worker, and
the parent that starts the workers and survives their deaths."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ferroptim.tune.config import SAMPLERS, TuneConfig, TuneError, WorkerError, check
from ferroptim.tune.space import Spec, load_space, suggest, train_config

__all__ = ["make_pruner", "make_sampler", "make_storage", "objective", "open_study", "search"]

SKIPPED = "skipped"  # user attr of a trial that found --trials already reached


class _Skip(Exception):
    """This trial came after the study reached --trials: it is not run."""


@contextmanager
def quiet() -> Iterator[None]:
    """Optuna's logging and warnings stay out of the user's terminal: its
    experimental-API notices and remarks about small studies say nothing the
    user can act on, and a failed trial is reported by us in one line."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", module=r"optuna(\.|$)")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def make_storage(cfg: TuneConfig) -> Any:
    """Optuna's RDB storage with heartbeats; fails here, before any trial, if unreachable."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    url = cfg.storage_url()
    try:
        if url.startswith("sqlite:///") and ":memory:" not in url:
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        with quiet():
            return RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                heartbeat_interval=cfg.heartbeat,
                grace_period=cfg.grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except Exception as err:  # sqlalchemy's errors differ per driver
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TuneError(f"--storage: cannot open {url!r}: {msg}") from None


def make_sampler(cfg: TuneConfig, specs: dict[str, Spec]) -> Any:
    import optuna

    s = optuna.samplers
    with quiet():
        if cfg.sampler == "tpe":
            return s.TPESampler(seed=cfg.seed, n_startup_trials=min(10, max(cfg.trials // 4, 1)))
        if cfg.sampler == "random":
            return s.RandomSampler(seed=cfg.seed)
        if cfg.sampler == "grid":
            grid = {n: spec.grid_values() for n, spec in specs.items()}
            return s.GridSampler(grid, seed=cfg.seed)
        if cfg.sampler == "gp":
            return s.GPSampler(seed=cfg.seed)
        if cfg.sampler == "cmaes":
            return s.CmaEsSampler(seed=cfg.seed, warn_independent_sampling=False)
    raise TuneError(f"--sampler: unknown {cfg.sampler!r}; choose from {', '.join(SAMPLERS)}")


def make_pruner(cfg: TuneConfig) -> Any:
    import optuna

    p = optuna.pruners
    return {
        "median": lambda: p.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        "halving": lambda: p.SuccessiveHalvingPruner(),
        "hyperband": lambda: p.HyperbandPruner(min_resource=1, max_resource=cfg.epochs),
        "none": lambda: p.NopPruner(),
    }[cfg.pruner]()


def open_study(cfg: TuneConfig, specs: dict[str, Spec], storage: Any, seed: int) -> Any:
    """Creates or loads the study; refuses one made for another metric or direction."""
    import optuna

    sampler_cfg = TuneConfig(**{**asdict(cfg), "seed": seed})
    with quiet():
        study = optuna.create_study(
            study_name=cfg.study,
            storage=storage,
            direction=cfg.direction,
            sampler=make_sampler(sampler_cfg, specs),
            pruner=make_pruner(cfg),
            load_if_exists=True,
        )
    metric = study.user_attrs.get("metric")
    direction = study.direction.name.lower()
    if (metric is not None and metric != cfg.metric) or direction != cfg.direction:
        raise TuneError(
            f"--metric: study {cfg.study!r} in {cfg.storage_url()} was made for "
            f"{metric or 'another metric'} ({direction}), not {cfg.metric} ({cfg.direction}); "
            "give another --study or --out"
        )
    if metric is None:
        study.set_user_attr("metric", cfg.metric)
    return study


def objective(trial: Any, cfg: TuneConfig, specs: dict[str, Spec]) -> float:
    """Trains one sampled configuration; its best validation metric (reported each epoch)."""
    import optuna

    from ferroptim.train.build import UsageError, build_trainer
    from ferroptim.train.callbacks import Callback

    metric = cfg.metric
    best = [math.inf if cfg.direction == "minimize" else -math.inf]

    class Report(Callback):
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
            value = logs[metric]
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"{metric} is {value}")
            better = value < best[0] if cfg.direction == "minimize" else value > best[0]
            best[0] = value if better else best[0]
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")

    params = suggest(trial, specs)
    try:
        trainer, data = build_trainer(train_config(params, cfg), [Report()])
    except UsageError as err:  # fails this trial, not the study
        raise TuneError(f"trial {trial.number}: {err}") from None
    trainer.fit(
        data.X_train, data.y_train, epochs=cfg.epochs, validation_data=(data.X_val, data.y_val)
    )
    return best[0]


def _states() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.RUNNING, TrialState.WAITING)


def _taken(study: Any, before: int | None = None) -> int:
    """Finished trials, plus running ones (numbered below ``before``, if given)."""
    from optuna.trial import TrialState

    finished, active = _states()
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in finished:
            n += 1
        elif before is None and t.state == TrialState.RUNNING:
            n += 1
        elif before is not None and t.state in active and t.number < before:
            n += 1
    return n


def _gated(trial: Any, cfg: TuneConfig, specs: dict[str, Spec]) -> float:
    # Optuna's RDB storage numbers trials under a lock on the study row (one
    # order, each committed before the next is made, in every process), so
    # "run only if fewer than --trials finished or lower-numbered live trials"
    # lets exactly one of two racing workers take the last slot.
    trial.set_user_attr("pid", os.getpid())
    if _taken(trial.study, before=trial.number) >= cfg.trials:
        trial.set_user_attr(SKIPPED, True)
        raise _Skip
    try:
        return objective(trial, cfg, specs)
    except (ValueError, FloatingPointError) as err:  # kept for trials.csv and the log
        trial.set_user_attr("error", str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise


def run_trials(study: Any, cfg: TuneConfig, specs: dict[str, Spec], quota: int, tick=None) -> None:
    """One worker's loop: up to ``quota`` trials while the study has fewer than --trials."""
    import optuna

    for _ in range(quota):
        # Fail (and re-queue) the trials of dead workers first: left RUNNING,
        # they would count toward --trials and end the loop short.
        with quiet():
            optuna.storages.fail_stale_trials(study)
        if _taken(study) >= cfg.trials:
            return
        before = {t.number for t in study.get_trials(deepcopy=False)}
        try:
            with quiet():
                study.optimize(
                    lambda t: _gated(t, cfg, specs),
                    n_trials=1,
                    catch=(ValueError, FloatingPointError),
                )
        except _Skip:
            return
        if cfg.verbose:
            _report_failures(study, before)
        if tick is not None:
            tick()
        # GridSampler asks to stop once every grid point is taken.
        if getattr(study, "_stop_flag", False):
            return


def _report_failures(study: Any, before: set[int]) -> None:
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number not in before and t.user_attrs.get("pid") == os.getpid():
            why = t.user_attrs.get("error", "")
            print(f"ferroptim tune: trial {t.number} failed: {why}", file=sys.stderr)


def _worker(cfg_dict: dict[str, Any], quota: int, index: int = 0) -> None:
    cfg = TuneConfig(**cfg_dict)
    specs = load_space(cfg.space)
    # Same seed in every worker would sample the same configurations twice.
    study = open_study(cfg, specs, make_storage(cfg), cfg.seed + index)
    run_trials(study, cfg, specs, quota)


def _progress(cfg: TuneConfig, total: int):
    if not cfg.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)


def _death(index: int, proc: Any) -> str:
    code = proc.exitcode
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return f"worker {index + 1} (pid {proc.pid}) {how}"


def _fail_orphans(study: Any, pid: int, why: str) -> list[int]:
    """Marks FAIL the trials a dead worker left RUNNING; their numbers."""
    import optuna
    from optuna.trial import TrialState

    lost = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("pid") == pid:
            trial = optuna.trial.Trial(study, t._trial_id)
            try:
                trial.set_user_attr("error", why)
                with quiet():
                    study.tell(trial, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # finished meanwhile (the heartbeat check)
                continue
            lost.append(t.number)
    return lost


def _spawn(study: Any, cfg: TuneConfig, shares: list[int], bar: Any, seen: int) -> list[str]:
    """Runs the workers as processes; what went wrong with any of them."""
    finished, _ = _states()
    ctx = mp.get_context("spawn")
    procs = [
        (i, ctx.Process(target=_worker, args=(asdict(cfg), n, i)))
        for i, n in enumerate(shares)
        if n > 0
    ]
    for _, p in procs:
        p.start()
    deaths: list[str] = []
    handled: set[int] = set()
    try:
        while procs and len(handled) < len(procs):
            time.sleep(0.5)
            for i, p in procs:
                if p.pid in handled or p.exitcode is None:
                    continue
                handled.add(p.pid)
                if p.exitcode != 0:
                    why = _death(i, p)
                    lost = _fail_orphans(study, p.pid, why)
                    if lost:
                        why += f"; its trial {', '.join(map(str, lost))} is marked FAIL"
                    deaths.append(why)
            now = len(study.get_trials(deepcopy=False, states=finished))
            if bar is not None and now > seen:
                bar.update(now - seen)
            seen = now
    finally:
        for _, p in procs:  # an interrupted parent takes its workers down with it
            if p.exitcode is None:
                p.terminate()
            p.join()
            if p.pid not in handled:
                _fail_orphans(study, p.pid, "its parent was interrupted")
    return deaths


def search(cfg: TuneConfig) -> Any:
    """Runs the study to ``cfg.trials`` finished trials and writes the outputs.

    Parameters
    ----------
    cfg : TuneConfig
        The run's settings; everything is checked before anything is created.

    Returns
    -------
    optuna.Study
        The study. Raises :class:`TuneError` on bad input (before any trial) and
        :class:`WorkerError` after the outputs are written if a worker died.
    """
    from ferroptim.tune.report import write_outputs

    specs = check(cfg)
    out = Path(cfg.out)
    storage = make_storage(cfg)  # first: an unreachable server leaves no folder behind
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TuneError(f"--out: cannot create {out}: {err.strerror}") from None
    # The workers search the checked space (the default one is cut to the run).
    cfg = TuneConfig(**{**asdict(cfg), "space": {n: s.raw() for n, s in specs.items()}})
    study = open_study(cfg, specs, storage, cfg.seed)
    finished, _ = _states()
    already = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(cfg.trials - already, 0)
    # Each worker gets its share; the gate in _gated keeps the total exact
    # when other invocations work on the same study.
    shares = [remaining // cfg.workers + (i < remaining % cfg.workers) for i in range(cfg.workers)]
    bar = _progress(cfg, cfg.trials)
    if bar is not None:
        bar.update(min(already, cfg.trials))
    deaths: list[str] = []
    try:
        if cfg.workers == 1:
            seen = [already]

            def tick() -> None:
                now = len(study.get_trials(deepcopy=False, states=finished))
                if bar is not None and now > seen[0]:
                    bar.update(now - seen[0])
                seen[0] = now

            run_trials(study, cfg, specs, shares[0], tick)
        else:
            deaths = _spawn(study, cfg, shares, bar, already)
    finally:
        if bar is not None:
            bar.close()
    write_outputs(study, out, cfg)
    if deaths:
        done = len(study.get_trials(deepcopy=False, states=finished))
        wrote = "trials.csv and best.json" if (out / "best.json").is_file() else "trials.csv"
        raise WorkerError(
            f"{'; '.join(deaths)}; {done} of {cfg.trials} trials finished; wrote {out}/{wrote}; "
            "run the same command again to finish the study"
        )
    return study

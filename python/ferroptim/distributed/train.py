"""The Trainer and ``ferroptim train`` across MPI ranks.

Every rank draws the same seeded global batches and trains on its
contiguous part of each (:func:`~ferroptim.distributed.sampler.local_part`);
the loss and the outputs behind the training metrics are gathered, so every
rank's history is the single-process one, and every rank takes the same
decisions (early stopping). Only rank 0 shows progress and writes files;
checkpoints hold the gathered state in the single-process format, so a run
saved at one world size resumes at any other, or without MPI.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ferroptim.distributed.sampler import local_part
from ferroptim.distributed.zero import DistributedOptimizer
from ferroptim.train import checkpoint
from ferroptim.train.callbacks import Callback
from ferroptim.train.cli import UsageError, check_flags
from ferroptim.train.trainer import FunctionModel, Trainer

__all__ = ["DistributedTrainer", "train_main"]


class RootOnly(Callback):
    """Runs ``callback`` on rank 0 alone (files, plots), while every rank keeps
    the same list of stateful callbacks, as a checkpoint expects."""

    def __init__(self, callback: Callback, rank: int) -> None:
        self.callback, self.rank = callback, rank

    def __getattribute__(self, name: str) -> Any:
        if name == "on_train_end" and object.__getattribute__(self, "rank") != 0:
            return object.__getattribute__(self, "_title_only")
        if name.startswith("on_") and object.__getattribute__(self, "rank") != 0:
            return lambda *args, **kw: None
        if name.startswith("on_"):
            return getattr(object.__getattribute__(self, "callback"), name)
        return object.__getattribute__(self, name)

    def _title_only(self, trainer: Any) -> None:
        # A title function may evaluate (averaged weights: a collective):
        # every rank takes part, rank 0 alone draws.
        title = getattr(self.callback, "title", None)
        if callable(title):
            title(trainer)

    def state_dict(self) -> dict[str, Any]:
        return self.callback.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.callback.load_state_dict(state)


class DistributedTrainer(Trainer):
    """A :class:`~ferroptim.train.Trainer` whose optimizer is a
    :class:`DistributedOptimizer`; build it and call ``fit`` on every rank.

    ``batch_size`` is the global batch (summed over ranks): the run takes the
    same steps as the single-process run with that batch size.
    """

    def __init__(self, model: Any, optimizer: DistributedOptimizer, *args: Any, **kw: Any):
        if not isinstance(optimizer, DistributedOptimizer):
            raise TypeError("optimizer must be a ferroptim.distributed.DistributedOptimizer")
        if optimizer.comm.rank != 0:
            kw["verbose"] = 0  # rank 0 alone shows progress
        super().__init__(model, optimizer, *args, **kw)
        self.comm = optimizer.comm

    def _train_batch(self, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray | None]:
        comm, n = self.comm, len(X)
        part = local_part(np.arange(n), comm.rank, comm.size)
        Xl, yl = X[part], y[part]
        t0 = time.perf_counter()
        out = None
        loss = 0.0
        if len(Xl) == 0:  # a global batch smaller than the world
            self.model.arena.zero_grad()
        elif isinstance(self.model, FunctionModel):
            loss = self.model.loss_and_grads(Xl, yl)
            if self.model.predict_fn and self.metrics:
                out = self.model.forward(Xl)
        else:
            out = self.model.forward(Xl, train=True)
            loss, grad_out = self.loss_fn(out, yl)
            self.model.backward(grad_out)
        t1 = time.perf_counter()
        updated = self.optimizer.step(weight=len(Xl) / n)
        t2 = time.perf_counter()
        self.timing["forward_backward"] += t1 - t0
        self.timing["optimizer"] += t2 - t1
        if updated:
            self._write_back()
        if updated and self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        total = float(comm.allreduce_values([float(loss) * len(Xl)])[0]) / n
        if self.metrics and (out is not None or len(Xl) == 0):
            outs = [o for o in comm.allgather_objects(out) if o is not None]
            out = np.concatenate(outs) if outs else None
        return total, out

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        # The class of the wrapped optimizer: the checkpoint is a single-process one.
        state["optimizer_class"] = self.optimizer._class.__name__
        return state

    def load_state_dict(self, state: Any) -> None:
        if state.get("optimizer_class") == self.optimizer._class.__name__:
            state = {**state, "optimizer_class": type(self.optimizer).__name__}
        super().load_state_dict(state)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Gathers the state on every rank (collective); rank 0 alone writes it."""
        state = self.state_dict()
        if self.comm.rank == 0:
            checkpoint.save(path, state)
        return Path(path)


class _Shared(UsageError):
    """A usage error every rank raises at the same point: no rank waits, no abort."""


def _parser() -> Any:
    from ferroptim.train.cli import build_parser

    p = build_parser()
    p.prog = "mpirun -n N ferroptim train --distributed"
    p.add_argument(
        "--distributed",
        action="store_true",
        help="train on every MPI rank of mpirun, the batches split across ranks",
    )
    p.add_argument(
        "--zero-stage",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="0: all-reduce; 1: shard the optimizer state; 2: also reduce-scatter the grads",
    )
    p.add_argument(
        "--mpi-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds to wait for a rank before naming it and aborting every rank",
    )
    return p


def _strip(argv: list[str]) -> list[str]:
    """The command line without the distributed flags: the run's math, as saved."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--distributed":
            continue
        if arg in ("--zero-stage", "--mpi-timeout"):
            skip = True
            continue
        if arg.startswith(("--zero-stage=", "--mpi-timeout=")):
            continue
        out.append(arg)
    return out


def _run(args: Any, argv: list[str], comm: Any) -> int:
    import ferroptim as fo
    from ferroptim.schedules import Scheduler
    from ferroptim.train import callbacks as C
    from ferroptim.train import cli
    from ferroptim.train.build import TrainConfig, build, make_schedule, optimizer_kwargs

    plain_argv = _strip(argv)
    saved, config = None, {"argv": plain_argv, "epochs": args.epochs}
    if args.resume:
        from ferroptim.train.cli_resume import resume

        # Rank 0 reads the checkpoint; the others get it from rank 0.
        got: Any = None
        if comm.rank == 0:
            try:
                got = ("ok", resume(cli.build_parser().parse_args(plain_argv), plain_argv))
            except cli.UsageError as err:
                got = ("error", str(err))
        got = comm.bcast(got)
        if got[0] == "error":
            raise _Shared(got[1])
        new_args, saved, config = got[1]
        for key, value in vars(new_args).items():
            setattr(args, key, value)
    try:
        check_flags(args)  # the resumed flags, the same on every rank
    except UsageError as err:
        raise _Shared(str(err)) from None
    run = TrainConfig.from_args(args)
    scaled = run.loss_scale not in (None, "none")
    if run.dtype not in ("float32", "float64") or scaled:
        # The collectives and ZeRO shards carry float32/float64 only.
        what = f"--dtype {run.dtype}" + (f" and --loss-scale {run.loss_scale}" if scaled else "")
        raise _Shared(
            f"--distributed trains float32 or float64 params: {what} are single-process only"
        )
    # The single-process run's data, model and schedule; its optimizer is
    # rebuilt with the same arguments, distributed.
    setup = build(run)
    data, model = setup.data, setup.model
    try:
        optimizer = DistributedOptimizer(
            type(setup.optimizer),
            fo.exclude_from_weight_decay(model.arena, patterns=("*.b",)),
            comm=comm,
            stage=args.zero_stage,
            max_grad_norm=args.max_grad_norm,
            ema_decay=args.ema_decay,
            **optimizer_kwargs(run),
        )
    except (ValueError, TypeError) as err:
        raise _Shared(f"--optimizer {args.optimizer}: {err}") from None
    steps_per_epoch = -(-len(data.X_train) // run.batch_size)
    scheduler = Scheduler(
        optimizer, make_schedule(run.schedule, run.epochs * steps_per_epoch, run.warmup)
    )
    callbacks: list[Any] = []
    if args.patience is not None:
        callbacks.append(C.EarlyStopping("val_loss", patience=args.patience))
    callbacks.append(C.TerminateOnNaN())
    if args.out:
        out = Path(args.out)
        # The single-process order (a checkpoint keeps callback states by
        # position); the checkpoint callback runs on every rank: it gathers.
        callbacks += [
            RootOnly(C.CSVLogger(out / "history.csv"), comm.rank),
            C.ModelCheckpoint(out, monitor="val_loss"),
            RootOnly(
                C.PlotHistory(out / "curves.png", title=cli._title(run, optimizer, data)),
                comm.rank,
            ),
        ]
    classification = data.task == "classification"
    trainer = DistributedTrainer(
        model,
        optimizer,
        loss="cross_entropy" if classification else "mse",
        metrics=["accuracy"] if classification else ["r2"],
        scheduler=scheduler,
        batch_size=args.batch_size,
        callbacks=callbacks,
        seed=args.seed,
        verbose=args.verbose,
        config=config,
    )
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except (ValueError, TypeError) as err:
            raise cli.UsageError(f"--resume: {err}") from None
    stop = args.epochs
    if args.stop_after is not None:
        stop = min(args.epochs, trainer.epoch + args.stop_after)
    if args.out and comm.rank == 0:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    comm.barrier()
    start = time.perf_counter()
    trainer.fit(
        data.X_train,
        data.y_train,
        epochs=stop,
        initial_epoch=trainer.epoch,
        validation_data=(data.X_val, data.y_val),
    )
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(data.X_test, data.y_test)
    metric = "accuracy" if classification else "r2"
    if comm.rank == 0:
        where = f"; wrote {args.out}" if args.out else ""
        print(
            f"test {metric}: {test[metric]:.4f} (loss {test['loss']:.4f}) after "
            f"{trainer.epoch} epochs in {elapsed:.1f} s on {comm.size} ranks "
            f"(ZeRO stage {args.zero_stage}){where}",
            flush=True,
        )
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """``ferroptim train --distributed``: run it on every rank under mpirun.

    Parameters
    ----------
    argv : list of str, optional
        The ``ferroptim train`` flags (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0, or 2 for a bad flag (reported by rank 0 in one line).
    """
    from ferroptim.distributed.comm import Comm

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except UsageError as err:
        print(f"ferroptim train: error: {err}", file=sys.stderr)
        return 2
    comm = Comm(timeout=args.mpi_timeout)
    try:
        try:
            check_flags(args)
        except UsageError as err:
            raise _Shared(str(err)) from None  # the same verdict on every rank
        return _run(args, argv, comm)
    except _Shared as err:
        if comm.rank == 0:
            print(f"ferroptim train: error: {err}", file=sys.stderr)
        return 2
    except UsageError as err:
        if comm.size == 1:
            print(f"ferroptim train: error: {err}", file=sys.stderr)
            return 2
        # Past the checks a rank may fail alone while the others wait in a
        # collective: stop them all.
        comm.abort(f"ferroptim train: error: {err}", 2)
        return 2


if __name__ == "__main__":
    sys.exit(train_main())

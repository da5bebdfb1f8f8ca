r"""Learning-rate (and any-hyperparameter) schedules, and batch-size schedules.

Two layers, as in optax plus torch.optim.lr_scheduler:

* **Pure schedules.** Every factory (:func:`step_decay`, :func:`cosine_annealing`,
  :func:`one_cycle`, ...) returns a :class:`Schedule`: a pure function
  ``schedule(step) -> float`` with no state, that also maps an integer NumPy
  array to a float64 array. ``step`` counts from 0.
* **A thin stateful wrapper.** :class:`Scheduler` holds the step counter
  ``t`` and writes ``schedule(t)`` into ``optimizer.param_groups[i][key]`` for
  every group, with torch's counter semantics: constructing it applies step 0
  and each :meth:`Scheduler.step` advances by one. :class:`ReduceLROnPlateau`
  is the one schedule that depends on observed metrics, so it is stateful only.

**Relative and absolute schedules** (the one design rule). A schedule is either

* *relative*: its values are factors of each param group's initial value, as
  in torch's StepLR, ExponentialLR, CosineAnnealingLR, LambdaLR, ...; the
  :class:`Scheduler` records each group's starting value as
  ``group["initial_<key>"]`` (``initial_lr`` for the lr, exactly torch's key;
  an existing entry is kept, as torch keeps an existing ``initial_lr``) and
  writes ``initial * schedule(t)``. So one relative schedule drives several
  param groups that start from different learning rates.
* *absolute*: its values are written as they are.

The factories of torch's multiplicative schedulers take a keyword ``base``:
left ``None`` the schedule is relative (its value at the start is typically
1); given a number the schedule is absolute and starts from ``base``. Values
such as ``eta_min`` or ``end`` are in the schedule's own units: a factor
when ``base`` is None, a value otherwise. The schedules defined by absolute
values (:func:`one_cycle`, :func:`cyclic`, :func:`warmup_cosine` and the
momentum cycles) are absolute; pass one per group for per-group peaks. A plain
callable ``step -> value`` counts as absolute; wrap a factor function with
:func:`lambda_schedule` (or ``Schedule(fn, relative=True)``) to make it
relative. ``schedule.relative`` says which kind a schedule is.

>>> import numpy as np, ferroptim as fo
>>> from ferroptim import schedules as S
>>> opt = fo.SGD([{"params": [np.zeros(3)], "lr": 0.1}, {"params": [np.zeros(2)], "lr": 0.01}])
>>> sched = S.Scheduler(opt, S.cosine_annealing(T_max=100))   # relative: scales both groups
>>> sched.get_last_lr()
[0.1, 0.01]
>>> S.warmup_cosine(1e-3, warmup_steps=10, total_steps=100)(np.arange(3))   # absolute, vectorized
array([0.    , 0.0001, 0.0002])

**Batch-size schedules** (:func:`step_batch_size`, :func:`linear_batch_size`,
:func:`exponential_batch_size`) are pure functions ``epoch -> int`` for a
training loop, each capped by ``max_batch_size``.
"""

from __future__ import annotations

from ferroptim.schedules._batch import (
    BatchSizeSchedule,
    exponential_batch_size,
    linear_batch_size,
    step_batch_size,
)
from ferroptim.schedules._cycles import cyclic, cyclic_momentum, one_cycle, one_cycle_momentum
from ferroptim.schedules._pure import (
    Schedule,
    chained,
    constant,
    cosine_annealing,
    cosine_warm_restarts,
    exponential,
    inverse_time,
    lambda_schedule,
    linear,
    multi_step,
    multiplicative,
    polynomial,
    sequential,
    step_decay,
    warmup_cosine,
)
from ferroptim.schedules._scheduler import ReduceLROnPlateau, Scheduler

__all__ = [
    "BatchSizeSchedule",
    "ReduceLROnPlateau",
    "Schedule",
    "Scheduler",
    "chained",
    "constant",
    "cosine_annealing",
    "cosine_warm_restarts",
    "cyclic",
    "cyclic_momentum",
    "exponential",
    "exponential_batch_size",
    "inverse_time",
    "lambda_schedule",
    "linear",
    "linear_batch_size",
    "multi_step",
    "multiplicative",
    "one_cycle",
    "one_cycle_momentum",
    "polynomial",
    "sequential",
    "step_batch_size",
    "step_decay",
    "warmup_cosine",
]

# The classes live in private modules; show (and pickle) them under this public one, as before.
for _cls in (BatchSizeSchedule, ReduceLROnPlateau, Schedule, Scheduler):
    _cls.__module__ = __name__
del _cls

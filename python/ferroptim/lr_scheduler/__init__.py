"""torch.optim.lr_scheduler's classes, as thin wrappers over :mod:`ferroptim.schedules`.

Each class takes torch's arguments (``optimizer`` first, ``last_epoch=-1``
last) and is a :class:`~ferroptim.schedules.Scheduler` driving ``"lr"`` with
the matching pure schedule, so code written for torch runs unchanged::

    opt = fo.SGD(params, lr=0.1, momentum=0.9)
    sched = fo.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)
    for batch in batches:
        opt.step(grads(batch))
        sched.step()

What is the same as torch: the lr sequence (tests compare 50 steps with
torch's, several param groups), ``group["initial_lr"]`` (set unless the group
has one), ``last_epoch``, ``base_lrs``, ``step()``, ``get_last_lr()``,
``state_dict()``/``load_state_dict()``, and OneCycleLR's and CyclicLR's
cycling of ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam and its kin).

What differs, and why:

* Values come from closed forms, where torch applies some schedulers by
  recursion (``lr *= ratio``); the two agree to rounding (about 1e-13 after
  1000 steps). So an lr you overwrite by hand is not picked up by the next
  ``step()``: the schedule is a function of the step, as in optax.
* ``state_dict()`` holds the counter and the initial lrs (the schedules are
  rebuilt from the constructor's arguments), not torch's ``__dict__``.
* ``step(epoch)`` (deprecated in torch) takes an integer only; fractional
  epochs of CosineAnnealingWarmRestarts are refused.
* SequentialLR and ChainedScheduler read their pieces' arguments and drive
  the lr themselves; the pieces are not stepped. ChainedScheduler is the
  product of its pieces (exact for torch's multiplicative schedulers) and
  takes at most one that sets lrs outright (OneCycleLR, CyclicLR,
  CosineAnnealingLR with ``eta_min``).
* Errors are the package's HyperparameterError (a ValueError), and a failed
  call changes nothing.
"""

from ferroptim.lr_scheduler._base import LRScheduler
from ferroptim.lr_scheduler._composite import ChainedScheduler, CyclicLR, OneCycleLR, SequentialLR
from ferroptim.lr_scheduler._simple import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from ferroptim.schedules import ReduceLROnPlateau

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]

# The classes live in private modules; show (and pickle) them under this public one.
for _name in __all__:
    if _name != "ReduceLROnPlateau":
        globals()[_name].__module__ = __name__
del _name

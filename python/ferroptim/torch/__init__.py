"""ferroptim for PyTorch: drop-in ``torch.optim`` optimizers for CPU tensors.

Change ``torch.optim.AdamW`` to ``ferroptim.torch.AdamW``; everything else
(``model.parameters()``, param groups, ``zero_grad``, closures, step hooks,
``torch.optim.lr_scheduler``, ``state_dict`` in torch's own format) stays::

    import ferroptim.torch as fot
    opt = fot.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loss.backward()
    opt.step()

Each ``step`` updates every param in place through zero-copy NumPy views of
the tensors, in one call into the Rust engine. :func:`flatten` goes further:
the model's params and grads become views into one
:class:`~ferroptim.ParamArena`, so backward writes the grads straight into it
and a step is one pass over one buffer.

torch is an optional dependency, imported only here (CPU build:
``pip install torch --index-url https://download.pytorch.org/whl/cpu``).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ferroptim.torch needs PyTorch (CPU build: pip install torch "
        "--index-url https://download.pytorch.org/whl/cpu)"
    ) from err

from ferroptim.torch.flat import FlatParams, LinkedParameter, flatten
from ferroptim.torch.optim import (
    ASGD,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    TorchOptimizer,
)

__all__ = [
    "ASGD",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "Adamax",
    "AdamW",
    "FlatParams",
    "LinkedParameter",
    "Lion",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "TorchOptimizer",
    "flatten",
]

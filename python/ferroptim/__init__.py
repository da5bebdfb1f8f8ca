"""ferroptim: Rust-accelerated optimizers that update NumPy arrays in place.

>>> import numpy as np, ferroptim as fo
>>> w = np.zeros(3, np.float32)
>>> opt = fo.AdamW([w], lr=1e-3)
>>> opt.step([np.ones(3, np.float32)])
"""

from ferroptim import exceptions
from ferroptim._core import (
    __version__,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
)
from ferroptim.adam import Adam
from ferroptim.adamw import AdamW
from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.optimizer import Optimizer
from ferroptim.rmsprop import RMSprop
from ferroptim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "ArenaGroup",
    "ParamArena",
    "Optimizer",
    "RMSprop",
    "__version__",
    "exceptions",
    "get_num_threads",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
]

"""ferroptim: Rust-accelerated optimizers that update NumPy arrays in place.

>>> import numpy as np, ferroptim as fo
>>> w = np.zeros(3, np.float32)
>>> opt = fo.AdamW([w], lr=1e-3)
>>> opt.step([np.ones(3, np.float32)])
"""

from ferroptim import _precision, exceptions, functional, lr_scheduler, schedules
from ferroptim._convert import convert_state_dict
from ferroptim._core import (
    __version__,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    simd_level,
)
from ferroptim.adadelta import Adadelta
from ferroptim.adagrad import Adagrad
from ferroptim.adam import Adam
from ferroptim.adamax import Adamax
from ferroptim.adamw import AdamW
from ferroptim.amp import DynamicLossScaler, LossScaler
from ferroptim.arena import ArenaGroup, ParamArena
from ferroptim.asgd import ASGD
from ferroptim.finetune import exclude_from_weight_decay, layerwise_lr_groups
from ferroptim.gradtools import all_finite, clip_grad_norm, clip_grad_value, grad_norm
from ferroptim.lion import Lion
from ferroptim.nadam import NAdam
from ferroptim.optimizer import Optimizer
from ferroptim.radam import RAdam
from ferroptim.rmsprop import RMSprop
from ferroptim.rprop import Rprop
from ferroptim.schedules import ReduceLROnPlateau, Scheduler
from ferroptim.serialization import load, save
from ferroptim.sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "Adamax",
    "AdamW",
    "ASGD",
    "DynamicLossScaler",
    "LossScaler",
    "ArenaGroup",
    "ParamArena",
    "Lion",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "ReduceLROnPlateau",
    "Scheduler",
    "__version__",
    "all_finite",
    "clip_grad_norm",
    "clip_grad_value",
    "convert_state_dict",
    "exceptions",
    "exclude_from_weight_decay",
    "functional",
    "get_num_threads",
    "grad_norm",
    "layerwise_lr_groups",
    "load",
    "lr_scheduler",
    "save",
    "schedules",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
]

# NumPy numbers ml_dtypes.bfloat16 when it loads: tell the core which it is.
_precision.register()

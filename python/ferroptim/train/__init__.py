"""Training NumPy models with ferroptim optimizers: the trainer, its
callbacks, checkpoints, data sets, and built-in layers, losses and metrics."""

from ferroptim.train.build import TrainConfig, build_trainer
from ferroptim.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    PlotHistory,
    ProgressBar,
    ReduceLROnPlateau,  # deprecated alias of ReduceLROnPlateauCallback
    ReduceLROnPlateauCallback,
    TerminateOnNaN,
)
from ferroptim.train.checkpoint import CheckpointError
from ferroptim.train.data import Dataset, batches, load_dataset
from ferroptim.train.plot import plot_history
from ferroptim.train.torch_model import TorchLoss, TorchModel  # import torch only when used
from ferroptim.train.trainer import FunctionModel, History, Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "Dataset",
    "EarlyStopping",
    "FunctionModel",
    "History",
    "ModelCheckpoint",
    "PlotHistory",
    "ProgressBar",
    "ReduceLROnPlateau",
    "ReduceLROnPlateauCallback",
    "TerminateOnNaN",
    "TorchLoss",
    "TorchModel",
    "TrainConfig",
    "Trainer",
    "batches",
    "build_trainer",
    "load_dataset",
    "plot_history",
]

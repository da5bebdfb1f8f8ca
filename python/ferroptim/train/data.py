"""Data sets and mini-batches for the trainer and the command line."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Dataset", "batches", "load_dataset", "split_and_scale"]


@dataclass
class Dataset:
    """Train, validation and test splits; ``task`` is "classification" or "regression"."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int
    name: str

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return self.n_classes
        return 1 if self.y_train.ndim == 1 else self.y_train.shape[1]


def batches(
    n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False
) -> Iterator[np.ndarray]:
    """Index arrays of the mini-batches of one epoch.

    The order depends only on ``(seed, epoch)``, so a resumed run sees the
    same batches as an uninterrupted one without storing generator state.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def split_and_scale(
    X: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    name: str = "data",
    dtype: Any = np.float32,
) -> Dataset:
    """Seeded split (stratified for classification), then standardization
    with the training split's mean and deviation."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be 2-D with one row per label: X {X.shape}, y {np.shape(y)}")
    if len(X) < 10:
        raise ValueError(f"need at least 10 samples, got {len(X)}")
    rng = np.random.default_rng(seed)
    n_classes = 0
    if task == "classification":
        labels, y = np.unique(y, return_inverse=True)
        n_classes = len(labels)
        if n_classes < 2:
            raise ValueError("classification needs at least 2 classes")
        parts: list[list[int]] = [[], [], []]
        for c in range(n_classes):
            idx = rng.permutation(np.flatnonzero(y == c))
            n_test = int(round(len(idx) * test_fraction))
            n_val = int(round(len(idx) * val_fraction))
            parts[2] += idx[:n_test].tolist()
            parts[1] += idx[n_test : n_test + n_val].tolist()
            parts[0] += idx[n_test + n_val :].tolist()
        train, val, test = (np.sort(np.array(p, dtype=np.int64)) for p in parts)
        y = y.astype(np.int64)
    else:
        idx = rng.permutation(len(X))
        n_test = int(round(len(X) * test_fraction))
        n_val = int(round(len(X) * val_fraction))
        test, val, train = idx[:n_test], idx[n_test : n_test + n_val], idx[n_test + n_val :]
        y = np.asarray(y, dtype=dtype)
    mean = X[train].mean(axis=0)
    std = X[train].std(axis=0)
    std[std == 0] = 1.0
    Xs = ((X - mean) / std).astype(dtype)
    return Dataset(Xs[train], y[train], Xs[val], y[val], Xs[test], y[test], task, n_classes, name)


def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn import datasets
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ValueError(
            f"--dataset {name} needs scikit-learn's bundled data: pip install 'ferroptim[train]'"
        ) from err
    loader = {"digits": datasets.load_digits, "iris": datasets.load_iris}[name]
    bunch = loader()
    return bunch.data, bunch.target


def _synthetic(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(seed)
    if name == "synthetic-regression":
        X = rng.standard_normal((2000, 20))
        w = rng.standard_normal(20)
        y = X @ w + 0.3 * np.sin(3 * X[:, 0]) + 0.1 * rng.standard_normal(2000)
        return X, y, "regression"
    # Three Gaussian blobs on a curved manifold: not linearly separable.
    n, k = 3000, 3
    y = rng.integers(0, k, n)
    angle = 2 * np.pi * y / k + 0.6 * rng.standard_normal(n)
    radius = 2.0 + 0.5 * rng.standard_normal(n)
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    X = np.column_stack([X, rng.standard_normal((n, 8))])
    return X, y, "classification"


def _from_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"cannot read {path}: no such file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "X" not in f.files or "y" not in f.files:
                    raise ValueError(f"{path} must hold arrays 'X' and 'y', has {f.files}")
                return _numbers(path, "X", f["X"]), _numbers(path, "y", f["y"])
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header line
    if not rows:
        raise ValueError(f"{path} has no data rows")
    try:
        table = np.array([[float(v) for v in r] for r in rows if r], dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: every value must be a number ({err})") from err
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError(f"{path}: need feature columns and a last label column")
    return table[:, :-1], table[:, -1]


def _numbers(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    """``array`` as float64; strings, objects and complex numbers are refused, not converted."""
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{path}: {name!r} must hold real numbers, got dtype {array.dtype} "
            "(encode string labels as class numbers 0, 1, ...)"
        )
    return np.asarray(array, dtype=np.float64)


def _check_finite(name: str, X: np.ndarray, y: np.ndarray) -> None:
    for part, values in (("X", X), ("y", y)):
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise ValueError(
                f"{name}: {part} has {bad} non-finite values (NaN or inf) of {values.size}; "
                "remove or fill them first"
            )


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
        return True
    except ValueError:
        return False


def load_dataset(name: str, *, seed: int = 0, task: str | None = None) -> Dataset:
    """digits, iris, synthetic-regression, synthetic-classification, or a .npz / .csv file.

    A file's task is classification when its labels are few whole numbers,
    unless ``task`` says otherwise. Its ``X`` and ``y`` must be real numbers,
    all finite: a ValueError names what is wrong.
    """
    if name in ("digits", "iris"):
        X, y = _sklearn(name)
        found = "classification"
    elif name in ("synthetic-regression", "synthetic-classification"):
        X, y, found = _synthetic(name, seed)
    elif name.endswith((".npz", ".csv")):
        X, y = _from_file(Path(name))
        _check_finite(name, X, y)
        whole = np.all(np.asarray(y) == np.round(y))
        found = "classification" if whole and len(np.unique(y)) <= 100 else "regression"
    else:
        raise ValueError(
            f"unknown dataset {name!r}: use digits, iris, synthetic-regression, "
            "synthetic-classification, or a .npz / .csv file"
        )
    return split_and_scale(X, y, task=task or found, seed=seed, name=name)

"""A JAX model trained by ferroptim's Trainer through ``FunctionModel``.

JAX computes the loss and its grads (``jax.value_and_grad``, jitted);
ferroptim keeps the params in one arena and takes the step. The glue is a
function ``loss_and_grads(params, X, y) -> (loss, grads)`` on NumPy arrays:

* ``params`` is a dict name -> NumPy view into the arena (read it, never keep
  it: the optimizer updates it in place);
* ``grads`` is a dict name -> array of the same shapes (JAX arrays are fine:
  the FunctionModel copies them into the arena's grad buffer).

Here an MLP (64 -> 128 -> 10, ReLU) on scikit-learn's digits::

    python examples/jax_function_model.py            # needs jax (pip install jax)
    python examples/jax_function_model.py --quick    # 2 epochs

Without jax installed it prints a note and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import ferroptim as fo
from ferroptim.train import FunctionModel, Trainer, load_dataset

LossAndGrads = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], Any]


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised float32 weights, zero biases (plain NumPy: the arena copies them)."""
    rng = np.random.default_rng(seed)
    return {
        "hidden.W": (rng.normal(size=(n_in, n_hidden)) * np.sqrt(2 / n_in)).astype(np.float32),
        "hidden.b": np.zeros(n_hidden, np.float32),
        "head.W": (rng.normal(size=(n_hidden, n_out)) * np.sqrt(1 / n_hidden)).astype(np.float32),
        "head.b": np.zeros(n_out, np.float32),
    }


def jax_functions() -> tuple[LossAndGrads, Callable[[dict[str, np.ndarray], np.ndarray], Any]]:
    """``(loss_and_grads, predict)`` for :class:`FunctionModel`, written in JAX."""
    import jax
    import jax.numpy as jnp

    def logits(params: dict[str, Any], X: Any) -> Any:
        h = jax.nn.relu(X @ params["hidden.W"] + params["hidden.b"])
        return h @ params["head.W"] + params["head.b"]

    def loss(params: dict[str, Any], X: Any, y: Any) -> Any:
        log_p = jax.nn.log_softmax(logits(params, X))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # grads w.r.t. the params dict
    predict_jit = jax.jit(logits)

    def loss_and_grads(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> Any:
        # jnp.asarray copies the arena's views onto JAX's device: the values
        # of this step, whatever the optimizer does to the arena afterwards.
        value, grads = value_and_grad({k: jnp.asarray(v) for k, v in params.items()}, X, y)
        return float(value), {k: np.asarray(g) for k, g in grads.items()}

    def predict(params: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        return np.asarray(predict_jit({k: jnp.asarray(v) for k, v in params.items()}, X))

    return loss_and_grads, predict


def train(
    loss_and_grads: LossAndGrads,
    predict: Callable[[dict[str, np.ndarray], np.ndarray], Any],
    *,
    epochs: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Trains the MLP with ferroptim's AdamW; returns its test metrics."""
    data = load_dataset("digits", seed=seed)
    model = FunctionModel(
        init_params(data.n_features, 128, data.n_classes, seed), loss_and_grads, predict
    )
    opt = fo.AdamW(model.arena, lr=3e-3, weight_decay=1e-4)
    # The trainer's cross_entropy is the loss above: it scores validation and test.
    trainer = Trainer(
        model, opt, loss="cross_entropy", metrics=["accuracy"], batch_size=64, seed=seed, verbose=0
    )
    trainer.fit(data.X_train, data.y_train, epochs=epochs, validation_data=(data.X_val, data.y_val))
    test = trainer.evaluate(data.X_test, data.y_test)
    return {
        "epochs": epochs,
        "params": model.arena.size,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": trainer.history["val_accuracy"][-1],
    }


def main(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Trains the JAX MLP; ``{"skipped": reason}`` when jax is not installed."""
    try:
        loss_and_grads, predict = jax_functions()
    except ImportError:
        return {"example": "jax_function_model", "skipped": "jax is not installed"}
    return {
        "example": "jax_function_model",
        **train(loss_and_grads, predict, epochs=2 if quick else 30, seed=seed),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs (for the tests)")
    parser.add_argument("--seed", type=int, default=0, help="data split and init seed")
    args = parser.parse_args()
    result = main(args.quick, args.seed)
    print(json.dumps(result, indent=2))
    if "skipped" in result:
        print("jax_function_model: skipped (pip install jax to run it)", file=sys.stderr)

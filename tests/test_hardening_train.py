"""Hardening of the trainer and its checkpoints (issues 11 and 12).

- a malformed trainer state is refused with CheckpointError and changes
  nothing (params, optimizer state, history, counters, scheduler, callbacks);
- ``fit`` twice continues; ``initial_epoch`` keeps Keras' "up to epoch N";
- ``ferroptim.save`` / ``ferroptim.load`` round-trip a state_dict with no pickle;
- a FunctionModel trains the user's own arrays.

Hostile checkpoint files, temporary files and permissions are in
test_hardening_train_files.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from _hardening_train_helpers import same
from ferroptim import schedules as S
from ferroptim.train import CheckpointError, EarlyStopping, FunctionModel, Trainer
from ferroptim.train import checkpoint as ckpt
from ferroptim.train.models import mlp

# -- helpers -------------------------------------------------------------------


def data(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 6)) + 1.5 * np.eye(6)[y]
    return X.astype(np.float32), y.astype(np.int64)


def make_trainer():
    model = mlp(6, hidden=(8,), n_outputs=3, dropout=0.1, seed=0)
    opt = fo.AdamW(model.arena, lr=0.01)
    return Trainer(
        model,
        opt,
        metrics=["accuracy"],
        scheduler=fo.Scheduler(opt, S.exponential(0.9)),
        batch_size=16,
        callbacks=[EarlyStopping("loss", patience=50)],
        verbose=0,
    )


def snapshot(trainer):
    """Everything a failed load must leave exactly as it was."""
    stop = trainer.callbacks[0]
    return {
        "params": trainer.get_params(),
        "optimizer": trainer.optimizer.state_dict(),
        "lr": [g["lr"] for g in trainer.optimizer.param_groups],
        "updates": trainer.optimizer.num_updates,
        "scheduler": trainer.scheduler.state_dict(),
        "rng": trainer.model.get_rng_state(),
        "history": trainer.history.state_dict(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "early_stopping": dict(vars(stop)),
    }


# -- 11.5: a malformed trainer state changes nothing ---------------------------


def _set(path, value):
    def edit(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _delete(key):
    return lambda state: state.pop(key)


MALFORMED = {
    "history missing": _delete("history"),
    "history a list": _set(["history"], [1, 2]),
    "history record an array": _set(["history", "epochs", 0], {"loss": np.ones(2)}),
    "history steps not a list": _set(["history", "steps"], "x"),
    "metric names not strings": _set(["history", "metric_names"], [1]),
    "epoch missing": _delete("epoch"),
    "epoch a string": _set(["epoch"], "three"),
    "epoch a float": _set(["epoch"], 2.5),
    "epoch negative": _set(["epoch"], -1),
    "step a bool": _set(["step"], True),
    "updates a string": _set(["optimizer_updates"], "7"),
    "scheduler missing": _delete("scheduler"),
    "scheduler a list": _set(["scheduler"], [1]),
    "scheduler base values": _set(["scheduler", "base_values"], [0.1, 0.2, 0.3]),
    "scheduler last_epoch": _set(["scheduler", "last_epoch"], "x"),
    "callback state partial": _set(["callbacks", 0], {"best": -1.0, "best_epoch": 7}),
    "callback state a list": _set(["callbacks", 0], [1]),
    "callbacks not a list": _set(["callbacks"], 3),
    "rng of another kind": _set(["model_rng"], {"bit_generator": "MT19937"}),
    "params strings": lambda s: s.update(params=s["params"].astype(str)),
    "params float64": lambda s: s.update(params=s["params"].astype(np.float64)),
    "params a list": lambda s: s.update(params=s["params"].tolist()),
    "params wrong shape": lambda s: s.update(params=s["params"][:-1]),
    "optimizer state": _set(["optimizer", "param_groups"], []),
    "layout an array": _set(["layout"], np.ones(3)),
    "dtype an array": _set(["dtype"], np.ones(3)),
    "config a list": _set(["config"], [1]),
    "not a dict": lambda s: s.clear(),
}


@pytest.fixture(scope="module")
def saved_state():
    X, y = data()
    saved = make_trainer()
    saved.fit(X, y, epochs=3)
    return saved.state_dict()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_trainer_state_raises_and_changes_nothing(saved_state, case):
    import copy

    X, y = data()
    target = make_trainer()
    target.fit(X, y, epochs=1)  # differs from the saved run in every part
    state = copy.deepcopy(saved_state)
    MALFORMED[case](state)
    if case == "not a dict":
        state = [1, 2]
    before = snapshot(target)
    with pytest.raises(CheckpointError):
        target.load_state_dict(state)
    same(snapshot(target), before)
    # The same state loads once repaired, and the trainer trains on.
    target.load_state_dict(saved_state)
    assert target.epoch == 3
    target.fit(X, y, epochs=1)
    assert target.epoch == 4


def test_a_checkpoint_with_string_params_is_refused_not_converted(tmp_path, saved_state):
    state = dict(saved_state, params=saved_state["params"].astype(str))
    path = ckpt.save(tmp_path / "strings.npz", state)
    target = make_trainer()
    before = snapshot(target)
    with pytest.raises(CheckpointError, match="params"):
        target.load_checkpoint(path)
    same(snapshot(target), before)


# -- 12.4: fit twice, and saving a state_dict with no pickle ---------------------


def test_a_second_fit_continues_and_initial_epoch_means_up_to():
    X, y = data()
    trainer = make_trainer()
    trainer.fit(X, y, epochs=3)
    trainer.fit(X, y, epochs=3)
    assert trainer.epoch == 6 and trainer.history["epoch"] == [1, 2, 3, 4, 5, 6]
    trainer.fit(X, y, epochs=8, initial_epoch=trainer.epoch)
    assert trainer.epoch == 8
    with pytest.raises(ValueError, match="initial_epoch"):
        trainer.fit(X, y, epochs=9, initial_epoch=-1)
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(X, y, epochs=2.5)
    assert trainer.epoch == 8


@pytest.mark.parametrize("named", [True, False])
def test_save_and_load_an_optimizer_state_dict_with_no_pickle(tmp_path, named):
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3), "b": (3,)}

    def build():
        params = {n: np.ones(s, np.float32) for n, s in shapes.items()}
        if named:
            groups = [{"params": params, "lr": 0.01}]
        else:
            groups = [
                {"params": [params["w"]], "lr": 0.01},
                {"params": [params["b"]], "lr": 0.02, "weight_decay": 0.0},
            ]
        return params, fo.AdamW(groups, accumulate=2, ema_decay=0.9)

    grads = [
        {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()} for _ in range(7)
    ]

    def step(opt, g):
        opt.step(g if named else [g["w"], g["b"]])

    params, opt = build()
    for g in grads[:3]:  # mid-accumulation: one micro-batch pending
        step(opt, g)
    path = fo.save(tmp_path / "opt.npz", {"params": params, "optimizer": opt.state_dict()})
    # A plain .npz: NumPy reads every member without pickle.
    with np.load(path, allow_pickle=False) as z:
        assert "__header__" in z.files
    loaded = fo.load(path)
    same(loaded["optimizer"], opt.state_dict())
    if not named:
        assert 0 in loaded["optimizer"]["state"]  # int keys stay ints
    params2, opt2 = build()
    for n, a in loaded["params"].items():
        params2[n][...] = a
    opt2.load_state_dict(loaded["optimizer"])
    for g in grads[3:]:
        step(opt, g)
        step(opt2, g)
    for n in shapes:
        assert params[n].tobytes() == params2[n].tobytes(), n
    same(opt.state_dict(), opt2.state_dict())


def test_save_refuses_what_it_cannot_store_and_load_refuses_foreign_files(tmp_path):
    with pytest.raises(TypeError, match="set"):
        fo.save(tmp_path / "x.npz", {"a": {1, 2}})
    np.savez(tmp_path / "naive.npz", a=np.ones(2))
    with pytest.raises(CheckpointError, match="not a ferroptim checkpoint"):
        fo.load(tmp_path / "naive.npz")
    # The name is taken as given (np.savez would append .npz).
    assert fo.save(tmp_path / "state.bin", [1, (2, None)]).name == "state.bin"
    assert fo.load(tmp_path / "state.bin") == [1, (2, None)]


# -- 12.8: FunctionModel trains the user's arrays ------------------------------


def _least_squares(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3

    def loss_and_grads(params, Xb, yb):
        r = Xb @ params["w"] + params["b"] - yb
        return float(r @ r / len(r)), {"w": 2 * Xb.T @ r / len(r), "b": 2 * r.mean()}

    return X, y, loss_and_grads


def test_function_model_trains_the_users_arrays_in_place(tmp_path):
    X, y, fn = _least_squares()
    w, b = np.zeros(3), np.zeros(())
    model = FunctionModel({"w": w, "b": b}, fn)
    trainer = Trainer(model, fo.SGD(model.arena, lr=0.1), batch_size=16, verbose=0)
    trainer.fit(X, y, epochs=20)
    np.testing.assert_allclose(w, [1.0, -2.0, 0.5], atol=1e-3)
    assert w.tobytes() == model.arena.params["w"].tobytes()
    assert b.tobytes() == model.arena.params["b"].tobytes()
    # Loads and set_params reach the user's arrays as well.
    path = trainer.save_checkpoint(tmp_path / "ck.npz")
    trained = w.copy()
    trainer.set_params(np.zeros(4))
    assert not w.any()
    trainer.load_checkpoint(path)
    assert w.tobytes() == trained.tobytes()


def test_function_model_warns_for_arrays_it_cannot_train_in_place():
    X, y, fn = _least_squares()
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": [0.0, 0.0, 0.0], "b": np.zeros(())}, fn)
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": np.zeros(3, np.int64), "b": np.zeros(())}, fn)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.warns(UserWarning, match=r"\['w'\]"):
        FunctionModel({"w": frozen, "b": np.zeros(())}, fn)

"""The Trainer on a torch.nn.Module: TorchModel (params and grads are views of
the arena, autograd's grads), TorchLoss, steps equal to torch.optim's, and an
exact checkpoint resume (params, optimizer, BatchNorm buffers, dropout RNG)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.exceptions import DtypeError, ParamError
from ferroptim.train import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    PlotHistory,
    TorchLoss,
    TorchModel,
    Trainer,
)


def _net(torch: Any, dtype: Any = None, extras: bool = False) -> Any:
    torch.manual_seed(0)
    layers = [
        torch.nn.Conv2d(1, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 16),
        torch.nn.Tanh(),
    ]
    if extras:  # buffers and randomness for the resume test
        layers += [torch.nn.BatchNorm1d(16), torch.nn.Dropout(0.3)]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(16, 4))
    return net.to(dtype or torch.float32)


def _data(n: int = 24, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 1, 8, 8)).astype(dtype), rng.integers(0, 4, n)


def test_params_and_grads_are_views_of_the_arena(torch: Any) -> None:
    net = _net(torch)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    model = TorchModel(net)
    assert model.arena.names == [n for n, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        assert torch.equal(p.detach(), before[name])  # values kept
        assert p.data_ptr() == model.arena.params[name].ctypes.data
        assert p.grad.data_ptr() == model.arena.grads[name].ctypes.data
    model.arena.data[...] = 0.5  # an arena write is the module's params
    assert all(bool((p == 0.5).all()) for p in net.parameters())


def test_grads_equal_torch_autograd(torch: Any) -> None:
    X, y = _data(dtype=np.float64)
    ref = _net(torch, torch.float64)
    net = copy.deepcopy(ref)
    model = TorchModel(net)
    loss = TorchLoss(torch.nn.CrossEntropyLoss())
    value, grad_out = loss(model.forward(X, train=True), y)
    model.backward(grad_out)
    expected = torch.nn.functional.cross_entropy(ref(torch.from_numpy(X)), torch.from_numpy(y))
    expected.backward()
    assert value == pytest.approx(float(expected.detach()), rel=1e-12)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(model.arena.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-13)
    # A second backward overwrites (the protocol), it does not accumulate.
    model.backward(loss(model.forward(X, train=True), y)[1])
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(model.arena.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_grads_survive_zero_grad_set_to_none(torch: Any) -> None:
    X, y = _data()
    model = TorchModel(_net(torch))
    model.module.zero_grad(set_to_none=True)  # a torch habit: drops p.grad
    model.backward(TorchLoss(torch.nn.CrossEntropyLoss())(model.forward(X, train=True), y)[1])
    assert np.abs(model.arena.grad).sum() > 0
    for name, p in model.module.named_parameters():
        assert p.grad.data_ptr() == model.arena.grads[name].ctypes.data


@pytest.mark.parametrize("loss_kind", ["torch", "numpy"])
def test_trainer_steps_equal_torch_optim(torch: Any, loss_kind: str) -> None:
    X, y = _data(dtype=np.float64)
    ref = _net(torch, torch.float64)
    net = copy.deepcopy(ref)
    model = TorchModel(net)
    opt = fo.AdamW(model.arena, lr=0.01, weight_decay=0.1)
    loss = TorchLoss(torch.nn.CrossEntropyLoss()) if loss_kind == "torch" else "cross_entropy"
    trainer = Trainer(model, opt, loss=loss, batch_size=8, shuffle=False, verbose=0)
    trainer.fit(X, y, epochs=2)
    torch_opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(2):
        for i in range(0, len(X), 8):
            torch_opt.zero_grad()
            out = ref(torch.from_numpy(X[i : i + 8]))
            torch.nn.functional.cross_entropy(out, torch.from_numpy(y[i : i + 8])).backward()
            torch_opt.step()
    assert trainer.step == 6
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(
            dict(net.named_parameters())[name].detach().numpy(), p.detach(), rtol=1e-9, atol=1e-12
        )
    # and the params moved (a trainer that did not step would fail above only by luck)
    moved = [
        not torch.equal(p, q)
        for p, q in zip(ref.parameters(), _net(torch, torch.float64).parameters())
    ]
    assert all(moved)


def _trainer(torch: Any) -> Trainer:
    model = TorchModel(_net(torch, extras=True))
    opt = fo.AdamW(model.arena, lr=0.01)
    sched = fo.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return Trainer(
        model,
        opt,
        loss=TorchLoss(torch.nn.CrossEntropyLoss()),
        metrics=["accuracy"],
        scheduler=sched,
        batch_size=8,
        verbose=0,
    )


def test_checkpoint_resume_is_exact(torch: Any, tmp_path: Any) -> None:
    X, y = _data(40)
    straight = _trainer(torch)
    straight.fit(X, y, epochs=4)
    first = _trainer(torch)
    first.fit(X, y, epochs=2)
    path = first.save_checkpoint(tmp_path / "ckpt.npz")
    for _ in range(3):  # move the global RNG and the BatchNorm stats away
        first.model.forward(X, train=True)
    torch.manual_seed(123)
    resumed = _trainer(torch)
    resumed.model.arena.data[...] = 0.0  # other params than the saved ones
    resumed.load_checkpoint(path)
    assert resumed.epoch == 2
    resumed.fit(X, y, epochs=2)
    np.testing.assert_array_equal(resumed.model.arena.data, straight.model.arena.data)
    for (name, a), b in zip(straight.model.module.named_buffers(), resumed.model.module.buffers()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    assert resumed.history["loss"] == straight.history["loss"]


def test_checkpoint_of_another_module_is_refused(torch: Any, tmp_path: Any) -> None:
    X, y = _data()
    trainer = _trainer(torch)
    trainer.fit(X, y, epochs=1)
    path = trainer.save_checkpoint(tmp_path / "a.npz")
    other = TorchModel(_net(torch))  # no BatchNorm: another layout
    t2 = Trainer(other, fo.AdamW(other.arena), verbose=0)
    before = other.arena.data.copy()
    with pytest.raises(fo.train.CheckpointError, match="params differ"):
        t2.load_checkpoint(path)
    np.testing.assert_array_equal(other.arena.data, before)


def test_callbacks_and_plot_with_a_torch_module(torch: Any, tmp_path: Any) -> None:
    X, y = _data(48)
    model = TorchModel(_net(torch))
    trainer = Trainer(
        model,
        fo.SGD(model.arena, lr=0.05, momentum=0.9),
        loss=TorchLoss(torch.nn.CrossEntropyLoss()),
        metrics=["accuracy"],
        batch_size=16,
        callbacks=[
            EarlyStopping(patience=50),
            ModelCheckpoint(tmp_path / "ck"),
            CSVLogger(tmp_path / "log.csv"),
            PlotHistory(tmp_path / "h.png"),
        ],
        verbose=0,
    )
    history = trainer.fit(X[:32], y[:32], epochs=3, validation_data=(X[32:], y[32:]))
    assert len(history["val_accuracy"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    for name in ("ck/last.npz", "ck/best.npz", "log.csv", "h.png"):
        assert (tmp_path / name).stat().st_size > 0
    preds = trainer.predict(X)
    assert preds.shape == (48, 4)
    assert not model.module.training  # predict ran in eval mode


def test_errors(torch: Any) -> None:
    with pytest.raises(TypeError, match="module"):
        TorchModel(lambda x: x)
    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).double())
    with pytest.raises(DtypeError, match="float32"):
        TorchModel(mixed)
    with pytest.raises(ParamError, match="no parameters"):
        TorchModel(torch.nn.ReLU())
    with pytest.raises(DtypeError, match="dtype"):
        TorchModel(torch.nn.Linear(2, 2), dtype="float16")
    converted = TorchModel(mixed, dtype="float64")
    assert converted.arena.dtype == np.float64
    model = TorchModel(_net(torch))
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((2, 4), np.float32))
    model.module.double()  # cuts the params from the arena
    with pytest.raises(ParamError, match="no longer lives in the arena"):
        model.forward(_data()[0])


def test_integer_inputs_pass_as_they_are(torch: Any) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    model = TorchModel(net)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 10, (64, 2))
    y = (X[:, 0] > X[:, 1]).astype(np.int64)  # learnable from the two token ids
    trainer = Trainer(model, fo.AdamW(model.arena, lr=0.05), batch_size=16, verbose=0)
    trainer.fit(X, y, epochs=30)
    assert trainer.evaluate(X, y)["loss"] < 0.5 * trainer.history["loss"][0]
    # Floating inputs in another dtype are cast to the params' dtype.
    lin = TorchModel(torch.nn.Linear(3, 1))
    assert lin.forward(np.ones((2, 3), np.float64)).dtype == np.float32


def test_a_torch_loss_is_wrapped_by_the_trainer(torch) -> None:
    """Passing torch.nn.CrossEntropyLoss() as it is used to fail inside torch."""
    import ferroptim as fo
    from ferroptim.train import Trainer
    from ferroptim.train.torch_model import TorchLoss, TorchModel

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    model = TorchModel(module)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 4)), rng.integers(0, 3, 32)
    for loss in (torch.nn.CrossEntropyLoss(), torch.nn.functional.cross_entropy):
        trainer = Trainer(model, fo.SGD(model.arena, lr=0.1), loss=loss, batch_size=8, verbose=0)
        assert isinstance(trainer.loss_fn, TorchLoss)
        history = trainer.fit(X, y, epochs=2)
        assert np.isfinite(history["loss"]).all()

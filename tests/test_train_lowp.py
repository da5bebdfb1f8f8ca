"""Low-precision training end to end: bfloat16/float16 params in the NumPy models,
the Trainer's loss scaler, checkpoints holding bfloat16 arrays, and
``ferroptim train --dtype ... --opt state_dtype=... --loss-scale ...`` with resume."""

from __future__ import annotations

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.train import Trainer, checkpoint
from ferroptim.train.checkpoint import CheckpointError
from ferroptim.train.cli import main
from ferroptim.train.models import build_model, mlp

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
SMALL = "synthetic-classification"


def _blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 6)) + 3.0 * np.eye(6)[y]
    return X, y


def _trainer(model, opt, **kw):
    return Trainer(model, opt, metrics=["accuracy"], batch_size=32, verbose=0, **kw)


# -- checkpoints hold bfloat16 arrays --------------------------------------------------


def test_checkpoint_round_trips_bfloat16_arrays_bitwise(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 3)).astype(BF16)
    state = {"p": a, "nested": {"q": a[1:3, ::2]}, "f16": a.astype(F16)}
    checkpoint.save(tmp_path / "c.npz", state)
    back = checkpoint.load(tmp_path / "c.npz")
    assert back["p"].dtype == BF16 and back["nested"]["q"].dtype == BF16
    np.testing.assert_array_equal(back["p"].view(np.uint16), a.view(np.uint16))
    np.testing.assert_array_equal(
        back["nested"]["q"].view(np.uint16), np.ascontiguousarray(a[1:3, ::2]).view(np.uint16)
    )
    assert back["f16"].dtype == F16


def test_checkpoint_refuses_an_unknown_stored_dtype(tmp_path) -> None:
    import json

    checkpoint.save(tmp_path / "c.npz", {"p": np.zeros(2, BF16)})
    # Rewrite the header as a hostile file would: an unknown dtype name.
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["__header__"].tobytes())
    assert header["state"]["p"]["dtype"] == "bfloat16"
    header["state"]["p"]["dtype"] = "float8_e4m3"
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match="unknown dtype"):
        checkpoint.load(tmp_path / "bad.npz")


# -- the Trainer's loss scaler (float32: no Rust support needed) ---------------------------


@pytest.mark.parametrize("scale", [2.0**12, 1.0 / 8])
def test_trainer_with_power_of_two_loss_scale_equals_the_unscaled_run_bitwise(scale) -> None:
    X, y = _blobs()
    runs = []
    for scaler in (None, fo.LossScaler(scale)):
        model = mlp(6, hidden=(16,), n_outputs=3, dropout=0.1, seed=3)
        opt = fo.AdamW(model.arena, lr=0.01, max_grad_norm=1.0)
        _trainer(model, opt, loss_scaler=scaler).fit(X, y, epochs=2)
        runs.append(model.arena.data.copy())
    np.testing.assert_array_equal(runs[0], runs[1], strict=True)


def test_trainer_skips_overflowing_steps_and_backs_off() -> None:
    X, y = _blobs(64)
    model = mlp(6, hidden=(8,), n_outputs=3, seed=0)
    opt = fo.SGD(model.arena, lr=0.01)
    scaler = fo.DynamicLossScaler(init_scale=2.0**127, growth_interval=1000)
    trainer = _trainer(model, opt, loss_scaler=scaler)
    before = model.arena.data.copy()
    # Inputs this large make the scaled grads overflow float32: both steps are skipped.
    trainer.fit(X * 1e4, y, epochs=1)
    np.testing.assert_array_equal(model.arena.data, before)
    assert opt.skipped_steps == 2 and opt.num_updates == 0
    assert scaler.get_scale() == 2.0**125
    trainer.fit(X, y, epochs=2)
    assert opt.num_updates > 0 and np.isfinite(model.arena.data).all()
    assert not np.array_equal(model.arena.data, before)


def test_trainer_checkpoint_keeps_the_loss_scaler(tmp_path) -> None:
    X, y = _blobs()
    model = mlp(6, hidden=(8,), n_outputs=3, seed=1)
    scaler = fo.DynamicLossScaler(init_scale=2.0**127, growth_interval=3)
    trainer = _trainer(model, fo.AdamW(model.arena, lr=0.01), loss_scaler=scaler)
    trainer.fit(X, y, epochs=1)
    saved = scaler.state_dict()
    trainer.save_checkpoint(tmp_path / "c.npz")
    fresh = fo.DynamicLossScaler()
    model2 = mlp(6, hidden=(8,), n_outputs=3, seed=1)
    other = _trainer(model2, fo.AdamW(model2.arena, lr=0.01), loss_scaler=fresh)
    other.load_checkpoint(tmp_path / "c.npz")
    assert fresh.state_dict() == saved
    # A run without a scaler refuses the checkpoint, and one with a scaler refuses a
    # checkpoint without one; neither changes.
    model3 = mlp(6, hidden=(8,), n_outputs=3, seed=1)
    plain = _trainer(model3, fo.AdamW(model3.arena, lr=0.01))
    with pytest.raises(CheckpointError, match="loss scaler"):
        plain.load_checkpoint(tmp_path / "c.npz")
    plain.save_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(CheckpointError, match="loss scaler"):
        other.load_checkpoint(tmp_path / "plain.npz")
    assert fresh.state_dict() == saved


def test_trainer_refuses_a_bad_loss_scaler() -> None:
    model = mlp(6, hidden=(4,), n_outputs=3)
    opt = fo.SGD(model.arena, lr=0.1)
    with pytest.raises(TypeError, match="loss_scaler"):
        _trainer(model, opt, loss_scaler=2.0**16)
    fm = fo_function_model()
    with pytest.raises(ValueError, match="loss_scaler"):
        _trainer(fm, fo.SGD(fm.arena, lr=0.1), loss_scaler=fo.DynamicLossScaler())


def fo_function_model():
    from ferroptim.train import FunctionModel

    def loss_and_grads(params, X, y):
        return 0.0, {"w": np.zeros_like(params["w"])}

    return FunctionModel({"w": np.zeros(3, np.float32)}, loss_and_grads)


# -- low-precision models -------------------------------------------------------------


def test_bfloat16_model_is_the_float32_model_rounded() -> None:
    m32 = mlp(6, hidden=(16,), n_outputs=3, seed=5)
    m16 = mlp(6, hidden=(16,), n_outputs=3, seed=5, dtype="bfloat16")
    assert m16.arena.dtype == BF16 and m16.compute_dtype == F32
    assert m16.config()["dtype"] == "bfloat16"
    np.testing.assert_array_equal(
        m16.arena.data.view(np.uint16), m32.arena.data.astype(BF16).view(np.uint16)
    )
    # Forward computes in float32 from the bfloat16 params, as the float32 model
    # does from the same (rounded) values.
    m32.arena.data[...] = m16.arena.data.astype(F32)
    X, _ = _blobs(10)
    out16, out32 = m16.forward(X, train=False), m32.forward(X, train=False)
    assert out16.dtype == F32
    np.testing.assert_array_equal(out16, out32)
    m16.backward(np.ones_like(out16))
    m32.backward(np.ones_like(out32))
    np.testing.assert_array_equal(m16.arena.grad.astype(F32), m32.arena.grad.astype(F32))
    rebuilt = build_model(m16.config())
    np.testing.assert_array_equal(
        rebuilt.arena.data.view(np.uint16), m16.arena.data.view(np.uint16)
    )


def test_float16_model_computes_in_float16() -> None:
    m = mlp(6, hidden=(8,), n_outputs=3, seed=2, dropout=0.5, dtype="float16")
    assert m.arena.dtype == F16 and m.compute_dtype == F16
    X, _ = _blobs(10)
    out = m.forward(X, train=True)
    assert out.dtype == F16
    m.backward(np.ones_like(out))
    assert np.isfinite(m.arena.grad.astype(F32)).all()


def test_float16_training_backs_off_until_the_grads_fit_float16() -> None:
    X, y = _blobs()
    model = mlp(6, hidden=(16,), n_outputs=3, seed=0, dtype="float16")
    opt = fo.AdamW(model.arena, lr=0.01)
    # 2**24 times the loss's grad overflows float16 (max 65504): steps are skipped,
    # the scale halves each time, until the float16 backward pass fits.
    scaler = fo.DynamicLossScaler(init_scale=2.0**24, growth_interval=1000)
    trainer = _trainer(model, opt, loss_scaler=scaler)
    trainer.fit(X, y, epochs=3)
    skipped = opt.skipped_steps
    assert skipped >= 3 and scaler.get_scale() == 2.0 ** (24 - skipped)
    assert opt.num_updates + skipped == 3 * 8
    assert trainer.evaluate(X, y)["accuracy"] > 0.8


@pytest.mark.parametrize(
    "dtype, options",
    [
        ("bfloat16", {}),
        ("bfloat16", {"state_dtype": "int8"}),
        ("bfloat16", {"master_weights": False, "stochastic_rounding": True, "seed": 3}),
        ("float16", {"state_dtype": "bfloat16"}),
    ],
)
def test_low_precision_training_resumes_bitwise(tmp_path, dtype, options) -> None:
    X, y = _blobs()
    scaler = (lambda: fo.DynamicLossScaler()) if dtype == "float16" else (lambda: None)

    def make():
        model = mlp(6, hidden=(16,), n_outputs=3, dropout=0.1, seed=7, dtype=dtype)
        opt = fo.AdamW(model.arena, lr=0.01, **options)
        return _trainer(model, opt, loss_scaler=scaler()), model

    whole, m_whole = make()
    whole.fit(X, y, epochs=4)
    half, _ = make()
    half.fit(X, y, epochs=2)
    half.save_checkpoint(tmp_path / "c.npz")
    resumed, m_resumed = make()
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.fit(X, y, epochs=4, initial_epoch=resumed.epoch)
    assert m_whole.arena.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(
        m_whole.arena.data.view(np.uint16), m_resumed.arena.data.view(np.uint16)
    )
    assert whole.evaluate(X, y)["accuracy"] > 0.8


# -- the command line --------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--dataset", SMALL, "--hidden", "16", "--verbose", "0", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "flags, dtype, scaler",
    [
        (["--dtype", "bfloat16", "--opt", "state_dtype=int8"], BF16, None),
        (["--dtype", "float16"], F16, "dynamic"),
        (["--dtype", "float16", "--loss-scale", "none"], F16, None),
        (["--dtype", "float32", "--loss-scale", "1024"], F32, {"scale": 1024.0}),
    ],
)
def test_cli_dtype_and_loss_scale_end_to_end_with_resume(
    tmp_path, monkeypatch, capsys, flags, dtype, scaler
) -> None:
    monkeypatch.chdir(tmp_path)
    run = ["--epochs", "3", "--lr", "0.02", "--schedule", "constant", *flags]
    assert _cli(capsys, *run, "--out", "whole")[0] == 0
    assert _cli(capsys, *run, "--out", "part", "--stop-after", "1")[0] == 0
    code, out, err = _cli(capsys, "--resume", "part")
    assert code == 0, err
    assert "after 3 epochs" in out
    whole = checkpoint.load(tmp_path / "whole" / "last.npz")
    part = checkpoint.load(tmp_path / "part" / "last.npz")
    assert whole["params"].dtype == dtype and whole["dtype"] == dtype.name
    np.testing.assert_array_equal(
        whole["params"].view(f"u{dtype.itemsize}"), part["params"].view(f"u{dtype.itemsize}")
    )
    if scaler is None:
        assert whole["loss_scaler"] is None
    elif scaler == "dynamic":
        assert set(whole["loss_scaler"]) >= {"scale", "_growth_tracker"}
        assert whole["loss_scaler"] == part["loss_scaler"]
    else:
        assert whole["loss_scaler"] == scaler


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--dtype", "float8"], "--dtype"),
        (["--dtype", "int8"], "--dtype"),
        (["--loss-scale", "abc"], "--loss-scale"),
        (["--loss-scale", "0"], "--loss-scale"),
        (["--loss-scale", "-2"], "--loss-scale"),
        (["--loss-scale", "inf"], "--loss-scale"),
        (["--opt", "state_dtype=int4"], "state_dtype"),
        (["--optimizer", "sgd", "--opt", "no_such_option=1"], "no_such_option"),
    ],
)
def test_cli_bad_precision_flags_exit_2_naming_the_flag(
    tmp_path, monkeypatch, capsys, flags, flag
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "--epochs", "1", *flags)
    assert code == 2
    assert err.startswith("ferroptim train: error:") and flag in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_resume_refuses_another_loss_scale(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    run = ["--epochs", "2", "--loss-scale", "1024", "--out", "run", "--stop-after", "1"]
    assert _cli(capsys, *run)[0] == 0
    assert _cli(capsys, "--resume", "run", "--loss-scale", "1024.0")[0] == 0  # same value
    code, _, err = _cli(capsys, "--resume", "run", "--loss-scale", "dynamic")
    assert code == 2 and "--loss-scale" in err

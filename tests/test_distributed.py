"""ferroptim.distributed under mpirun: ZeRO-0/1/2 vs the single process, bytes sent,
state bytes, checkpoints across world sizes, dead and hung ranks, the CLI.

Each test starts ``mpirun`` on a script of tests/mpi_scripts with a timeout;
they skip, saying why, where mpi4py or mpirun is missing (``pip install
'ferroptim[mpi]'`` installs both).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).parent / "mpi_scripts"


def _mpirun() -> str | None:
    local = Path(sys.prefix) / "bin" / "mpirun"
    return str(local) if local.exists() else shutil.which("mpirun")


def _skip_reason() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed: pip install 'ferroptim[mpi]'"
    if _mpirun() is None:
        return "mpirun is not on PATH: pip install 'ferroptim[mpi]' (or a system Open MPI)"
    return None


needs_mpi = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def test_local_parts_cover_every_global_batch_once():
    from ferroptim.distributed.sampler import DistributedSampler, local_part
    from ferroptim.train.data import batches

    for size in (1, 2, 3, 4, 7):
        for idx in batches(50, 16, seed=3, epoch=1):
            parts = [local_part(idx, r, size) for r in range(size)]
            assert np.array_equal(np.concatenate(parts), idx)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
        samplers = [DistributedSampler(50, 16, r, size, seed=3) for r in range(size)]
        for got in zip(*(s.epoch(1) for s in samplers)):
            assert sum(share for _, share in got) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rank"):
        DistributedSampler(50, 16, 2, 2)


@needs_mpi
def test_bad_arguments_are_refused_naming_them():
    import ferroptim as fo
    from ferroptim.distributed import DistributedOptimizer
    from ferroptim.exceptions import HyperparameterError, ParamError

    arena = fo.ParamArena({"w": (3,)})
    with pytest.raises(HyperparameterError, match="stage"):
        DistributedOptimizer(fo.Adam, arena, stage=3)
    with pytest.raises(HyperparameterError, match="bucket_size"):
        DistributedOptimizer(fo.Adam, arena, bucket_size=0)
    with pytest.raises(HyperparameterError, match="timeout"):
        DistributedOptimizer(fo.Adam, arena, timeout=0)
    with pytest.raises(ParamError, match="ParamArena"):
        DistributedOptimizer(fo.Adam, [np.zeros(3)])
    opt = DistributedOptimizer(fo.Adam, arena, lr=0.1)  # one rank, no mpirun
    arena.grad[...] = 1.0
    with pytest.raises(HyperparameterError, match="weight"):
        opt.step(weight=-1.0)
    assert np.array_equal(arena.grad, np.ones(3))  # a refused call changes nothing
    assert opt.step() and opt.state_bytes() == 2 * 3 * 4
    two = fo.ParamArena({"w": (3,), "b": (2,)})
    opt = DistributedOptimizer(fo.Adam, [{"params": two.select("w")}], lr=0.1)
    opt.optimizer.add_param_group({"params": two.select("b")})
    with pytest.raises(ParamError, match="added after"):
        opt.step()


def mpirun(n: int, script: str, *args: object, timeout: float = 120, check: bool = True):
    cmd = [_mpirun() or "mpirun", "--oversubscribe", "-n", str(n)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    target = [sys.executable, str(SCRIPTS / script)] if script.endswith(".py") else [script]
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    proc = subprocess.run(
        cmd + target + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mpirun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def rows(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
def test_every_optimizer_and_stage_matches_the_single_process(n):
    names = [] if n == 4 else ["Adam", "NAdam", "SGD"]
    out = rows(mpirun(n, "equivalence.py", 10, *names))
    assert len(out) == (10 if n == 4 else 3) * 3 * 3
    for r in out:
        what = f"{r['optimizer']} {r['options']} stage {r['stage']}"
        # float64: the only difference is the order of the grad sums.
        assert r["param_rel"] < 1e-12, what
        assert r["state_rel"] < 1e-12, what
        assert r["same_keys"], what
        assert r["updates"] == r["ref_updates"], what
        per_elem = r["ref_state_bytes"] // r["size_elements"]
        if r["stage"] == 0:
            assert r["state_bytes"] == [r["ref_state_bytes"]] * n, what
        else:
            # 1/N of the state on every rank, within one element's slots.
            assert sum(r["state_bytes"]) == r["ref_state_bytes"], what
            assert max(r["state_bytes"]) - min(r["state_bytes"]) <= per_elem, what


@needs_mpi
def test_same_world_size_is_bitwise_reproducible():
    first = rows(mpirun(2, "equivalence.py", 6, "AdamW", "RMSprop"))
    again = rows(mpirun(2, "equivalence.py", 6, "AdamW", "RMSprop"))
    assert [r["digest"] for r in first] == [r["digest"] for r in again]


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
def test_bytes_sent_are_the_ring_minimum(n):
    out = rows(mpirun(n, "bytes_sent.py", 1001))
    assert [r["stage"] for r in out] == [0, 1, 2]
    for r in out:
        sent = [x["sent"] for x in r["ranks"]]
        assert sent == [x["exact"] for x in r["ranks"]]
        # Chunks differ by one element at most: within one element per pass.
        passes = 3 if r["stage"] == 1 else 2
        assert all(abs(s - r["formula"]) <= passes * 4 for s in sent)
        state = [x["state"] for x in r["ranks"]]
        if r["stage"] == 0:
            assert state == [1001 * 8] * n
        else:
            assert sum(state) == 1001 * 8 and max(state) - min(state) <= 8


def _reference(tmp_path, steps):
    mpirun(1, "ckpt.py", "save", tmp_path / "ref", steps, 0)
    return pickle.loads((tmp_path / "ref").read_bytes())


@needs_mpi
def test_checkpoint_saved_at_4_ranks_resumes_at_2_and_1(tmp_path):
    import ferroptim as fo

    sys.path.insert(0, str(SCRIPTS))
    try:
        from common import groups, init_arena
    finally:
        sys.path.remove(str(SCRIPTS))
    ref = _reference(tmp_path, 12)
    mpirun(4, "ckpt.py", "save", tmp_path / "a", 6, 2)
    saved = pickle.loads((tmp_path / "a").read_bytes())
    # The gathered state is the single-process format: a plain AdamW loads it.
    arena = init_arena(0)
    plain = fo.AdamW(groups(arena, 1e-2), lr=1e-2, weight_decay=0.1, ema_decay=0.9)
    plain.load_state_dict(saved["optimizer"])
    assert set(plain.state_dict()["state"]) == {"w1", "b1", "w2", "z", "b2"}
    for n, stage in ((2, 1), (1, 2), (4, 0)):
        mpirun(n, "ckpt.py", "resume", tmp_path / "a", 6, stage)
        out = pickle.loads((tmp_path / "a.out").read_bytes())
        for key in ("params", "averaged"):
            np.testing.assert_allclose(out[key], ref[key], rtol=1e-12, atol=1e-15)
        for name, entry in ref["optimizer"]["state"].items():
            for slot, value in entry.items():
                np.testing.assert_allclose(
                    out["optimizer"]["state"][name][slot], value, rtol=1e-12, atol=1e-15
                )


@needs_mpi
@pytest.mark.parametrize("fault", ["die", "hang"])
def test_a_lost_rank_stops_every_rank_and_the_checkpoint_resumes(tmp_path, fault):
    import ferroptim as fo

    path = tmp_path / "ckpt"
    # A hang would run into the subprocess timeout (a failure), never pass.
    proc = mpirun(4, "fault.py", fault, path, timeout=90, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "finished" not in text
    if fault == "die":
        assert "Exit code:    7" in text and ",3]" in text  # mpirun names rank 3
    else:
        assert "rank(s) [3] never reached it" in text
    saved = pickle.loads(path.read_bytes())
    assert saved["step"] == 3
    sys.path.insert(0, str(SCRIPTS))
    try:
        from common import init_arena
    finally:
        sys.path.remove(str(SCRIPTS))
    arena = init_arena(0)
    arena.data[...] = saved["params"]
    opt = fo.Adam(arena, lr=1e-2)
    opt.load_state_dict(saved["optimizer"])
    arena.grad[...] = 1.0
    assert opt.step() and opt.step_counts == [4] * 5


@needs_mpi
def test_train_distributed_rank0_writes_and_a_single_process_resumes(tmp_path):
    from ferroptim.train import checkpoint

    out = tmp_path / "run"
    # With an EMA: evaluating the averaged weights (the plot's title too) is collective.
    flags = ["--dataset", "iris", "--hidden", "8", "--epochs", "2", "--batch-size", "16"]
    flags += ["--ema-decay", "0.9", "--max-grad-norm", "1"]
    proc = mpirun(
        2,
        sys.executable,
        "-m",
        "ferroptim",
        "train",
        "--distributed",
        "--zero-stage",
        "2",
        "--mpi-timeout",
        "30",
        *flags,
        "--out",
        out,
        timeout=240,
    )
    # Rank 0 alone shows progress and the last line; every file is written once.
    assert proc.stdout.count("test accuracy") == 1, proc.stdout
    assert "on 2 ranks (ZeRO stage 2)" in proc.stdout
    assert {p.name for p in out.iterdir()} >= {"history.csv", "last.npz", "best.npz", "curves.png"}
    state = checkpoint.load(out / "last.npz")
    # The single-process format: the optimizer's own class, name-keyed state.
    assert state["optimizer_class"] == "AdamW"
    assert state["config"]["argv"] == [*flags, "--out", str(out)]
    assert set(state["optimizer"]["state"]) == set(state["layout"])
    env = {**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    again = subprocess.run(
        [sys.executable, "-m", "ferroptim", "train", "--resume", str(out), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert checkpoint.load(out / "last.npz")["epoch"] == 3


@needs_mpi
@pytest.mark.parametrize(
    "flags",
    [["--epochs", "0"], ["--resume", "/nonexistent/run"], ["--dtype", "bfloat16"]],
)
def test_train_distributed_bad_flag_is_one_line_and_exit_2(flags):
    proc = mpirun(
        2,
        sys.executable,
        "-m",
        "ferroptim.distributed.train",
        "--distributed",
        *flags,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("ferroptim train: error:") == 1, proc.stderr
    assert "aborting" not in proc.stderr


@needs_mpi
def test_nonfinite_grads_on_one_rank_skip_every_rank_and_the_norm_is_global():
    out = rows(mpirun(4, "nonfinite.py"))
    assert [r["stage"] for r in out] == [0, 1, 2]
    for r in out:
        for rank in r["ranks"]:
            assert rank["skipped"] and rank["unchanged"] and rank["skipped_steps"] == 1
            assert rank["stepped"]
            assert rank["norm"] == pytest.approx(3 * np.sqrt(10), rel=1e-14)
            # Clipped to norm 1 (torch's coefficient max_norm / (norm + 1e-6)).
            step = 0.1 * 3 / (3 * np.sqrt(10) + 1e-6)
            np.testing.assert_allclose(rank["params"], -step, rtol=1e-12)

"""ferroptim.torch.AdamW as the inner optimizer of torch's ZeroRedundancyOptimizer.

Two processes on this machine (torch.multiprocessing spawn, gloo backend) train
the same small model on the same batch, each stepping its shard of the params
with ferroptim and broadcasting it; the result must equal one process running
ferroptim.torch.AdamW on the whole model. The consolidated state_dict goes back
into a fresh ZeroRedundancyOptimizer on both ranks, and training continues
equal to the plain run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip(
    "torch",
    reason="torch is not installed (CPU build: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)",
)
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

KW = {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4), torch.nn.Linear(4, 2)
    )


def _train(model: Any, opt: Any, steps: int) -> None:
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(32, 6, generator=gen), torch.randn(32, 2, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank: int, world: int, init: str, out: str) -> None:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import ferroptim.torch as fot

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = _model()
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=fot.AdamW, **KW)
        assert isinstance(opt.optim, fot.AdamW)
        _train(model, opt, 5)
        opt.consolidate_state_dict(to=0)
        sd = [opt.state_dict() if rank == 0 else None]
        dist.broadcast_object_list(sd, src=0)
        saved = copy.deepcopy(sd[0])  # ZeRO's load_state_dict blanks other ranks' entries
        fresh = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=fot.AdamW, **KW)
        fresh.load_state_dict(sd[0])
        mid = [p.detach().clone() for p in model.parameters()]
        _train(model, fresh, 3)
        if rank == 0:
            final = [p.detach().clone() for p in model.parameters()]
            torch.save({"mid": mid, "sd": saved, "final": final}, Path(out) / "rank0.pt")
    finally:
        dist.destroy_process_group()


def test_zero_redundancy_optimizer_over_gloo_matches_the_plain_run(tmp_path: Path) -> None:
    import ferroptim.torch as fot

    init = f"file://{tmp_path / 'init'}"
    torch.multiprocessing.spawn(_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "rank0.pt")

    model = _model()
    opt = fot.AdamW(model.parameters(), **KW)
    _train(model, opt, 5)
    for a, b in zip(got["mid"], model.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    plain = opt.state_dict()
    assert got["sd"]["state"].keys() == plain["state"].keys()
    for i, st in plain["state"].items():
        for key, value in st.items():
            torch.testing.assert_close(got["sd"]["state"][i][key], value, rtol=0, atol=0)
    _train(model, opt, 3)
    for a, b in zip(got["final"], model.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)

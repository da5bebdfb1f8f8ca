"""ferroptim.torch reads grads by address when it can (``_addresses``): the
same numbers as the NumPy-view path, and every grad it cannot read that way
goes through the checked path instead."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import ferroptim.torch as fot  # noqa: E402
from ferroptim.exceptions import GradError  # noqa: E402


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _train(opt_cls, steps: int, grads_as: str) -> list[np.ndarray]:
    model = _model()
    opt = opt_cls(model.parameters(), lr=0.01)
    calls = {"fast": 0}
    real = opt._engine.step_addresses_unchecked

    class Spy:
        def __getattr__(self, name):
            return getattr(real.__self__, name)

        def step_addresses_unchecked(self, *args, **kw):
            calls["fast"] += 1
            return real(*args, **kw)

    opt._engine = Spy()
    x = torch.randn(16, 7, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        if grads_as == "transposed":
            for p in model.parameters():
                if p.ndim == 2:  # same values, strided memory: not readable in place
                    p.grad = p.grad.t().contiguous().t()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()], calls["fast"]


@pytest.mark.parametrize("opt_cls", [fot.AdamW, fot.SGD, fot.NAdam])
def test_grads_read_by_address_give_the_same_numbers_as_views(opt_cls):
    fast, n_fast = _train(opt_cls, 5, "autograd")
    slow, n_slow = _train(opt_cls, 5, "transposed")
    assert n_fast == 5 and n_slow == 0
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_a_grad_sharing_memory_with_its_param_is_refused_on_the_fast_path():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = fot.SGD([p], lr=0.1)
    p.grad = p.detach()  # contiguous, right dtype and size: only the address check can catch it
    with pytest.raises(GradError, match="shares memory"):
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(4))


def test_a_shrunk_grad_is_not_read_past_its_end():
    p = torch.nn.Parameter(torch.zeros(6))
    opt = fot.SGD([p], lr=0.1)
    p.grad = torch.ones(6)
    p.grad.resize_(3)  # numel 3 now: the fast path must not read 6 elements
    with pytest.raises(GradError, match="shape"):
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(6))


class _Recorder:
    """The engine, with the name of each step method called recorded."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def step(self, *args, **kw):
        self.calls.append("views")
        return self.engine.step(*args, **kw)

    def step_addresses_unchecked(self, *args, **kw):
        self.calls.append("addresses")
        return self.engine.step_addresses_unchecked(*args, **kw)


def test_kept_grads_step_by_address_once_their_views_were_checked():
    model, ref = _model(), _model()
    opt = fot.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1)
    rec = opt._engine = _Recorder(opt._engine)
    x = torch.randn(16, 7, generator=torch.Generator().manual_seed(1))
    for m in (model, ref):
        m(x).square().mean().backward()
    for _ in range(4):  # the same grad tensors each step
        opt.step()
        ref_opt.step()
    # New grads by address, the same again through views (checked), then the
    # checked views by their addresses.
    assert rec.calls == ["addresses", "views", "addresses", "addresses"]
    opt.zero_grad(set_to_none=False)  # zeroed in place: the same views
    ref_opt.zero_grad(set_to_none=False)
    for m in (model, ref):
        m(x).square().mean().backward()
    opt.step()
    ref_opt.step()
    assert rec.calls[-1] == "addresses"
    model[0].bias.grad = None  # the views list changes: checked again
    ref[0].bias.grad = None
    opt.step()
    opt.step()
    ref_opt.step()
    ref_opt.step()
    assert rec.calls[-2:] == ["views", "addresses"]
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "make_grad",
    [
        lambda: torch.ones(1).expand(8),  # stride 0: one element in memory
        lambda: torch.arange(8.0).reshape(2, 4).t().reshape(8),  # a copy: contiguous
        lambda: torch.arange(16.0)[::2],  # strided
    ],
    ids=["expanded", "contiguous", "strided"],
)
def test_kept_grads_the_engine_copies_are_never_stepped_by_address(make_grad):
    p, q = torch.nn.Parameter(torch.zeros(8)), torch.nn.Parameter(torch.zeros(8))
    p.grad, q.grad = make_grad(), make_grad()
    opt, ref = fot.SGD([p], lr=1.0), torch.optim.SGD([q], lr=1.0)
    for _ in range(4):
        opt.step()
        ref.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)

"""torch's own mixed precision drives ferroptim.torch optimizers unchanged:
``torch.autocast`` for the forward pass and ``torch.amp.GradScaler("cpu")``
unscaling the grads, skipping the step on an overflow and moving the scale,
exactly as it does for torch.optim (the two-line change of the README keeps
a torch AMP loop working).
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
fot = pytest.importorskip("ferroptim.torch")

# Steps at which one grad is made infinite: the scaler must skip them.
OVERFLOW_STEPS = (4, 9)


def _train(opt_factory, steps: int = 14, dtype=torch.bfloat16):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.ReLU(), torch.nn.Linear(24, 3))
    X = torch.randn(48, 12)
    y = torch.randint(0, 3, (48,))
    opt = opt_factory(net.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    scales, params, skipped = [], [], []
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=dtype):
            loss = torch.nn.functional.cross_entropy(net(X), y)
        scaler.scale(loss).backward()
        if step in OVERFLOW_STEPS:
            net[0].weight.grad[1, 2] = float("inf")
        before = [p.detach().clone() for p in net.parameters()]
        scaler.step(opt)
        scaler.update()
        after = [p.detach().clone() for p in net.parameters()]
        skipped.append(all(torch.equal(a, b) for a, b in zip(before, after)))
        scales.append(scaler.get_scale())
        params.append(after)
    return scales, params, skipped


@pytest.mark.parametrize("name", ["AdamW", "SGD", "RMSprop", "NAdam"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_grad_scaler_and_autocast_drive_ferroptim_as_torch_optim(name, dtype):
    # RMSprop's first steps are lr-sized whatever the grad: at lr 1e-2, one
    # ulp of difference flips float16 roundings of the forward pass later on.
    kwargs = {"SGD": {"lr": 0.01, "momentum": 0.9}, "RMSprop": {"lr": 1e-3}}.get(name, {"lr": 0.01})
    ours = _train(lambda p: getattr(fot, name)(p, **kwargs), dtype=dtype)
    theirs = _train(lambda p: getattr(torch.optim, name)(p, foreach=False, **kwargs), dtype=dtype)
    # The scale's whole trajectory (growth, and backoff at each overflow).
    assert ours[0] == theirs[0]
    assert ours[0][OVERFLOW_STEPS[0]] < ours[0][OVERFLOW_STEPS[0] - 1]
    # The overflow steps, and only they, left the params untouched.
    assert ours[2] == theirs[2]
    assert [i for i, s in enumerate(ours[2]) if s] == list(OVERFLOW_STEPS)
    for step, (a, b) in enumerate(zip(ours[1], theirs[1], strict=True)):
        for x, y in zip(a, b, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=f"step {step}")


def test_an_overflow_leaves_the_optimizer_state_untouched():
    """A skipped step must not count a step or move a moment: the state
    after an overflow equals the state before it."""
    torch.manual_seed(1)
    net = torch.nn.Linear(6, 2)
    opt = fot.AdamW(net.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    for step in range(3):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = net(torch.randn(5, 6)).square().mean()
        scaler.scale(loss).backward()
        if step == 2:
            saved = copy.deepcopy(opt.state_dict())
            net.weight.grad[0, 0] = float("nan")
        scaler.step(opt)
        scaler.update()
    now = opt.state_dict()
    for key, state in saved["state"].items():
        for slot, value in state.items():
            assert torch.equal(torch.as_tensor(now["state"][key][slot]), torch.as_tensor(value))

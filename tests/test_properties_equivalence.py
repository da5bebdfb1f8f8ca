"""Properties: the thread count changes no bit, and a state_dict round trip
then continuing equals continuing (issue 11, "Also").

Over every optimizer class and step option (tests/strategies.py): params and
state after the same calls are bitwise equal with 1 and 2 threads (some
examples hold a tensor above the engine's 64k-element parallel threshold); a
fresh optimizer on copies of the params, loaded from a state_dict taken after
any call (mid accumulation cycle too, with EMA, named params given in another
order), then stepped alongside the original, stays bitwise equal to it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import ferroptim as fo
from strategies import BIG_SHAPE, Run, Setup, bits, setups

# As in test_properties.py: reproducible examples, no deadline on a loaded machine.
PROPERTY = settings(max_examples=250, deadline=None, derandomize=True)


@pytest.fixture(scope="module")
def restore_threads() -> Iterator[None]:
    before = fo.get_num_threads()
    yield
    fo.set_num_threads(before)


def comparable(run: Run) -> Any:
    """Params, state and counts keyed by param (name or position), so that two
    optimizers holding the params in another order compare equal."""
    opt = run.opt
    keys = opt.param_names or list(range(len(opt.params)))
    sd = opt.state_dict()
    for group in sd["param_groups"]:
        group["params"] = sorted(group["params"], key=str)
    return bits(
        {
            "params": [p.copy() for p in run.param_list()],
            "state_dict": sd,
            "step_counts": dict(zip(keys, opt.step_counts)),
            "frozen": sorted(map(str, opt.frozen)),
        }
    )


def run_with_threads(s: Setup, threads: int, calls: int) -> Any:
    fo.set_num_threads(threads)
    run = Run(s)
    run.steps(calls)
    return bits(
        {
            "all": comparable(run),
            "skipped": run.opt.skipped_steps,
            "num_updates": run.opt.num_updates,
            "last_grad_norm": run.opt.last_grad_norm,
        }
    )


@settings(PROPERTY, max_examples=100)
@given(s=setups(big=True), calls=st.integers(1, 6))
def test_thread_count_changes_no_bit(restore_threads: None, s: Setup, calls: int) -> None:
    event(f"above the parallel threshold: {BIG_SHAPE in s.shapes}")
    assert run_with_threads(s, 1, calls) == run_with_threads(s, 2, calls)


def check_round_trip(s: Setup, first: int, then: int, reverse: bool) -> None:
    # The global grad norm sums the params in their order: params given in
    # another order may clip by a factor one ulp apart, as in torch.
    reverse = reverse and "max_grad_norm" not in s.options
    a = Run(s)
    a.steps(first)
    sd = a.opt.state_dict()
    event(f"mid-cycle: {'accumulation' in sd}, averaging: {'ema' in str(s.options)}")
    b = Run(s, params=[p.copy() for p in a.param_list()], reverse_names=reverse)
    b.opt.load_state_dict(copy.deepcopy(sd))
    b.calls = a.calls  # the same grads from here on
    assert comparable(b) == comparable(a), "the loaded optimizer differs"
    a.steps(then)
    b.steps(then)
    assert comparable(b) == comparable(a), "the loaded optimizer steps differently"
    assert not any(np.shares_memory(p, q) for p in a.opt.params for q in b.opt.params)


@PROPERTY
@given(s=setups(), first=st.integers(0, 7), then=st.integers(1, 5), reverse=st.booleans())
def test_state_dict_round_trip_then_continue(
    s: Setup, first: int, then: int, reverse: bool
) -> None:
    """Taken after any call: before any step, after steps, with EMA, frozen params..."""
    check_round_trip(s, first, then, reverse)


@settings(PROPERTY, max_examples=120)
@given(
    s=setups(accumulate=(2, 3)),
    cycles=st.integers(0, 2),
    into=st.integers(1, 2),
    then=st.integers(1, 5),
    reverse=st.booleans(),
)
def test_state_dict_round_trip_mid_cycle(
    s: Setup, cycles: int, into: int, then: int, reverse: bool
) -> None:
    """Taken with micro-batch grads pending: the loaded optimizer sums them too."""
    first = cycles * s.accumulate + min(into, s.accumulate - 1)
    check_round_trip(s, first, then, reverse)

"""Property: a failed call changes nothing (issue 11, "Also").

Over every optimizer class and step option (tests/strategies.py), a call that
fails -- a bad grad, a bad param-group value, a read-only param, a bad
state_dict, a bad add_param_group, a step inside averaged_params() -- must
raise one of the package's exceptions and leave params, state, accumulation
buffers and counters bitwise as they were. Each kind of fault is a pytest
parameter (its own example budget); hypothesis picks the run, the param the
fault hits and the call it lands on within an accumulation cycle. A clean run
without the fault must then end bitwise equal to the faulted one after both
take the same further steps.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from strategies import BAD_VALUES, CLASSES, PACKAGE_ERRORS, Run, Setup, setups, snapshot

GRAD_FAULTS = ["shape", "dtype", "int_dtype", "count", "nonarray", "single_array", "overlap"]
SD_FAULTS = [
    "other_class",
    "unknown_param",
    "unknown_slot",
    "slot_shape",
    "complex_slot",
    "string_slot",
    "bool_step",
    "group_count",
    "group_value",
    "not_mapping",
    "acc_shape",
    "acc_calls",
    "acc_unknown",
]

# derandomize: CI runs the same examples every time (no example database needed).
# deadline=None: a step's time depends on the machine's load, not on the code.
PROPERTY = settings(max_examples=250, deadline=None, derandomize=True)
EACH = settings(PROPERTY, max_examples=40)


def bad_grad(fault: str, g: np.ndarray, p: np.ndarray) -> Any:
    other = np.float64 if g.dtype == np.float32 else np.float32
    if fault == "shape":
        return np.zeros((*g.shape, 2), g.dtype)
    if fault == "dtype":
        return g.astype(other)
    if fault == "int_dtype":
        return np.zeros(g.shape, np.int64)
    if fault == "nonarray":
        return g.tolist() if g.ndim else float(g)
    if fault == "overlap":
        return p  # the param itself
    raise AssertionError(fault)


def corrupt(run: Run, sd: dict[str, Any], how: str, data: Any) -> Any:
    """A copy of ``sd`` with one fault, or None when ``sd`` has nothing to corrupt that way."""
    sd = copy.deepcopy(sd)
    state, groups = sd["state"], sd["param_groups"]
    bogus = "nope" if run.opt.param_names is not None else 999
    arrays = [
        (k, slot) for k, e in state.items() for slot, v in e.items() if isinstance(v, np.ndarray)
    ]
    if how == "other_class":
        sd["optimizer"] = data.draw(
            st.sampled_from([c.__name__ for c in CLASSES if c is not run.setup.cls])
        )
    elif how == "unknown_param":
        sd["state"][bogus] = {"step": 1}
    elif how in ("unknown_slot", "bool_step"):
        if not state:
            return None
        entry = state[data.draw(st.sampled_from(sorted(state, key=str)))]
        if how == "unknown_slot":
            entry["bogus_slot"] = np.zeros(1)
        else:
            entry["step"] = True
    elif how in ("slot_shape", "complex_slot", "string_slot"):
        if not arrays:
            return None
        key, slot = data.draw(st.sampled_from(arrays))
        v = state[key][slot]
        state[key][slot] = {
            "slot_shape": lambda: np.zeros((*v.shape, 2), v.dtype),
            "complex_slot": lambda: v.astype(np.complex128) + 1j,
            "string_slot": lambda: np.full(v.shape, "a"),
        }[how]()
    elif how == "group_count":
        if len(groups) > 1 and data.draw(st.booleans()):
            groups.pop()
        else:
            groups.append(copy.deepcopy(groups[0]))
    elif how == "group_value":
        key, value = data.draw(st.sampled_from([kv for kv in BAD_VALUES if kv[0] in groups[0]]))
        groups[data.draw(st.integers(0, len(groups) - 1))][key] = value
    elif how == "not_mapping":
        return data.draw(st.sampled_from([[], "state", None, {"state": {}}]))
    elif how.startswith("acc_"):
        acc = sd.get("accumulation")
        if acc is None:
            return None
        if how == "acc_shape":
            if not acc["buffers"]:
                return None
            key = data.draw(st.sampled_from(sorted(acc["buffers"], key=str)))
            acc["buffers"][key] = np.zeros((*acc["buffers"][key].shape, 2))
        elif how == "acc_calls":
            acc["calls"] = data.draw(st.sampled_from([run.setup.accumulate, -1, 1.0, "1"]))
        else:
            acc["buffers"][bogus] = np.zeros(1)
    return sd


def is_frozen(run: Run, target: int) -> bool:
    key = run.setup.names[target] if run.opt.param_names is not None else target
    return key in run.opt.frozen


def stepping_call(s: Setup, cycles: int) -> int:
    """How many valid calls come before one that steps (the last of a cycle)."""
    return cycles * s.accumulate + s.accumulate - 1


def check_failure(run: Run, after: int, inject: Any) -> None:
    """``inject()`` sets up a fault and returns (failing call, undo or None).
    The call must raise a package error and change nothing; the run then goes
    on exactly as a clean run of the same Setup."""
    before = run.calls
    was = snapshot(run)  # before the fault is set up (a group value, a read-only flag)
    call, undo = inject()
    with pytest.raises(PACKAGE_ERRORS):
        call()
    if undo is not None:
        undo()
    assert snapshot(run) == was, "the failed call changed the optimizer"
    # Nothing hidden moved either: later steps do what a clean run's do.
    run.steps(after)
    clean = Run(run.setup)
    clean.steps(before + after)
    assert snapshot(run) == snapshot(clean), "the failed call changed what later steps do"


# Each fault kind gets its own budget: one hypothesis run over all kinds,
# derandomized, spends most examples on the first few kinds.
@pytest.mark.parametrize("fault", [*GRAD_FAULTS, "unknown_name"])
@EACH
@given(before=st.integers(0, 5), after=st.integers(1, 3), data=st.data())
def test_bad_grad_changes_nothing(fault: str, before: int, after: int, data: Any) -> None:
    """Any call within an accumulation cycle, any param."""
    layouts = {"count": ("list", "groups"), "unknown_name": ("named",)}
    # Accumulating calls copy the grad: see test_overlapping_grad_refused_under_accumulate.
    acc = (1, 1) if fault == "overlap" else (1, 3)
    s = data.draw(setups(layouts=layouts.get(fault, ("list", "groups", "named")), accumulate=acc))
    run = Run(s)
    run.steps(before)
    grads: list[Any] = run.grads(run.calls)
    target = data.draw(st.integers(0, len(s.shapes) - 1), label="target param")
    p = run.param_list()[target]
    if fault == "overlap":
        # Accumulating calls copy the grad: see test_overlapping_grad_refused_under_accumulate.
        assume(p.size > 0)
    if fault not in ("count", "single_array", "unknown_name"):
        # Frozen params' grads go unchecked: see test_frozen_param_grad_checked.
        assume(not (is_frozen(run, target) and s.accumulate == 1))
    if fault == "count":
        grads = grads[:-1] if data.draw(st.booleans()) else [*grads, grads[0]]
    elif fault == "single_array":
        check_failure(run, after, lambda: ((lambda: run.opt.step(np.zeros(3, s.dtype))), None))
        return
    elif fault == "unknown_name":
        named = {n: g for n, g in zip(s.names, grads) if g is not None}
        call = lambda: run.opt.step({**named, "no_such_param": np.zeros(1, s.dtype)})  # noqa: E731
        check_failure(run, after, lambda: (call, None))
        return
    else:
        base = grads[target]
        grads[target] = bad_grad(fault, np.zeros(p.shape, s.dtype) if base is None else base, p)
    check_failure(run, after, lambda: ((lambda: run.pass_grads(grads)), None))


@PROPERTY
@given(s=setups(layouts=("arena",)), before=st.integers(0, 4), after=st.integers(1, 3))
def test_arena_given_grads_changes_nothing(s: Setup, before: int, after: int) -> None:
    run = Run(s)
    run.steps(before)
    grads = [g for g in run.grads(run.calls) if g is not None]
    check_failure(run, after, lambda: ((lambda: run.opt.step(grads)), None))


@PROPERTY
@given(s=setups(), cycles=st.integers(0, 2), after=st.integers(1, 3), data=st.data())
def test_bad_group_value_changes_nothing(s: Setup, cycles: int, after: int, data: Any) -> None:
    """On the call that steps: earlier calls of a cycle only buffer grads."""
    run = Run(s)
    run.steps(stepping_call(s, cycles))
    gid = data.draw(st.integers(0, len(run.opt.param_groups) - 1), label="group")
    group = run.opt.param_groups[gid]
    key, value = data.draw(st.sampled_from([kv for kv in BAD_VALUES if kv[0] in group]))
    event(f"key: {key}")
    old = group[key]

    def inject() -> Any:
        group[key] = value
        return (lambda: run.step()), (lambda: group.__setitem__(key, old))

    check_failure(run, after, inject)


@PROPERTY
@given(
    s=setups(layouts=("list", "groups", "named")),
    cycles=st.integers(0, 2),
    after=st.integers(1, 3),
    data=st.data(),
)
def test_readonly_param_changes_nothing(s: Setup, cycles: int, after: int, data: Any) -> None:
    """Refused where the engine would write: an unfrozen param with a grad
    (empty or not), on the call that steps."""
    run = Run(s)
    run.steps(stepping_call(s, cycles))
    target = data.draw(st.integers(0, len(s.shapes) - 1), label="target param")
    assume(not is_frozen(run, target))
    grads = run.grads(run.calls)
    if grads[target] is None:
        grads[target] = np.ones(s.shapes[target], s.dtype)
    p = run.param_list()[target]

    def inject() -> Any:
        p.flags.writeable = False
        return (lambda: run.pass_grads(grads)), (lambda: p.setflags(write=True))

    check_failure(run, after, inject)


@pytest.mark.parametrize("how", SD_FAULTS)
@EACH
@given(before=st.integers(0, 5), after=st.integers(1, 3), data=st.data())
def test_bad_state_dict_changes_nothing(how: str, before: int, after: int, data: Any) -> None:
    """Mid-cycle or not, with state or not (the fault needs something to corrupt)."""
    s = data.draw(setups(accumulate=(2, 3) if how.startswith("acc_") else (1, 3)))
    if how.startswith("acc_"):
        before = before // s.accumulate * s.accumulate + 1 + before % (s.accumulate - 1)
    elif how in ("unknown_slot", "bool_step", "slot_shape", "complex_slot", "string_slot"):
        before = max(before, s.accumulate)  # at least one step: some state to corrupt
    run = Run(s)
    run.steps(before)
    bad = corrupt(run, run.opt.state_dict(), how, data)
    assume(bad is not None or how == "not_mapping")
    check_failure(run, after, lambda: ((lambda: run.opt.load_state_dict(bad)), None))


GROUP_FAULTS = ["bad_value", "same_array", "overlapping_view", "empty", "int_dtype", "mixed"]


@pytest.mark.parametrize("fault", GROUP_FAULTS)
@EACH
@given(before=st.integers(0, 5), after=st.integers(1, 3), data=st.data())
def test_bad_add_param_group_changes_nothing(
    fault: str, before: int, after: int, data: Any
) -> None:
    """A refused group registers nothing: later steps still take the old params' grads."""
    s = data.draw(setups())
    run = Run(s)
    run.steps(before)
    held = run.param_list()
    target = data.draw(st.integers(0, len(held) - 1), label="target param")
    fresh: Any = [np.ones(2, s.dtype)]
    if s.layout in ("named", "arena"):
        fresh = {"fresh": fresh[0]}
    group: dict[str, Any] = {"params": fresh}
    if fault == "bad_value":
        key, value = data.draw(st.sampled_from([kv for kv in BAD_VALUES if kv[0] in s.hypers]))
        group[key] = value
    elif fault in ("same_array", "overlapping_view"):
        assume(s.layout != "arena" and held[target].size > 0)
        p = held[target] if fault == "same_array" else held[target].reshape(-1)[:1]
        group["params"] = {"fresh": p} if s.layout == "named" else [np.ones(2, s.dtype), p]
    elif fault == "empty":
        group["params"] = {} if s.layout in ("named", "arena") else []
    elif fault == "int_dtype":
        ints = np.ones(2, np.int64)
        group["params"] = {"fresh": ints} if s.layout == "named" else [ints]
    else:  # unnamed arrays into a named or arena-built optimizer, or the other way round
        group["params"] = [np.ones(2, s.dtype)] if isinstance(fresh, dict) else {"fresh": fresh[0]}
    check_failure(run, after, lambda: ((lambda: run.opt.add_param_group(group)), None))


@EACH
@given(s=setups(), before=st.integers(0, 5), after=st.integers(1, 3), load=st.booleans())
def test_refused_inside_averaged_params_changes_nothing(
    s: Setup, before: int, after: int, load: bool
) -> None:
    """``step``/``load_state_dict`` inside ``averaged_params()`` are refused, and
    the training weights come back on exit."""
    assume("ema_decay" in s.options or "ema_equal_weights" in s.options)
    run = Run(s)
    run.steps(before)
    grads, sd = run.grads(run.calls), run.opt.state_dict()

    def call() -> None:
        with run.opt.averaged_params():
            run.opt.load_state_dict(sd) if load else run.pass_grads(grads)

    check_failure(run, after, lambda: (call, None))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_bad_value(cls: type) -> None:
    """The group-value fault reaches every class: each has keys in BAD_VALUES."""
    group = cls([np.zeros(2)]).param_groups[0]
    assert [k for k, _ in BAD_VALUES if k in group]


# Found by the properties above (the engine and the accumulating calls
# disagreed); fixed, kept as regressions.
@pytest.mark.parametrize("bad", ["shape", "dtype", "nonarray"])
def test_frozen_param_grad_checked(bad: str) -> None:
    """A frozen param takes no step, but a wrong grad for it is still an error."""
    w, b = np.ones(3), np.ones(2)
    opt = CLASSES[1]([w, b])
    opt.freeze(0)
    with pytest.raises(PACKAGE_ERRORS):
        opt.step([bad_grad(bad, np.ones(3), w), np.ones(2)])
    assert opt.step_counts == [0, 0]


@pytest.mark.parametrize("accumulate", [2, 3])
def test_overlapping_grad_refused_under_accumulate(accumulate: int) -> None:
    w, b = np.ones(3), np.ones(3)
    opt = CLASSES[1]([w, b], accumulate=accumulate)
    # Its own param, or another param, on the first call of a cycle.
    for grads in ([w, np.ones(3)], [np.ones(3), b[:]], [b, np.ones(3)]):
        with pytest.raises(PACKAGE_ERRORS, match="shares memory"):
            opt.step(grads)
    assert opt.state_dict().get("accumulation") is None

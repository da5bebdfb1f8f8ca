"""The README's Python examples run as written."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _block(marker: str) -> str:
    found = [b for b in BLOCKS if marker in b]
    assert len(found) == 1, f"expected one README block containing {marker!r}"
    return found[0]


def test_quickstart_updates_in_place():
    scope: dict = {}
    exec(_block("opt.step([gw, gb])"), scope)
    # The last optimizer built (named params) took one AdamW step on ones.
    w, b = scope["w"], scope["b"]
    assert np.all(w < 0) and np.all(b < 0)


def test_low_precision_example_runs():
    pytest.importorskip("ml_dtypes")
    scope: dict = {}
    exec(_block('state_dtype="int8"'), scope)
    w, opt = scope["w"], scope["opt"]
    assert np.all(w.astype(np.float32) == np.float32(-1e-3).astype(w.dtype).astype(np.float32))
    opt.step([np.ones(scope["w32"].shape, np.float32)])
    state = opt.state_dict()["state"][0]
    assert state["exp_avg"].dtype == np.uint8 and state["exp_avg_absmax"].size == 4096


def test_arena_example_runs():
    scope: dict = {"np": np}
    setup = "import numpy as np, ferroptim as fo\n"
    exec(setup + _block('arena.select(["w1", "w2"])'), scope)
    assert scope["opt"].step_counts == [1, 1, 1, 1]


def test_fine_tuning_example_keeps_the_base_frozen():
    code = _block("opt.freeze(group=0)").replace("range(1000)", "range(20)")
    scope: dict = {}
    exec(code, scope)
    arena = scope["arena"]
    assert np.all(arena["base.W"] == 0), "the frozen base moved"
    assert np.any(arena["head.W"] != 0), "the head did not train"
    assert scope["opt"].param_groups[1]["lr"] < 1e-3  # warmup is running


@pytest.mark.parametrize("marker", ["fo.simd_level()"])
def test_runtime_example_runs(marker):
    import ferroptim as fo

    before = fo.get_num_threads()
    try:
        exec("import ferroptim as fo\n" + _block(marker), {})
        assert fo.get_num_threads() == 4
    finally:
        fo.set_num_threads(before)


def test_pytorch_example_trains():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    code = _block("import ferroptim.torch as fot")
    torch.manual_seed(0)
    scope: dict = {}
    exec(code.replace("range(3)", "range(30)"), scope)
    first = torch.nn.functional.cross_entropy(scope["model"](scope["x"]), scope["y"])
    assert scope["opt"].state_dict()["state"][0]["step"] == 30
    assert float(first.detach()) < 2.2  # from ln(10) = 2.30 at the start

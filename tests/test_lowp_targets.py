"""benches/lowp_targets.py (issue #14's target tables), run on tiny sizes: each
part computes what its table says, from the optimizers it builds."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ml_dtypes")

SCRIPT = Path(__file__).resolve().parents[1] / "benches" / "lowp_targets.py"


@pytest.fixture(scope="module")
def targets() -> Any:
    spec = importlib.util.spec_from_file_location("lowp_targets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lowp_targets"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("lowp_targets", None)


def _cells(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell starts with ``first``."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0].startswith(first):
            return cells
    raise AssertionError(f"no row {first!r} in\n{table}")


def test_state_bytes_per_param(targets: Any) -> None:
    numel = 3 * 256 + 5  # a partial last block: its scale counts too
    table = targets.part_a(numel)
    per = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        per[(cells[0], cells[1])] = float(cells[2])
    assert per[("float32", "float32")] == 8.0
    assert per[("float32", "bfloat16")] == 4.0
    # Two slots of one code per param and one float32 scale per block of 256.
    assert per[("float32", "int8")] == pytest.approx(2 + 2 * 4 * 4 / numel, abs=1e-4)
    # float32 moments and the float32 master copy.
    assert per[("bfloat16 + f32 master", "float32")] == 12.0


def test_memory_part_counts_the_process_it_measures(targets: Any) -> None:
    numel = 1 << 22
    table = targets.part_c(numel, steps=2)
    assert float(_cells(table, "params")[1]) == pytest.approx(4 * numel / 1e6, abs=0.05)
    state = _cells(table, "state (codes")
    assert re.search(r"2\.0\d+ B/param", state[0]), state
    rss = float(_cells(table, "VmRSS after")[1])
    own = float(_cells(table, "params + grads + state")[1])
    excess = float(_cells(table, "excess: RSS")[1].rstrip("%"))
    assert excess == pytest.approx(100 * (rss / own - 1), abs=1.0)  # the MB cells are rounded


def test_compute_part_times_every_variant(targets: Any) -> None:
    table = targets.part_k(numel=4096, loops=2, repeats=2)
    rows = [line for line in table.splitlines() if line.startswith("| ferroptim")]
    assert len(rows) == 6 and all(float(r.split("|")[2]) > 0 for r in rows)


def test_step_part_compares_with_torch(targets: Any) -> None:
    pytest.importorskip("torch")
    table = targets.part_b(numel=4096, threads=1, rounds=3, budget=0.05)
    for name, base, target in targets.TARGETS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} | {base} |"))
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        ratio = float(cells[2].rstrip("x"))
        assert ratio > 0 and cells[4] == ("yes" if ratio >= target else "no"), row

"""pytest-benchmark suite: `pytest benches --benchmark-group-by=group`.

Each group is one case and one optimizer, so the table pytest-benchmark
prints compares ferroptim, torch.optim (loop, foreach, fused) and NumPy
side by side in one run.
"""

import pytest

pytest.importorskip("pytest_benchmark", reason="pip install 'ferroptim[bench]'")

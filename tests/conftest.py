"""Shared fixtures: torch for the parity tests, skipped (with how to get it) when absent.

No test module imports torch at module level: a machine without torch must
still collect and run every torch-free test (README, "Testing").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

TORCH_MISSING = (
    "torch is not installed: the torch parity tests need it "
    "(CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)


def import_torch() -> Any:
    """torch, or a skip of the calling test that says how to install it."""
    return pytest.importorskip("torch", reason=TORCH_MISSING)


@pytest.fixture(scope="session")
def torch() -> Any:
    """The torch module; the test skips, with the reason, when torch is absent."""
    return import_torch()


@pytest.fixture(scope="module")
def torch_one_thread(torch: Any) -> Iterator[Any]:
    """torch with one intra-op thread: its threads only add contention for small tensors."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)

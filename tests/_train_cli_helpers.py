"""Running ``ferroptim train`` and reading its result, shared by the test_train_cli*.py modules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

LAST_LINE = re.compile(
    r"^test (accuracy|r2): (-?\d+\.\d+) \(loss (\d+\.\d+)\) after (\d+) epochs in [\d.]+ s"
)


def train(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ferroptim", "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    return proc


def result(proc: subprocess.CompletedProcess) -> tuple[str, float, float, int]:
    """(metric, value, test loss, epochs) from the last stdout line."""
    last = proc.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    return match[1], float(match[2]), float(match[3]), int(match[4])


QUICK = ("--hidden", "16", "--verbose", "0")
# No scikit-learn import (about 1 s a run): the default for runs that test flags.
SMALL = "synthetic-classification"

"""A new user's first hour: the README's test command on a machine without
torch, `ferroptim --version`, and help text that reads well in a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ferroptim as fo
from ferroptim import bench, bench_report, cli

TESTS = Path(__file__).resolve().parent
# The modules whose torch parity tests once made collection fail without torch.
MIXED = ["test_finetune.py", "test_gradtools.py", "test_parity_more.py", "test_step_options.py"]

# Runs pytest with `import torch` failing as on a machine without torch (a
# finder, not sys.modules["torch"] = None, which libraries that look into
# sys.modules for torch would trip over).
NO_TORCH = """
import sys


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTorch())
import pytest

sys.exit(pytest.main(sys.argv[1:]))
"""


def pytest_without_torch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    package_root = str(Path(fo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH, "-q", "-p", "no:cacheprovider", *args],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_suite_collects_without_torch():
    """No test module imports torch at module level (README: torch tests skip)."""
    done = pytest_without_torch("--collect-only", str(TESTS))
    # A collection error (ModuleNotFoundError: torch) makes pytest exit 2.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The torch-free tests of the mixed modules are still there.
    for name in MIXED:
        assert re.search(rf"^tests/{name}::\w+", done.stdout, re.M), name


def test_torch_tests_skip_with_how_to_install_and_the_rest_run():
    done = pytest_without_torch(
        "-rs",
        str(TESTS / "test_finetune.py"),
        str(TESTS / "test_step_options.py") + "::test_max_grad_norm_scales_the_step",
        str(TESTS / "test_step_options.py")
        + "::test_max_grad_norm_with_nonfinite_grad_matches_torch",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    skipped = int(re.search(r"(\d+) skipped", summary).group(1))
    assert passed >= 2 and skipped == 4, summary  # 2 finetune + 2 nonfinite torch tests
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in done.stdout


# -- help and version -------------------------------------------------------------------


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    assert help_text(["--version"], capsys).strip() == f"ferroptim {fo.__version__}"


RST = re.compile(r"``|`[^`]+`_?|:\w+:`|^\s*\.\. \w+::", re.M)


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["demo", "--help"]])
def test_help_has_no_raw_rst(argv, capsys):
    text = help_text(argv, capsys)
    assert not RST.search(text), RST.search(text).group(0)


def test_bench_help_gives_defaults_and_the_number_of_cases(capsys):
    text = " ".join(help_text(["bench", "--help"], capsys).split())
    n_cases = len(bench.cases(False)) * len(bench.BYTES_PER_PARAM)
    assert f"The default run has {n_cases} cases" in text and n_cases == 28
    quick = len(bench_report.QUICK_CASES) * len(bench_report.QUICK_OPTIMIZERS)
    assert f"--quick: {quick} small cases in about 20 s" in text
    assert "(default: 120; 300 with --full, 20 with --quick)" in text
    assert "(default: all four; adam,rmsprop with --quick)" in text
    # Every shape is named.
    for case in bench.cases(True):
        assert case.name in text
    assert "(default: 200)" in " ".join(help_text(["demo", "--help"], capsys).split())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--time-budget", "0"], "--time-budget must be > 0"),
        (["bench", "--budget", "nan"], "--budget must be > 0"),
        (["bench", "--budget", "1", "--time-budget", "5"], "not allowed with argument"),
        (["bench", "--quick", "--full"], "--quick and --full"),
        (["bench", "--optimizers", "adam,lamb"], "--optimizers: unknown ['lamb']"),
    ],
)
def test_bench_flag_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_flags_reach_main(monkeypatch):
    seen = {}

    def fake_main(optimizers, full, budget, threads, **kw):
        seen.update(optimizers=optimizers, full=full, budget=budget, threads=threads, **kw)
        return 0

    monkeypatch.setattr(bench, "main", fake_main)
    assert cli.main(["bench", "--quick"]) == 0
    assert seen == {
        "optimizers": ["adam", "rmsprop"],
        "full": False,
        "budget": None,
        "threads": True,
        "time_budget": None,
        "quick": True,
    }
    assert cli.main(["bench", "--time-budget", "30", "--optimizers", "sgd"]) == 0
    assert seen["time_budget"] == 30.0 and seen["optimizers"] == ["sgd"]

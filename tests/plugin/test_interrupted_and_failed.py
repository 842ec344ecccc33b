"""Only a finished, passing test is a reference: an interrupted run records nothing
and says it was interrupted; a test failing on its own assertion shows as failed
everywhere and is never recorded."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RunEnergy = Callable[..., pytest.RunResult]

FOUR_TESTS = """
import os, time
from pathlib import Path

def evaluate(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")

def test_1(energy_eval):
    evaluate(energy_eval)

def test_2(energy_eval):
    evaluate(energy_eval)

def test_3(energy_eval):
    evaluate(energy_eval)
    if os.environ.get("HANG_IN_TEST_3"):
        Path("in_test_3").write_text("")
        time.sleep(120)

def test_4(energy_eval):
    evaluate(energy_eval)
"""


def test_sigint_during_the_third_of_four_tests_records_nothing_and_says_interrupted(
    pytester: pytest.Pytester,
    run_energy: RunEnergy,
    mmlu_source: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytester.makepyfile(test_four=FOUR_TESTS)
    args = ["--energy-repeats=1", "--energy-update-baseline", "--energy-report=report.md"]
    run_energy(*args).assert_outcomes(passed=4)
    baseline = pytester.path / ".energy" / "baseline.json"
    recorded = baseline.read_bytes()

    monkeypatch.setenv("HANG_IN_TEST_3", "1")
    proc = pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--energy-budget",
            f"--energy-mmlu={mmlu_source}",
            *args,
        ],
        stdin=None,
    )
    deadline = time.monotonic() + 120
    while not (pytester.path / "in_test_3").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "test_3 never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    text = out.decode()

    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text + err.decode()
    assert baseline.read_bytes() == recorded
    assert "energy: interrupted: 2 of 4 energy tests ran; no baseline entry was written" in text
    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert "**Interrupted**: 2 of 4 energy tests ran" in report
    assert "**Pass**" not in report


def test_a_test_failing_its_own_assertion_shows_failed_and_is_not_recorded(
    pytester: pytest.Pytester, run_energy: RunEnergy, dist: str
) -> None:
    pytester.makepyfile(
        test_own="""
def test_passes(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")

def test_own_assert_fails(energy_eval):
    result = energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
    assert result.accuracy > 2, "an accuracy above 200% is impossible"
"""
    )
    result = run_energy(
        dist,
        "--energy-repeats=1",
        "--energy-update-baseline",
        "--energy-json=out.json",
        "--energy-report=report.md",
    )

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["FAIL*test_own_assert_fails*", "PASS*test_passes*"], consecutive=False
    )
    rows = {
        r["test_id"]: r for r in json.loads((pytester.path / "out.json").read_text())["results"]
    }
    failed = rows["test_own.py::test_own_assert_fails"]["outcome"]
    assert (failed["status"], failed["test_failed"]) == ("fail", True)
    assert rows["test_own.py::test_passes"]["outcome"]["status"] == "pass"
    entries = json.loads((pytester.path / ".energy" / "baseline.json").read_text())["entries"]
    assert list(entries) == ["test_own.py::test_passes"]
    assert "❌" in (pytester.path / "report.md").read_text(encoding="utf-8")

"""``--energy-repeats auto`` on the real model: a new test stops at 3 repeats, a
recording run takes the maximum, an unchanged test stops once it is clearly within
the tolerance, a regressed one as soon as it is clearly beyond it, and the verdict
uses the corrected threshold.

The workload is made more expensive with the CPU-time meter of
``CPU_TIME_METER_CONFTEST`` (its watts figure for the test raised 3x), so the
real model runs and the policy sees real, noisy repeats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

ONE_TEST = """
def test_direct(energy_eval):
    energy_eval("smollm2-135m", "direct", n=1, subjects="world_religions")
"""
# 30% leaves room for CPU-time drift between sessions on a shared runner (the
# example suite's tolerance, from benchmarks/session_drift.py).
AUTO = ("--energy-repeats=auto", "--energy-tolerance=30%", "--energy-json=results.json")
STOP = re.compile(r"^(?P<why>[a-z ]+) after (?P<n>\d+)$")


def last_result(pytester: pytest.Pytester) -> dict[str, Any]:
    data = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    (row,) = data["results"]
    return dict(row)


def stop_of(row: dict[str, Any]) -> tuple[str, int]:
    match = STOP.match(row["details"]["repeats_stop"])
    assert match is not None, row["details"]
    assert int(match["n"]) == len(row["repeats"])
    return match["why"], int(match["n"])


def test_auto_repeats_stop_at_three_when_new_and_early_when_decided(
    pytester: pytest.Pytester,
    run_energy: Callable[..., pytest.RunResult],
    scale_workload: Callable[[dict[str, float]], None],
) -> None:
    pytester.makepyfile(test_auto=ONE_TEST)

    new = run_energy(*AUTO)
    new.assert_outcomes(passed=1)
    assert stop_of(last_result(pytester)) == ("no baseline", 3)

    # The reference is measured once and compared with on every later run: the
    # maximum (6 here, to keep this test short), however clear the first repeats.
    recorded = run_energy(*AUTO, "--energy-update-baseline", "-o", "energy_max_repeats=6")
    recorded.assert_outcomes(passed=1)
    assert stop_of(last_result(pytester)) == ("recording the baseline", 6)
    baseline_file = pytester.path / ".energy" / "baseline.json"
    entries = json.loads(baseline_file.read_text(encoding="utf-8"))["entries"]
    assert len(entries["test_auto.py::test_direct"]["samples"]["energy_j"]) == 6

    unchanged = run_energy(*AUTO)
    unchanged.assert_outcomes(passed=1)
    why, n = stop_of(last_result(pytester))
    assert why in ("within tolerance", "maximum")
    assert 3 <= n <= 10

    scale_workload({"test_direct": 3.0})
    regressed = run_energy(*AUTO)
    regressed.assert_outcomes(failed=1)
    row = last_result(pytester)
    # 6 baseline repeats, looks 3..10: corrected threshold 0.021. 3 head repeats
    # above every base x 1.30 give p = 1/84 (more when a noisy repeat is screened
    # out as an outlier or one falls among the limits).
    why, n = stop_of(row)
    assert why == "beyond tolerance"
    assert 3 <= n <= 5
    assert f"--energy-repeats auto stopped: beyond tolerance after {n} repeats" in str(
        row["outcome"]["notes"]
    )

    capped = run_energy(*AUTO, "-o", "energy_max_repeats=3")
    capped.assert_outcomes(failed=1)
    assert stop_of(last_result(pytester))[1] == 3

"""A prompt change on the real model is measured, gated and explained.

A user suite names its prompt in the budgets file; the baseline records it, a
rerun passes, and a pull request that raises ``shots`` from 0 to 5 on ``direct``
fails with ``prompt changed`` in the terminal, the markdown report and the JSON.
``--energy-accept`` lets it through; ``--energy-update-baseline`` records it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_energy.report.escape import escape_md

SUITE = """
def test_direct(energy_eval):
    energy_eval("smollm2-135m", "direct", n=4, subjects="high_school_physics", prompt="ours")
"""
BUDGETS = "prompts:\n  ours:\n    shots: {shots}\n"
CHANGE = re.compile(r"shots 0 -> 5; input tokens per question (?P<old>\d+) -> (?P<new>\d+)")
GATE = ("--energy-repeats=3", "--energy-tolerance=30%", "--energy-json=results.json")


def prompt_of(pytester: pytest.Pytester) -> tuple[dict[str, Any], dict[str, Any]]:
    data = json.loads((pytester.path / "results.json").read_text(encoding="utf-8"))
    (row,) = data["results"]
    return row["prompt"], row["outcome"]


def entries(baseline: Path) -> dict[str, Any]:
    return dict(json.loads(baseline.read_text(encoding="utf-8"))["entries"])


def test_shots_zero_to_five_fail_with_prompt_changed_until_recorded(
    pytester: pytest.Pytester,
    run_energy: Callable[..., pytest.RunResult],
    scale_workload: Callable[[dict[str, float]], None],
) -> None:
    pytester.makepyfile(test_prompt=SUITE)
    budgets = pytester.path / "energy-budgets.yaml"
    budgets.write_text(BUDGETS.format(shots=0), encoding="utf-8")
    scale_workload({})  # the measured CPU-time meter: the gate compares it

    recorded = run_energy(*GATE, "--energy-update-baseline")
    recorded.assert_outcomes(passed=1)
    prompt, _ = prompt_of(pytester)
    assert prompt["name"] == "ours"
    assert prompt["fields"]["shots"] == 0
    baseline = pytester.path / ".energy" / "baseline.json"
    entry = entries(baseline)["test_prompt.py::test_direct"]
    assert entry["prompt"]["fingerprint"] == prompt["fingerprint"]

    rerun = run_energy(*GATE)
    rerun.assert_outcomes(passed=1)
    assert prompt_of(pytester)[1]["prompt_change"] is None

    budgets.write_text(BUDGETS.format(shots=5), encoding="utf-8")
    before = baseline.read_text(encoding="utf-8")
    changed = run_energy(*GATE, "--energy-report=report.md")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        ["prompt changed: test_direct: shots 0 -> 5; input tokens per question * -> *"]
    )
    changed.stdout.fnmatch_lines(["*j_per_question regressed +*"])
    _, outcome = prompt_of(pytester)
    match = CHANGE.fullmatch(outcome["prompt_change"])
    assert match is not None, outcome["prompt_change"]
    # Five worked examples make each prompt several times longer.
    assert int(match["new"]) > 3 * int(match["old"])
    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert f"prompt changed: {escape_md(outcome['prompt_change'])}" in report
    assert baseline.read_text(encoding="utf-8") == before

    accepted = run_energy(*GATE, "--energy-accept=five shots on purpose")
    accepted.assert_outcomes(passed=1)

    updated = run_energy(*GATE, "--energy-update-baseline")
    updated.assert_outcomes(passed=1)
    entry = entries(baseline)["test_prompt.py::test_direct"]
    assert entry["prompt"]["fields"]["shots"] == 5

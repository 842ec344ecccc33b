"""The real path: SmolLM2 on real MMLU rows, measured, tabled, written as JSON and markdown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from pytest_energy.report import format_j

RunEnergy = Callable[..., pytest.RunResult]

DIRECT_AND_COT = """
def test_direct(energy_eval):
    result = energy_eval("smollm2-135m", "direct", n=4)
    assert result.questions == 4
    assert result.j_per_token > 0


def test_cot(energy_eval):
    result = energy_eval("smollm2-135m", "cot:max_tokens=8", n=2)
    assert result.questions == 2
    assert 0 < result.output_tokens <= 2 * 8
"""
OUTPUTS = (
    "--energy-meter=cpu-estimate",
    "--energy-json=out.json",
    "--energy-report=report.md",
    "--junitxml=junit.xml",
)
MARKER = "<!-- pytest-energy-report -->"


@pytest.fixture
def step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GitHub step summary that already holds another step's text."""
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def junit_properties(pytester: pytest.Pytester, test_name: str) -> dict[str, str]:
    root = ElementTree.parse(pytester.path / "junit.xml").getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == test_name)
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def results_by_test(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    document = json.loads((pytester.path / "out.json").read_text(encoding="utf-8"))
    return {entry["test_id"].rpartition("::")[2]: entry for entry in document["results"]}


def check_outputs(pytester: pytest.Pytester, result: pytest.RunResult, summary: Path) -> None:
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= energy =*",
            "*J/token*",
            "*test_cot*%*",
            "*test_direct*%*",
            "energy results: out.json",
            "energy report: report.md",
        ]
    )

    results = results_by_test(pytester)
    assert sorted(results) == ["test_cot", "test_direct"]
    direct, cot = results["test_direct"], results["test_cot"]
    assert (direct["model"], direct["strategy"], direct["meter"]) == (
        "smollm2-135m",
        "direct",
        "cpu-estimate",
    )
    assert direct["estimated"] is True
    assert len(direct["records"]) == 4
    assert all(r["input_tokens"] > 0 for r in direct["records"])
    assert all(r["gold"] in ("A", "B", "C", "D") for r in direct["records"])
    j_per_token = direct["summary"]["j_per_token"]
    assert j_per_token > 0
    start = next(i for i, line in enumerate(result.outlines) if "= energy =" in line)
    row = next(line for line in result.outlines[start:] if "test_direct" in line)
    assert f"{direct['summary']['accuracy']:.1%}" in row
    assert format_j(j_per_token) in row
    assert cot["strategy"] == "cot:max_tokens=8"
    assert len(cot["records"]) == 2
    assert all(0 < r["output_tokens"] <= 8 for r in cot["records"])

    report = (pytester.path / "report.md").read_text(encoding="utf-8")
    assert report.splitlines()[0] == MARKER
    assert "test\\_direct" in report or "test_direct" in report
    appended = summary.read_text(encoding="utf-8")
    assert appended.startswith("earlier step\n" + MARKER)
    assert appended.count(MARKER) == 1

    junit = junit_properties(pytester, "test_direct")
    assert junit["energy_meter"] == "cpu-estimate"
    assert junit["energy_questions"] == "4"
    assert float(junit["energy_j_per_token"]) == direct["summary"]["j_per_token"]


def test_direct_and_cot_on_the_real_model_write_table_json_and_report(
    pytester: pytest.Pytester, run_energy: RunEnergy, step_summary: Path, dist: str
) -> None:
    pytester.makepyfile(test_energy_models=DIRECT_AND_COT)

    result = run_energy(*OUTPUTS, dist)

    check_outputs(pytester, result, step_summary)
    assert sum("= energy =" in line for line in result.outlines) == 1
    if dist == "-n2":
        result.stdout.fnmatch_lines(["*2 workers*"])
